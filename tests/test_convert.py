"""Checkpoint conversion: round trips, strict reports, partial loads, files, CLI."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import ref, ref_state_dict, tiny_model
from hdgan_jax import convert, models
from hdgan_jax.convert import io, pix2pixhd

CONFIGS = [
    ('G', dict(netG='global')),
    ('G', dict(netG='local', n_local_enhancers=2)),
    ('G', dict(netG='local', norm='batch')),
    ('D', dict(num_D=3)),
    ('D', dict(no_ganFeat_loss=True)),
    ('D', dict(norm='batch')),
    ('E', dict()),
]


@pytest.mark.parametrize('net,kw', CONFIGS)
def test_export_import_round_trip_is_identity(net, kw):
  cfg = tiny_model(**kw)
  v = models.init_variables(net, cfg, jax.random.PRNGKey(0))
  sd = convert.to_pix2pixhd(v, net, cfg)
  back = convert.from_pix2pixhd(sd, net, cfg)
  a, b = jax.tree_util.tree_leaves_with_path(v), jax.tree_util.tree_leaves_with_path(back)
  assert [p for p, _ in a] == [p for p, _ in b]
  for (p, x), (_, y) in zip(a, b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=str(p))


@pytest.mark.parametrize('net,kw', CONFIGS)
def test_table_covers_every_variable(net, kw):
  cfg = tiny_model(**kw)
  flat = jax.tree_util.tree_flatten_with_path(pix2pixhd.abstract_variables(net, cfg))[0]
  assert len(flat) == len(pix2pixhd.key_table(net, cfg))


def test_original_keys_round_trip():
  z = ref('local_G.npz')
  sd = ref_state_dict(z)
  cfg = tiny_model(netG='local', ngf=4, n_downsample_global=2, n_blocks_global=1,
                   n_local_enhancers=2, n_blocks_local=1)
  back = convert.to_pix2pixhd(convert.from_pix2pixhd(sd, 'G', cfg), 'G', cfg)
  assert sorted(back) == sorted(sd)
  for k in sd:
    np.testing.assert_array_equal(back[k], sd[k], err_msg=k)


def test_strict_reports_missing_unexpected_and_shapes():
  z = ref('global_G.npz')
  sd = ref_state_dict(z)
  cfg = tiny_model(netG='global', ngf=8, n_downsample_global=2, n_blocks_global=2)
  bad = dict(sd)
  del bad['model.1.bias']
  bad['model.99.weight'] = np.zeros(3, np.float32)
  bad['model.4.weight'] = np.zeros((1, 2, 3, 3), np.float32)
  with pytest.raises(convert.CheckpointMismatchError) as e:
    convert.from_pix2pixhd(bad, 'G', cfg)
  msg = str(e.value)
  assert 'model.1.bias' in msg and 'model.99.weight' in msg and 'model.4.weight' in msg
  # a wrong architecture is refused too
  with pytest.raises(convert.CheckpointMismatchError, match='n_blocks'):
    convert.from_pix2pixhd(sd, 'G', tiny_model(netG='global', ngf=8, n_downsample_global=2,
                                                n_blocks_global=3))


def test_partial_load_global_into_local():
  """The progressive schedule: a trained G1 initialises the local generator's G1."""
  gcfg = tiny_model(netG='global', ngf=8)
  lcfg = tiny_model(netG='local', ngf=4, n_local_enhancers=1)  # G1 inside runs at ngf 8
  gv = models.init_variables('G', gcfg, jax.random.PRNGKey(1))
  base = models.init_variables('G', lcfg, jax.random.PRNGKey(2))
  report = convert.Report('G')
  lv = convert.from_pix2pixhd(convert.to_pix2pixhd(gv, 'G', gcfg), 'G', lcfg, strict=False,
                              base=base, report=report)
  assert report.unexpected == ['model.%d.weight' % (5 + 6 * 2 + 1), 'model.%d.bias' % (5 + 6 * 2 + 1)]
  assert all(k.startswith('model1_') for k in report.missing)
  for name in ('conv_in', 'down_0', 'res_0', 'up_1'):
    jax.tree_util.tree_map(np.testing.assert_array_equal,
                           lv['params']['global'][name], gv['params'][name])
  np.testing.assert_array_equal(lv['params']['enhancer_1']['conv_in']['kernel'],
                                base['params']['enhancer_1']['conv_in']['kernel'])
  with pytest.raises(ValueError, match='base'):
    convert.from_pix2pixhd(convert.to_pix2pixhd(gv, 'G', gcfg), 'G', lcfg, strict=False)


def test_file_io_npz_and_errors(tmp_path):
  sd = ref_state_dict(ref('encoder.npz'))
  p = str(tmp_path / 'E.npz')
  io.save_state_dict(sd, p)
  back = io.load_state_dict(p)
  assert sorted(back) == sorted(sd)
  with pytest.raises(io.WeightFileError, match='no such file'):
    io.load_state_dict(str(tmp_path / 'absent.pth'))
  broken = tmp_path / 'broken.npz'
  broken.write_bytes(b'PK\x03\x04 not really')
  with pytest.raises(io.WeightFileError, match='broken.npz'):
    io.load_state_dict(str(broken))
  (tmp_path / 'w.txt').write_text('x')
  with pytest.raises(io.WeightFileError, match='unknown weight file type'):
    io.load_state_dict(str(tmp_path / 'w.txt'))


def test_pth_files_when_torch_is_installed(tmp_path):
  torch = pytest.importorskip('torch')
  sd = ref_state_dict(ref('encoder.npz'))
  p = str(tmp_path / 'latest_net_E.pth')
  torch.save({'module.' + k: torch.from_numpy(v) for k, v in sd.items()}, p)  # DataParallel keys
  cfg = tiny_model(nef=4, n_downsample_E=2)
  v = convert.from_pix2pixhd(io.load_state_dict(p), 'E', cfg)
  out = str(tmp_path / 'export.pth')
  io.save_state_dict(convert.to_pix2pixhd(v, 'E', cfg), out)
  loaded = torch.load(out, weights_only=True)
  for k in sd:
    np.testing.assert_array_equal(loaded[k].numpy(), sd[k])
  trunc = tmp_path / 'trunc.pth'
  trunc.write_bytes(open(p, 'rb').read()[:200])
  with pytest.raises(io.WeightFileError, match='trunc.pth'):
    io.load_state_dict(str(trunc))


def test_cli_import_check_export(tmp_path):
  sd = ref_state_dict(ref('global_G.npz'))
  src = str(tmp_path / 'G_orig.npz')
  io.save_state_dict(sd, src)
  exp = os.path.join(os.path.dirname(__file__), '..', 'experiments', 'cityscapes_512p.py')
  over = ['--config.model.label_nc=5', '--config.model.ngf=8',
          '--config.model.n_downsample_global=2', '--config.model.n_blocks_global=2']
  run = lambda *a: subprocess.run([sys.executable, '-m', 'hdgan_jax.convert', *a,
                                   f'--config={exp}', *over], capture_output=True, text=True)
  r = run('check', '--net=G', f'--from={src}')
  assert r.returncode == 0, r.stderr
  r = run('import', '--net=G', f'--from={src}', f'--out={tmp_path}/G.npz')
  assert r.returncode == 0, r.stderr
  r = run('export', '--net=G', f'--from={tmp_path}/G.npz', f'--out={tmp_path}/G_back.npz')
  assert r.returncode == 0, r.stderr
  back = io.load_state_dict(f'{tmp_path}/G_back.npz')
  for k in sd:
    np.testing.assert_array_equal(back[k], sd[k])
  r = subprocess.run([sys.executable, '-m', 'hdgan_jax.convert', 'check', '--net=G',
                      f'--from={src}', f'--config={exp}'], capture_output=True, text=True)
  assert r.returncode == 1 and 'shape mismatch' in r.stdout


@pytest.mark.parametrize('content', [b'', b'PK\x03\x04', None, b'\x93NUMPY'])
def test_empty_or_truncated_npz_is_a_clear_error(tmp_path, content):
  path = tmp_path / 'w.npz'
  if content is None:   # a real archive cut short
    io.save_state_dict({'a': np.arange(1000, dtype=np.float32)}, str(path))
    content = path.read_bytes()[:300]
  path.write_bytes(content)
  with pytest.raises(io.WeightFileError) as e:
    io.load_state_dict(str(path))
  assert str(path) in str(e.value) and len(str(e.value).splitlines()) == 1


def test_bare_npy_under_an_npz_name(tmp_path):
  path = tmp_path / 'w.npz'
  with open(path, 'wb') as f:
    np.save(f, np.zeros(3))
  with pytest.raises(io.WeightFileError, match='single .npy array'):
    io.load_state_dict(str(path))


def test_corrupt_pth_is_never_retried_as_a_full_pickle(tmp_path, monkeypatch):
  torch = pytest.importorskip('torch')
  calls = []
  real = torch.load

  def spy(*args, **kwargs):
    calls.append(kwargs.get('weights_only'))
    return real(*args, **kwargs)

  monkeypatch.setattr(torch, 'load', spy)
  path = tmp_path / 'evil.pth'
  torch.save({'w': torch.zeros(2), 'obj': convert.Report('G')}, str(path))  # not weights-only
  for p, data in ((path, None), (tmp_path / 'cut.pth', path.read_bytes()[:50])):
    if data is not None:
      p.write_bytes(data)
    with pytest.raises(io.WeightFileError, match=p.name):
      io.load_state_dict(str(p))
  assert calls == [True, True]


def test_cli_errors_are_one_line_and_verbose_shows_the_traceback(tmp_path):
  empty = tmp_path / 'empty.npz'
  empty.write_bytes(b'')
  cmd = [sys.executable, '-m', 'hdgan_jax.convert', 'pth2npz', f'--from={empty}',
         f'--out={tmp_path}/x.npz']
  r = subprocess.run(cmd, capture_output=True, text=True)
  assert r.returncode == 1 and 'Traceback' not in r.stderr
  assert r.stderr.strip().splitlines() == [r.stderr.strip()] and str(empty) in r.stderr
  r = subprocess.run(cmd + ['--verbose'], capture_output=True, text=True)
  assert r.returncode == 1 and 'Traceback' in r.stderr and 'WeightFileError' in r.stderr
  r = subprocess.run([sys.executable, '-m', 'hdgan_jax.convert', 'import', f'--from={empty}'],
                     capture_output=True, text=True)
  assert r.returncode == 1 and r.stderr.strip().startswith('error: import needs --config')
  assert not os.path.exists(f'{tmp_path}/x.npz')
