"""The Run object: original checkpoint folders, original cluster files, weight files."""

import os

import jax
import numpy as np
import pytest
from PIL import Image

from conftest import tiny_model
from hdgan_jax import config as config_lib, convert, features, generate, models, render, run
from hdgan_jax.convert import clusters as original_clusters, io as weight_io


def feat_config():
  c = config_lib.get_config()
  c.model = tiny_model(label_nc=35, use_features=True, feat_num=3, nef=4, n_downsample_E=2)
  c.data.resize_or_crop = 'none'
  return c


def original_folder(tmp_path, cfg, seed=0):
  """An original-style checkpoint folder made from fresh variables."""
  g = models.init_variables('G', cfg.model, jax.random.PRNGKey(seed))
  e = models.init_variables('E', cfg.model, jax.random.PRNGKey(seed + 1))
  folder = tmp_path / 'label2city_feat'
  os.makedirs(folder)
  weight_io.save_state_dict(convert.to_pix2pixhd(g, 'G', cfg.model), str(folder / 'latest_net_G.pth'))
  weight_io.save_state_dict(convert.to_pix2pixhd(e, 'E', cfg.model), str(folder / 'latest_net_E.pth'))
  # exactly what the original's encode_features.py writes: np.save of a dict of float64 centres
  centres = {26: np.random.default_rng(0).normal(size=(4, 3)), 24: np.ones((2, 3))}
  np.save(folder / 'features_clustered_010.npy', centres, allow_pickle=True)
  return folder, g, e, centres


def test_original_folder_gives_g_e_and_clusters(tmp_path):
  pytest.importorskip('torch')
  cfg = feat_config()
  folder, g, e, centres = original_folder(tmp_path, cfg)
  r = run.load(cfg, checkpoint_path=str(folder))
  jax.tree_util.tree_map(np.testing.assert_array_equal, r.params['G'], g['params'])
  jax.tree_util.tree_map(np.testing.assert_array_equal, r.params['E'], e['params'])
  assert sorted(r.clusters) == [24, 26]
  np.testing.assert_allclose(r.clusters[26].centers, centres[26], rtol=1e-6)
  assert r.clusters_origin.endswith('features_clustered_010.npy')
  assert 'clusters for 2 classes' in r.describe()
  # the same folder given as the G file finds E and clusters beside it
  r2 = run.load(cfg, checkpoint_path=str(folder / 'latest_net_G.pth'))
  assert 'E' in r2.params and sorted(r2.clusters) == [24, 26]
  # rendering: a car (class 26) in two different clusters looks different there only
  label = np.full((16, 32), 7, np.int32)
  inst = label.copy()
  label[4:12, 8:24], inst[4:12, 8:24] = 26, 26001
  renderer = render.Renderer(r)
  a = renderer.render(label, inst, choices={26001: 0}).astype(int)
  b = renderer.render(label, inst, choices={26001: 3}).astype(int)
  assert a.shape == (16, 32, 3)
  assert np.abs(a - b)[4:12, 8:24].mean() > 0


def test_original_cluster_file_round_trip(tmp_path):
  cl = {26: features.ClassClusters(np.arange(12, dtype=np.float32).reshape(4, 3), np.zeros(4)),
        24: features.ClassClusters(np.ones((1, 3), np.float32), np.zeros(1))}
  path = str(tmp_path / 'features_clustered_010.npy')
  original_clusters.save_original_clusters(path, cl)
  # the original reads it with np.load(...).item(): a dict {label: (k, feat_num) centres}
  raw = np.load(path, allow_pickle=True, encoding='latin1').item()
  assert sorted(raw) == [24, 26] and raw[26].shape == (4, 3)
  back = original_clusters.load_original_clusters(path, feat_num=3)
  np.testing.assert_array_equal(back[26].centers, cl[26].centers)
  with pytest.raises(features.ClusterFileError, match='model.feat_num=5'):
    original_clusters.load_original_clusters(path, feat_num=5)


class _Evil:
  def __reduce__(self):
    return (os.system, ('touch /tmp/hdgan_jax_pwned',))


def test_a_malicious_cluster_pickle_is_refused(tmp_path):
  path = tmp_path / 'features_clustered_010.npy'
  np.save(path, {26: _Evil()}, allow_pickle=True)
  with pytest.raises(features.ClusterFileError, match=r'refusing to load (posix|os)\.system'):
    original_clusters.load_original_clusters(str(path), feat_num=3)
  assert not os.path.exists('/tmp/hdgan_jax_pwned')
  (tmp_path / 'torn.npy').write_bytes(path.read_bytes()[:60])
  with pytest.raises(features.ClusterFileError, match='torn.npy'):
    original_clusters.load_original_clusters(str(tmp_path / 'torn.npy'), feat_num=3)


def test_our_variables_npz_and_state_dict_npz_both_load(tmp_path):
  cfg = feat_config()
  cfg.model.use_features = False
  g = models.init_variables('G', cfg.model, jax.random.PRNGKey(5))
  weight_io.save_variables(g, str(tmp_path / 'ours.npz'))
  weight_io.save_state_dict(convert.to_pix2pixhd(g, 'G', cfg.model), str(tmp_path / 'sd.npz'))
  for name in ('ours.npz', 'sd.npz'):
    r = run.load(cfg, checkpoint_path=str(tmp_path / name))
    jax.tree_util.tree_map(np.testing.assert_array_equal, r.params['G'], g['params'])
    assert r.clusters is None and r.step is None


def test_bad_sources_are_clear(tmp_path):
  cfg = feat_config()
  with pytest.raises(run.RunError, match='--workdir=DIR'):
    run.load(cfg)
  with pytest.raises(run.RunError, match='needs --config'):
    run.load(None, checkpoint_path=str(tmp_path))
  with pytest.raises(run.RunError, match='no \\*_net_G.pth here'):
    run.load(cfg, checkpoint_path=str(tmp_path))
  with pytest.raises(run.RunError, match='no trained run here'):
    run.load(cfg, workdir=str(tmp_path / 'missing'))
  assert not os.path.exists(tmp_path / 'missing')  # looking does not create folders
  sd = {'model.1.weight': np.zeros((16, 36, 7, 7), np.float32)}
  assert run.describe_state_dict(sd) == 'netG=global, ngf=16, 36 input channels'
  sd = {'model1_1.1.weight': np.zeros((32, 36, 7, 7)), 'model.1.weight': np.zeros((64, 36, 7, 7))}
  assert run.describe_state_dict(sd).startswith('netG=local, n_local_enhancers=1, ngf=32')


def test_generate_says_when_maps_are_resized_and_refuses_a_file_as_out(tmp_path):
  cfg = feat_config()
  cfg.model.update(use_features=False, no_instance=True)
  g = models.init_variables('G', cfg.model, jax.random.PRNGKey(2))
  r = run.Run(cfg, {'G': g['params']}, origin='test')
  Image.fromarray(np.full((37, 100), 7, np.uint8)).save(tmp_path / 'odd.png')
  notes = []
  written = generate.generate(r, labels=str(tmp_path / 'odd.png'), out=str(tmp_path / 'o'),
                              notify=notes.append)
  assert len(written) == 1 and len(notes) == 1
  assert notes[0].startswith('note: 100x37 maps become'), notes
  (tmp_path / 'file').write_text('x')
  with pytest.raises(NotADirectoryError, match='is a file'):
    generate.generate(r, labels=str(tmp_path / 'odd.png'), out=str(tmp_path / 'file'))
