"""FID/KID parts that need no Inception weights: math, resize, reader, folders, CLI errors."""

import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from hdgan_jax import evaluate
from hdgan_jax.fid import folders, metrics, resize, torchscript

REPO = os.path.join(os.path.dirname(__file__), '..')


def _features(n, d=64, shift=0.0, seed=0):
  return np.random.default_rng(seed).normal(size=(n, d)) * (1 + shift) + shift


# ---- metrics ---------------------------------------------------------------------------------

@pytest.mark.parametrize('n1,n2', [(4, 5), (30, 40), (200, 150)])  # SVD route, then eigh route
def test_exact_fid_equals_sqrtm_fid(n1, n2):
  x, y = _features(n1), _features(n2, shift=0.3, seed=1)
  a, b = metrics.Stats.from_features(x), metrics.Stats.from_features(y)
  standard = metrics.fid_from_stats(a.mu, a.sigma, b.mu, b.sigma)
  assert metrics.fid_from_features(x, y) == pytest.approx(standard, rel=1e-6)


def test_fid_of_a_set_with_itself_is_zero():
  x = _features(300)
  s = metrics.Stats.from_features(x)
  assert abs(metrics.fid_from_stats(s.mu, s.sigma, s.mu, s.sigma)) < 1e-6
  assert abs(metrics.fid_from_features(x, x)) < 1e-6


def test_fid_of_gaussians_matches_closed_form():
  # N(m1, I) vs N(m2, 4 I) in d dims: |m1 - m2|^2 + d (1 + 4 - 2 * 2) = |dm|^2 + d
  d = 8
  mu1, mu2 = np.zeros(d), np.full(d, 0.5)
  assert metrics.fid_from_stats(mu1, np.eye(d), mu2, 4 * np.eye(d)) == pytest.approx(2 + d)


def _kid_naive(x, y):
  d, m = x.shape[1], len(x)
  k = lambda a, b: (a @ b / d + 1) ** 3  # noqa: E731
  xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
  yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
  xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
  return xx + yy - 2 * xy


def test_kid_is_the_unbiased_polynomial_mmd():
  x, y = _features(6, d=5), _features(6, d=5, shift=0.5, seed=1)
  mean, std = metrics.kid(x, y, num_subsets=3)  # m = 6 = n: every subset is the whole set
  assert mean == pytest.approx(_kid_naive(x, y), rel=1e-10)
  assert std == pytest.approx(0, abs=1e-12)


def test_kid_subsets_and_seed():
  x, y = _features(200), _features(200, shift=0.3, seed=1)
  a = metrics.kid(x, y, num_subsets=30, max_subset_size=100, seed=3)
  assert a == metrics.kid(x, y, num_subsets=30, max_subset_size=100, seed=3)
  assert a[0] > 0.2 and 0 < a[1] < a[0] / 3
  same = metrics.kid(x, _features(200, seed=2), num_subsets=30, max_subset_size=100)
  assert abs(same[0]) < 2 * same[1] < a[0] / 5   # unbiased: ~0 for one distribution


def test_too_few_images_are_refused():
  with pytest.raises(ValueError, match='fake set has 1 image; .* at least 2'):
    metrics.check_counts(5, 1)
  with pytest.raises(ValueError, match='at least 2'):
    metrics.kid(_features(1), _features(5))
  with pytest.raises(ValueError, match='at least 2'):
    metrics.fid_from_features(_features(3), _features(1))


def test_to_uint8_rounds_like_saving_images():
  x = np.array([-1.0, -0.999, 0.0, 0.5, 1.0, 1.5], np.float32)
  np.testing.assert_array_equal(metrics.to_uint8(x), [0, 0, 128, 191, 255, 255])


# ---- resize ----------------------------------------------------------------------------------

def test_resize_passes_299_through_and_keeps_constants():
  im = np.random.default_rng(0).integers(0, 256, (299, 299, 3), dtype=np.uint8)
  np.testing.assert_array_equal(resize.nv_bilinear(im), im.astype(np.float32))
  flat = np.full((40, 1000, 3), 77, np.uint8)
  np.testing.assert_allclose(resize.nv_bilinear(flat), 77, atol=1e-4)


def test_resize_samples_at_j_times_scale():
  # A horizontal ramp v = x: output column j reads x = j * W / 299 (clamped at W - 1).
  w = 598
  ramp = np.tile(np.arange(w, dtype=np.float32)[None, :, None], (10, 1, 3))
  out = resize.nv_bilinear(ramp)
  np.testing.assert_allclose(out[0, :, 0], np.arange(299) * 2.0, atol=1e-3)
  up = resize.nv_bilinear(ramp[:, :100])                   # upsampling: border clamped
  assert up[0, -1, 0] == pytest.approx(99) and up[0, 1, 0] == pytest.approx(100 / 299, abs=1e-5)


def test_model_input_range_is_tf():
  x = resize.to_model_input(np.array([[[0, 128, 255]]], np.uint8).repeat(299, 0).repeat(299, 1))
  np.testing.assert_allclose(x[0, 0], [-1, 0, 0.9921875], atol=1e-6)
  with pytest.raises(ValueError, match='uint8'):
    resize.to_model_input(np.zeros((8, 8, 3), np.float32))


# ---- TorchScript reader ----------------------------------------------------------------------

def _archive(tmp_path, payload: bytes, name='m.pt'):
  path = tmp_path / name
  with zipfile.ZipFile(path, 'w') as z:
    z.writestr('m/data.pkl', payload)
    z.writestr('m/version', '3\n')
  return str(path)


def test_reader_refuses_other_globals(tmp_path):
  class Evil:
    def __reduce__(self):
      return (os.getcwd, ())
  path = _archive(tmp_path, pickle.dumps(Evil(), protocol=2))
  with pytest.raises(torchscript.TorchScriptError, match='posix.getcwd is not allowed'):
    torchscript.read_module(path)


def test_reader_errors_name_the_file(tmp_path):
  bad = tmp_path / 'x.pt'
  bad.write_bytes(b'not a zip')
  with pytest.raises(torchscript.TorchScriptError, match='x.pt: not a TorchScript file'):
    torchscript.read_module(str(bad))


@pytest.mark.filterwarnings('ignore:`torch.jit.:DeprecationWarning')
def test_reader_on_a_saved_torchscript_module(tmp_path):
  torch = pytest.importorskip('torch')

  class Net(torch.nn.Module):
    def __init__(self):
      super().__init__()
      self.conv = torch.nn.Conv2d(3, 4, 3)
      self.pad: list = [1, 2]

    def forward(self, x):
      return self.conv(x)

  net = Net()
  path = str(tmp_path / 'net.pt')
  torch.jit.save(torch.jit.script(net), path)
  tree = torchscript.read_module(path)
  np.testing.assert_array_equal(tree['conv.weight'], net.conv.weight.detach().numpy())
  np.testing.assert_array_equal(tree['conv.bias'], net.conv.bias.detach().numpy())
  assert tree['pad'] == [1, 2]


# ---- folders and the statistics cache --------------------------------------------------------

class FakeExtractor:
  """Stands in for the Inception: a feature per image from its pixel statistics."""
  fingerprint = 'fake/1'

  def __init__(self):
    self.calls = 0

  def __call__(self, images, progress=None):
    self.calls += 1
    return np.stack([np.r_[im.mean((0, 1)), im.std((0, 1))] for im in images]).astype(np.float32)


def _write(folder, n, start=0, size=(12, 16)):
  os.makedirs(folder, exist_ok=True)
  rng = np.random.default_rng(start)
  for i in range(start, start + n):
    Image.fromarray(rng.integers(0, 256, size + (3,), dtype=np.uint8)).save(
        os.path.join(folder, f'{i:03d}.png'))


def test_list_images_recursive_sorted_skips_hidden(tmp_path):
  _write(tmp_path / 'b', 2)
  _write(tmp_path, 1)
  (tmp_path / '.hidden.tmp.png').write_bytes(b'')
  (tmp_path / 'notes.txt').write_text('x')
  (tmp_path / 'UPPER.JPG').write_bytes(b'')
  assert folders.list_images(str(tmp_path)) == ['000.png', 'UPPER.JPG', 'b/000.png', 'b/001.png']


def test_stats_cache_hits_and_invalidates(tmp_path):
  real, cache = str(tmp_path / 'real'), str(tmp_path / 'cache')
  _write(real, 3)
  ex = FakeExtractor()
  s1, hit = folders.folder_stats(real, ex, cache_dir=cache)
  assert not hit and ex.calls == 1
  s2, hit = folders.folder_stats(real, ex, cache_dir=cache)
  assert hit and ex.calls == 1
  np.testing.assert_array_equal(s1.features, s2.features)
  _write(real, 1, start=3)                                   # a new file
  s3, hit = folders.folder_stats(real, ex, cache_dir=cache)
  assert not hit and s3.n == 4
  os.utime(os.path.join(real, '000.png'), ns=(1, 1))        # a touched file
  assert not folders.folder_stats(real, ex, cache_dir=cache)[1]
  other = FakeExtractor()
  other.fingerprint = 'fake/2'                               # another model or preprocessing
  assert not folders.folder_stats(real, other, cache_dir=cache)[1]
  for f in os.listdir(os.path.join(cache, 'fid_stats')):    # damaged cache files are ignored
    with open(os.path.join(cache, 'fid_stats', f), 'wb') as fh:
      fh.write(b'garbage')
  assert not folders.folder_stats(real, ex, cache_dir=cache)[1]


def test_evaluate_errors(tmp_path):
  good, one, empty, bad = (str(tmp_path / n) for n in ('good', 'one', 'empty', 'bad'))
  _write(good, 2)
  _write(one, 1)
  os.makedirs(empty)
  _write(bad, 2)
  with open(os.path.join(bad, 'zz.png'), 'wb') as f:
    f.write(b'junk')
  with open(os.path.join(good, '000.png'), 'rb') as f:
    truncated = f.read()[:100]
  with open(os.path.join(bad, 'cut.png'), 'wb') as f:
    f.write(truncated)
  kw = dict(cache_dir=str(tmp_path / 'cache'))
  with pytest.raises(ValueError, match='empty: no images found'):
    evaluate.evaluate(empty, good, **kw)
  with pytest.raises(FileNotFoundError, match='nowhere: no such folder'):
    evaluate.evaluate(str(tmp_path / 'nowhere'), good, **kw)
  with pytest.raises(ValueError, match='real set has 1 image; .*at least 2'):
    evaluate.evaluate(one, good, **kw)
  with pytest.raises(ValueError, match=r'2 unreadable images: cut.png \(.*\); zz.png \(not an'):
    evaluate.evaluate(good, bad, **kw)


def test_cli_error_is_one_line(tmp_path):
  _write(tmp_path / 'real', 2)
  os.makedirs(tmp_path / 'fake')
  r = subprocess.run([sys.executable, '-m', 'hdgan_jax.evaluate', f'--real={tmp_path / "real"}',
                      f'--fake={tmp_path / "fake"}', f'--cache_dir={tmp_path / "cache"}'],
                     cwd=REPO, capture_output=True, text=True, timeout=120)
  assert r.returncode == 1
  lines = r.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: ') and 'no images found' in lines[0]
  assert 'Traceback' not in r.stderr + r.stdout
