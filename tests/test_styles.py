"""Diverse outputs on demo data: train with features, cluster, regenerate one car in two styles."""

import os

import numpy as np
import pytest
from PIL import Image

from test_train import tiny_run_config
from hdgan_jax import features, generate, train
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
  path = generate.encode_features(c, wd)
  return c, wd, path


def test_cluster_file_is_tied_to_the_model(trained):
  c, _, path = trained
  clusters = features.load_clusters(path, expect_config_hash=features.config_hash(c.model))
  assert demo.CAR in clusters and len(clusters[demo.CAR].centers) >= 2
  other = c.model.copy_and_resolve_references()
  other.ngf = 8
  with pytest.raises(features.ClusterFileError, match='another model'):
    features.load_clusters(path, expect_config_hash=features.config_hash(other))


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
    p = generate.generate(c, wd, labels=str(tmp_path / 's_labelIds.png'),
                          instances=str(tmp_path / 's_instanceIds.png'), out=str(tmp_path / f'o{k}'),
                          styles=str(tmp_path / 'styles.json'), num_samples=1)[0]
    outs.append(np.asarray(Image.open(p), np.float32))
  diff = np.abs(outs[0] - outs[1]).mean(-1)
  mask = scene['inst'] == car
  inside, outside = diff[mask].mean(), diff[~mask].mean()
  print(f"style change: inside the car {inside:.1f}, elsewhere {outside:.1f} grey levels")
  assert inside > 8.0, inside                  # grey levels out of 255
  assert inside > 3 * outside, (inside, outside)
