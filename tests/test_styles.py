"""Diverse outputs on demo data: train with features, cluster, regenerate one car in two styles."""


import numpy as np
import pytest
from PIL import Image

from test_train import tiny_run_config
from hdgan_jax import architecture, encode, features, generate, render, run, train
from hdgan_jax.data import demo


def features_config(steps):
  c = tiny_run_config(steps=steps)
  c.model.update(dict(use_features=True, feat_num=3, nef=8, n_downsample_E=2))
  c.data.demo_num_images = 16
  c.checkpoint_every_steps = steps
  c.sample_every_steps = steps
  c.log_every_steps = steps
  c.n_clusters = 4
  return c


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  wd = str(tmp_path_factory.mktemp('feat'))
  c = features_config(steps=150)
  train.train_and_evaluate(c, wd)
  path = encode.encode_features(run.from_workdir(wd, c), n_clusters=c.n_clusters)['path']
  return c, wd, path


def test_cluster_file_is_tied_to_the_model(trained):
  c, _, path = trained
  clusters = features.load_clusters(path, expect_config_hash=architecture.fingerprint(c.model))
  assert demo.CAR in clusters and len(clusters[demo.CAR].centers) >= 2
  other = c.model.copy_and_resolve_references()
  other.ngf = 8
  with pytest.raises(features.ClusterFileError, match='another model'):
    features.load_clusters(path, expect_config_hash=architecture.fingerprint(other))


def test_one_car_two_styles(trained, tmp_path):
  c, wd, path = trained
  clusters = features.load_clusters(path)
  centers = clusters[demo.CAR].centers
  far = int(np.argmax(np.linalg.norm(centers - centers[0], axis=1)))
  scene = next(s for s in (demo.render_scene(i, height=32, width=64, seed=7) for i in range(50))
               if any(k // 1000 == demo.CAR and (s['inst'] == k).mean() > 0.03 for k in s['styles']))
  car = max((k for k in scene['styles'] if k // 1000 == demo.CAR), key=lambda k: (scene['inst'] == k).sum())
  Image.fromarray(scene['label']).save(tmp_path / 's_labelIds.png')
  Image.fromarray(scene['inst']).save(tmp_path / 's_instanceIds.png')
  outs = []
  for k in (0, far):
    (tmp_path / 'styles.json').write_text('{"%d": %d}' % (car, k))
    p = generate.generate(run.from_workdir(wd, c), labels=str(tmp_path / 's_labelIds.png'),
                          instances=str(tmp_path / 's_instanceIds.png'), out=str(tmp_path / f'o{k}'),
                          styles=str(tmp_path / 'styles.json'), num_samples=1)[0]
    outs.append(np.asarray(Image.open(p), np.float32))
  diff = np.abs(outs[0] - outs[1]).mean(-1)
  mask = scene['inst'] == car
  inside, outside = diff[mask].mean(), diff[~mask].mean()
  print(f"style change: inside the car {inside:.1f}, elsewhere {outside:.1f} grey levels")
  assert inside > 8.0, inside                  # grey levels out of 255
  assert inside > 3 * outside, (inside, outside)


def test_interactive_editor_session_and_http(trained, tmp_path):
  """The editor's HTTP app: pick a car, restyle it, change its class, undo, save."""
  import json as json_lib
  import threading
  import urllib.request
  from hdgan_jax import editor
  c, wd, _ = trained
  scene = demo.render_scene(1, height=32, width=64, seed=11)
  renderer = render.Renderer(run.from_workdir(wd, c))
  session = editor.Session(renderer, scene['label'], scene['inst'], out_dir=str(tmp_path / 'ed'))
  server = editor.serve(session, port=0)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  base = f'http://127.0.0.1:{server.server_address[1]}'
  get = lambda p: urllib.request.urlopen(base + p).read()
  post = lambda p, body: json_lib.loads(urllib.request.urlopen(urllib.request.Request(
      base + p, data=json_lib.dumps(body).encode(), method='POST',
      headers={'X-Editor-Token': session.token})).read())  # the page sends it on every POST
  try:
    assert b'hdgan_jax editor' in get('/') and session.token.encode() in get('/')
    assert get('/image.png')[:4] == b'\x89PNG'
    car = max((k for k in scene['styles'] if k // 1000 == demo.CAR),
              key=lambda k: (scene['inst'] == k).sum())
    ys, xs = np.nonzero(scene['inst'] == car)
    info = json_lib.loads(get(f'/pick?x={xs[0]}&y={ys[0]}'))
    assert info['instance'] == car and info['class'] == demo.CAR and info['clusters'] >= 2
    before = session.image.copy()
    post('/edit', {'op': 'style', 'instance': car, 'cluster': info['clusters'] - 1})
    assert session.state.styles[car] == info['clusters'] - 1
    post('/edit', {'op': 'change_class', 'instance': car, 'to': 27})  # car -> truck
    assert (session.state.label[scene['inst'] == car] == 27).all()
    bad = post('/edit', {'op': 'change_class', 'instance': 999999, 'to': 27})
    assert bad['message'].startswith('not applied')
    post('/undo', {})
    post('/undo', {})
    np.testing.assert_array_equal(session.state.label, scene['label'])
    np.testing.assert_array_equal(session.image, before)
    post('/save', {})
    saved = np.asarray(Image.open(tmp_path / 'ed' / 'edited_instanceIds.png'))
    np.testing.assert_array_equal(saved, scene['inst'])
  finally:
    server.shutdown()
