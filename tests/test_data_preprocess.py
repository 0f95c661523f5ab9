"""Preprocessing: the original's resize_or_crop semantics, one crop/flip for all maps."""

import types

from hypothesis import given, settings, strategies as st
import numpy as np
from PIL import Image
import pytest

from hdgan_jax.data import preprocess


def data(mode='scale_width', load=64, fine=32, no_flip=False):
  return types.SimpleNamespace(resize_or_crop=mode, loadSize=load, fineSize=fine,
                               no_flip=no_flip)


def reference(img, d, params, base, method, train=True):
  """pix2pixHD's get_transform written with PIL calls only (the definition we match)."""
  w, h = img.size
  if 'resize' in d.resize_or_crop:
    img = img.resize((d.loadSize, d.loadSize), method)
  elif 'scale_width' in d.resize_or_crop and w != d.loadSize:
    img = img.resize((d.loadSize, int(d.loadSize * h / w)), method)
  if 'crop' in d.resize_or_crop:
    ow, oh = img.size
    if ow > d.fineSize or oh > d.fineSize:
      x, y = params.crop
      img = img.crop((x, y, x + d.fineSize, y + d.fineSize))
  if d.resize_or_crop == 'none':
    ow, oh = img.size
    nh, nw = int(round(oh / base) * base), int(round(ow / base) * base)
    if (nh, nw) != (oh, ow):
      img = img.resize((nw, nh), method)
  if train and params.flip:
    img = img.transpose(Image.FLIP_LEFT_RIGHT)
  return np.asarray(img)


@settings(max_examples=40, deadline=None)
@given(mode=st.sampled_from(preprocess.MODES), w=st.integers(8, 90), h=st.integers(8, 90),
       load=st.integers(16, 80), fine=st.integers(8, 64), seed=st.integers(0, 2**31),
       base=st.sampled_from([4, 16, 32]))
def test_matches_original_transform(mode, w, h, load, fine, seed, base):
  rng = np.random.default_rng(seed)
  d = data(mode, load, fine)
  label = rng.integers(0, 35, (h, w), np.uint8)
  photo = rng.integers(0, 256, (h, w, 3), np.uint8)
  params = preprocess.sample_params(d, (w, h), rng)
  if mode == 'none' and min(round(h / base), round(w / base)) == 0:
    return  # rounds to an empty map; the pipeline refuses such sizes
  got_l = preprocess.transform(label, params, d, base, nearest=True)
  got_p = preprocess.transform(photo, params, d, base, nearest=False)
  np.testing.assert_array_equal(got_l, reference(Image.fromarray(label), d, params, base,
                                                 Image.NEAREST))
  np.testing.assert_array_equal(got_p, reference(Image.fromarray(photo), d, params, base,
                                                 Image.BICUBIC))
  assert preprocess.output_size(d, (w, h), base) == got_l.shape[1::-1]


@settings(max_examples=40, deadline=None)
@given(mode=st.sampled_from(['crop', 'none', 'scale_width_and_crop', 'resize_and_crop']),
       w=st.integers(8, 70), h=st.integers(8, 70), seed=st.integers(0, 2**31))
def test_one_crop_and_flip_for_all_maps(mode, w, h, seed):
  """Every map encodes its pixel coordinates; after preprocessing they must agree."""
  d = data(mode, load=48, fine=24)
  yy, xx = np.mgrid[0:h, 0:w]
  coord = (yy * 100 + xx).astype(np.uint16)  # unique per pixel
  example = {'label': coord.astype(np.int32), 'inst': coord,
             'feat': np.dstack([xx, yy, xx]).astype(np.uint8),
             'image': np.dstack([xx, yy, yy]).astype(np.uint8), 'name': 'x'}
  base = 4 if mode == 'none' and min(w, h) >= 4 else 1
  params = preprocess.sample_params(d, (w, h), np.random.default_rng(seed))
  out = preprocess.apply(example, params, d, base, rgb_labels=False)
  assert out['name'] == 'x'
  np.testing.assert_array_equal(out['label'], out['inst'].astype(np.int32))
  fx, fy = out['feat'][..., 0].astype(int), out['feat'][..., 1].astype(int)
  inst = out['inst'].astype(int)
  np.testing.assert_array_equal(inst, fy * 100 + fx)
  if mode == 'crop' or (mode == 'none' and w % base == 0 and h % base == 0):
    # no resampling: the bicubic photo is the same window, flipped the same way
    np.testing.assert_array_equal(out['image'][..., :2], out['feat'][..., :2])
  flipped = preprocess.apply(example, preprocess.Params(params.crop, not params.flip), d, base,
                             rgb_labels=False)
  for key in ('label', 'inst', 'feat'):
    np.testing.assert_array_equal(flipped[key], out[key][:, ::-1])


def test_params_draws():
  rng = np.random.default_rng(0)
  d = data('scale_width_and_crop', load=100, fine=40)
  ps = [preprocess.sample_params(d, (200, 120), rng) for _ in range(400)]
  xs = {p.crop[0] for p in ps}
  ys = {p.crop[1] for p in ps}
  assert min(xs) == 0 and max(xs) == 60   # 100 - 40, inclusive
  assert min(ys) == 0 and max(ys) == 20   # 100 * 120 // 200 - 40
  assert 150 < sum(p.flip for p in ps) < 250
  d.no_flip = True
  assert not any(preprocess.sample_params(d, (200, 120), rng).flip for _ in range(50))


def test_eval_params_centre_no_flip():
  d = data('crop', fine=32)
  p = preprocess.eval_params(d, (100, 50))
  assert p == preprocess.Params((34, 9), False)


@pytest.mark.parametrize('size,base,expected', [
    ((2048, 1024), 32, (2048, 1024)), ((100, 48), 32, (96, 64)),   # 1.5 -> 2
    ((80, 80), 32, (64, 64)),                                       # 2.5 -> 2 (half to even)
    ((1000, 500), 16, (992, 496)), ((1016, 500), 16, (1024, 496))])  # 62.5 -> 62, 63.5 -> 64
def test_none_mode_rounds_like_python_round(size, base, expected):
  assert preprocess.output_size(data('none'), size, base) == expected


def test_crop_beyond_border_is_zero_filled():
  """PIL's crop pads with zeros when one side is smaller than fineSize (the original does too)."""
  d = data('crop', fine=16)
  arr = np.full((8, 40), 7, np.uint8)
  out = preprocess.transform(arr, preprocess.Params((3, 0), False), d, 1, nearest=True)
  assert out.shape == (16, 16)
  assert (out[:8] == 7).all() and (out[8:] == 0).all()


def test_unit_range_matches_torch_normalize():
  torch = pytest.importorskip('torch')
  x = np.arange(256, dtype=np.uint8).reshape(16, 16)
  ref = torch.from_numpy(x).float().div(255).sub_(0.5).div_(0.5).numpy()
  got = preprocess.to_unit_range(x[:, ::-1])[:, ::-1]
  assert got.dtype == np.float32
  np.testing.assert_array_equal(got, ref)
  assert got.min() == -1 and got.max() == 1


def test_finalize_dtypes():
  batch = {'label': np.zeros((1, 4, 4), np.uint8), 'inst': np.zeros((1, 4, 4), np.uint16),
           'image': np.zeros((1, 4, 4, 3), np.uint8)}
  out = preprocess.finalize(batch, rgb_labels=False)
  assert out['label'].dtype == np.int32 and out['inst'].dtype == np.uint16
  assert out['image'].dtype == np.float32 and (out['image'] == -1).all()
  rgb = preprocess.finalize({'label': np.full((1, 2, 2, 3), 255, np.uint8)}, rgb_labels=True)
  assert rgb['label'].dtype == np.float32 and (rgb['label'] == 1).all()


def test_validate_names_the_key():
  with pytest.raises(ValueError, match='data.resize_or_crop'):
    preprocess.validate(data('scale'))
