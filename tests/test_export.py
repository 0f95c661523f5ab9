"""hdgan_jax.export: the serving artefact reloads with jax alone and gives generate's pixels."""

import json
import os
import subprocess
import sys
import textwrap
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_model
from hdgan_jax import config as config_lib, console, export, features, models, render, reporting, run
from hdgan_jax.convert import io as weight_io

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
H, W = 32, 64
CAR, RIDER = 26, 25
_RENDERERS = {}   # id(run) -> Renderer, compiled once per run and size
CENTRES = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)

# Reloads artefacts in a fresh interpreter that has only jax and numpy.
LOADER = textwrap.dedent('''
    import sys
    import jax
    import numpy as np
    inputs, out = np.load(sys.argv[1]), {}
    for name in sys.argv[3:]:
      exp = jax.export.deserialize(open(name + '.jaxexport', 'rb').read())
      for key in [k for k in inputs.files if k.startswith(name + '/label')]:
        inst = inputs[key.replace('/label', '/inst')]
        out[key.replace('/label', '/image')] = np.asarray(exp.call(inputs[key], inst))
    np.savez(sys.argv[2], **out)
    print(sorted(m for m in ('hdgan_jax', 'flax', 'tensorflow') if m in sys.modules))
''')


def make_run(netG='global', use_features=False, counts=(0, 0, 0, 0)):
  c = config_lib.get_config()
  c.model = tiny_model(label_nc=35, netG=netG, use_features=use_features)
  c.data.source, c.data.demo_height, c.data.demo_width, c.data.resize_or_crop = 'demo', H, W, 'none'
  # random weights in init's shapes (init's own forward pass compiles for ~10 s here)
  shapes = jax.eval_shape(lambda k: models.init_variables('G', c.model, k), jax.random.PRNGKey(3))
  rng = np.random.default_rng(3)
  params = {'G': jax.tree_util.tree_map(
      lambda s: rng.normal(0, 0.05, s.shape).astype(np.float32), shapes['params'])}
  clusters = None
  if use_features:
    clusters = {CAR: features.ClassClusters(CENTRES, np.asarray(counts, np.int64)),
                RIDER: features.ClassClusters(CENTRES[:2] * -1, np.zeros(2, np.int64))}
  return run.Run(c, params, origin='test', clusters=clusters)


def scenes(n, h=H, w=W, seed=0):
  """n (label, inst) int32 maps: road, a car or two (ids 26001.., label 26), a person (24)."""
  rng = np.random.default_rng(seed)
  label = np.full((n, h, w), 7, np.int32)
  label[:, : h // 4] = 23   # sky
  inst = label.copy()
  for i in range(n):
    for k in range(1 + i % 2):
      y, x = rng.integers(0, h // 2), rng.integers(0, w - w // 4)
      label[i, y:y + h // 3, x:x + w // 4] = CAR
      inst[i, y:y + h // 3, x:x + w // 4] = CAR * 1000 + k + 1
    label[i, h // 2:, :4], inst[i, h // 2:, :4] = 24, 24000 + 7   # a person, no clusters
  return label, inst


def rendered(r, label, inst, cluster=None):
  """Renderer's images, every car instance given ``cluster``."""
  renderer = _RENDERERS.setdefault(id(r), render.Renderer(r))
  out = []
  for lab, ins in zip(label, inst):
    choices = None
    if cluster is not None:
      choices = {int(i): cluster for i in np.unique(ins) if i // 1000 == CAR}
    out.append(renderer.render(lab, ins, choices=choices))
  return np.stack(out)


def assert_pixels(got, want, what=''):
  """At most one grey level (the artefact runs plain XLA convs, meant for every platform,
  the renderer the CPU's matmul rewrites), and on all but a few pixels exact."""
  assert got.dtype == want.dtype == np.uint8 and got.shape == want.shape, what
  diff = np.abs(got.astype(int) - want.astype(int))
  assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, (what, diff.max(), (diff > 0).mean())


@pytest.fixture(scope='module')
def reloaded(tmp_path_factory):
  """Three artefacts exported here, called in a fresh jax+numpy process at batch 1 and 3."""
  tmp = tmp_path_factory.mktemp('export')
  runs = {'plain': make_run(), 'feat': make_run('local', True, counts=(1, 5, 2, 0)),
          'any': make_run()}
  export.write(runs['plain'], str(tmp / 'plain.jaxexport'), height=H, width=W)
  export.write(runs['feat'], str(tmp / 'feat.jaxexport'), height=H, width=W, styles={'26': 2})
  export.write(runs['any'], str(tmp / 'any.jaxexport'))   # symbolic H, W (netG=global)
  inputs = {}
  for name, sizes in (('plain', [(1, H, W), (3, H, W)]), ('feat', [(1, H, W), (3, H, W)]),
                      ('any', [(2, H, W), (1, 16, 48)])):
    for j, (n, h, w) in enumerate(sizes):
      inputs[f'{name}/label{j}'], inputs[f'{name}/inst{j}'] = scenes(n, h, w, seed=j)
  np.savez(tmp / 'inputs.npz', **inputs)
  proc = subprocess.run([sys.executable, '-c', LOADER, 'inputs.npz', 'outputs.npz', 'plain',
                         'feat', 'any'], cwd=tmp, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.strip().splitlines()[-1] == '[]', proc.stdout   # jax and numpy only
  return runs, inputs, dict(np.load(tmp / 'outputs.npz')), tmp


def test_reloaded_artefact_gives_renderer_pixels(reloaded):
  runs, inputs, outputs, _ = reloaded
  for name, cluster in (('plain', None), ('feat', 2), ('any', None)):
    for key in sorted(k for k in outputs if k.startswith(name + '/')):
      label, inst = inputs[key.replace('/image', '/label')], inputs[key.replace('/image', '/inst')]
      got, want = outputs[key], rendered(runs[name], label, inst, cluster)
      assert got.dtype == np.uint8 and got.shape == label.shape + (3,), key
      assert_pixels(got, want, key)


def test_default_style_is_the_most_populated_cluster(reloaded):
  runs, _, _, tmp = reloaded
  r = runs['feat']
  assert export.style_choices(r) == {CAR: 1, RIDER: 0}   # counts (1, 5, 2, 0); unknown -> 0
  assert export.style_choices(r, {'26': 3}) == {CAR: 3, RIDER: 0}
  label, inst = scenes(2, seed=4)
  exp = export.export(r, height=H, width=W)
  got = np.asarray(exp.call(label, inst))
  assert_pixels(got, rendered(r, label, inst, cluster=1))
  other = rendered(r, label, inst, cluster=2)
  assert np.any(got[label == CAR] != other[label == CAR])   # the style reaches the pixels
  info = json.loads((tmp / 'feat.jaxexport.json').read_text())
  assert info['styles']['class_to_cluster'] == {'25': 0, '26': 2}


@pytest.mark.parametrize('styles, match', [({'26': 4}, 'clusters 0..3; got 4'), ({'7': 0}, 'class 7 has no'),
                                           ({'car': 0}, 'not an integer')])
def test_bad_styles_are_one_line_errors(styles, match):
  with pytest.raises(export.ExportError, match=match):
    export.style_choices(make_run('global', True), styles)


def test_sidecar_describes_the_artefact(reloaded):
  _, _, _, tmp = reloaded
  info = json.loads((tmp / 'plain.jaxexport.json').read_text())
  assert info['inputs'][0]['shape'] == ['b', str(H), str(W)] and info['inputs'][1]['dtype'] == 'int32'
  assert info['outputs'][0]['shape'] == ['b', str(H), str(W), '3']
  assert info['platforms'] == ['cpu', 'cuda'] and info['label_nc'] == 35
  assert info['model']['netG'] == 'global' and info['origin'] == 'test'
  assert 'jax.export.deserialize' in info['load']
  any_info = json.loads((tmp / 'any.jaxexport.json').read_text())
  assert any_info['inputs'][0]['shape'] == ['b', '4*h', '4*w']


def test_jnp_conversion_and_encoding_match_the_numpy_ones():
  x = np.concatenate([np.random.default_rng(0).uniform(-1.2, 1.2, 5000),
                      [-1, 1, 0, -0.0039215, 0.00392157, 0.99607843, np.float32(1 / 255)]])
  x = x.astype(np.float32)
  np.testing.assert_array_equal(np.asarray(jax.jit(export.to_uint8)(x)), reporting.to_uint8(x))
  assert int(export.to_uint8(jnp.array([np.nan]))[0]) == 0
  label, inst = scenes(2)
  m = tiny_model(label_nc=35)
  eager = models.encode_input(label, inst, m)
  traced = jax.jit(lambda a, b: models.encode_input(a, b, m))(label, inst)
  np.testing.assert_array_equal(np.asarray(traced), np.asarray(eager))


def test_out_of_range_labels_give_black_images(reloaded):
  runs, _, _, _ = reloaded
  label, inst = scenes(2)
  label[1, 0, 0] = 35
  got = np.asarray(export.export(runs['plain'], height=H, width=W).call(label, inst))
  assert got[1].max() == 0 and got[0].max() > 0


def test_training_size_and_bad_sizes():
  c = make_run().config
  assert export.training_size(c) == (H, W)
  city = config_lib.get_config()
  city.model.netG, city.data.source, city.data.resize_or_crop = 'local', 'cityscapes', 'none'
  assert export.training_size(city) == (1024, 2048)
  city.data.source, city.data.resize_or_crop = 'folder', 'scale_width'
  assert export.training_size(city) is None
  city.data.resize_or_crop, city.data.loadSize, city.data.fineSize = 'resize_and_crop', 286, 256
  assert export.training_size(city) == (256, 256)
  with pytest.raises(export.ExportError, match='multiples of 8'):
    export.export(make_run('local'), height=36, width=64)
  with pytest.raises(export.ExportError, match='netG=local.*--height and --width'):
    export.export(make_run('local'))


def test_cli_errors_are_one_line(tmp_path):
  flags_ = types.SimpleNamespace(out=str(tmp_path / 'no' / 'g.jaxexport'), platforms=['cpu'],
                                 styles=None, config=None, workdir=None, checkpoint=None,
                                 step=None, clusters=None, any_size=False, height=None,
                                 width=None, saved_model=None)
  with pytest.raises(SystemExit, match='^error: output directory of .* does not exist'):
    console.run_cli(lambda: export._run(flags_))   # pylint: disable=protected-access
  flags_.out, flags_.height = str(tmp_path / 'g.jaxexport'), 32
  with pytest.raises(SystemExit, match='^error: give both --height and --width'):
    console.run_cli(lambda: export._run(flags_))   # pylint: disable=protected-access
  flags_.height = None
  with pytest.raises(SystemExit, match='^error: give --workdir=DIR'):
    console.run_cli(lambda: export._run(flags_))   # pylint: disable=protected-access
  flags_.workdir = str(tmp_path / 'missing')
  with pytest.raises(SystemExit, match='^error: .*no trained run here'):
    console.run_cli(lambda: export._run(flags_))   # pylint: disable=protected-access
  assert not os.listdir(tmp_path)


def test_command_line_end_to_end(tmp_path):
  """--checkpoint=ours.npz --config=FILE: the size comes from the config (demo 32x64).

  The TF SavedModel (``--saved_model``) runs TensorFlow's own XLA with the
  weights as variables: measured, 1 pixel in ~4000 one grey level off.
  """
  r = make_run()
  weight_io.save_variables({'params': r.params['G']}, str(tmp_path / 'g.npz'))
  (tmp_path / 'tiny.py').write_text(textwrap.dedent(f'''
      from hdgan_jax import config
      def get_config():
        c = config.get_config()
        c.model.update({r.config.model.to_dict()!r})
        c.data.source, c.data.demo_height, c.data.demo_width = 'demo', {H}, {W}
        c.data.resize_or_crop = 'none'
        return c
  '''))
  out = tmp_path / 'g.jaxexport'
  proc = subprocess.run([sys.executable, '-m', 'hdgan_jax.export', f'--config={tmp_path}/tiny.py',
                         f'--checkpoint={tmp_path}/g.npz', f'--out={out}', '--platforms=cpu',
                         f'--saved_model={tmp_path}/tf'],
                        cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f'wrote {out}' in proc.stdout and f'{H}x{W}' in proc.stdout, proc.stdout
  exp = jax.export.deserialize(out.read_bytes())
  label, inst = scenes(1, seed=9)
  want = rendered(r, label, inst)
  assert_pixels(np.asarray(exp.call(label, inst)), want)
  assert json.loads((tmp_path / 'g.jaxexport.json').read_text())['platforms'] == ['cpu']
  assert sorted(os.listdir(tmp_path)) == ['g.jaxexport', 'g.jaxexport.json', 'g.npz', 'tf',
                                          'tiny.py']
  tf = pytest.importorskip('tensorflow')
  loaded = tf.saved_model.load(str(tmp_path / 'tf'))   # keep it: it owns the variables
  got = loaded.serve(tf.constant(label), tf.constant(inst))
  assert np.abs(got.numpy().astype(int) - want).max() <= 1
