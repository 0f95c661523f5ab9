"""Geometry and value conversion of one example, as pix2pixHD's data loader does it.

This file owns the exact preprocessing semantics of the original
(``resize_or_crop`` modes, ``loadSize`` / ``fineSize``, the power-of-two
rounding of mode ``none``, flips, value ranges), kept apart from file reading
so that training, evaluation, generation and the data check share one code path.

One :class:`Params` (crop corner and flip) is drawn per example and applied to
the label, instance, photo and feature maps alike. Label, instance and feature
maps are resized with nearest neighbour, photos (and the RGB input maps of
``label_nc == 0``) with bicubic, both through PIL so results match the original
bit for bit. Everything stays uint8/uint16 until :func:`finalize`, which makes
the float arrays the model reads.
"""

import dataclasses

import numpy as np
from PIL import Image

MODES = ('resize_and_crop', 'crop', 'scale_width', 'scale_width_and_crop', 'none')


@dataclasses.dataclass(frozen=True)
class Params:
  """Random choices for one example: top-left crop corner (x, y) and the flip."""
  crop: tuple = (0, 0)
  flip: bool = False


def validate(data) -> None:
  """Raises ValueError naming the key when the preprocessing options are invalid."""
  if data.resize_or_crop not in MODES:
    raise ValueError(f'data.resize_or_crop={data.resize_or_crop!r} is not known; use one of '
                     f'{", ".join(MODES)}')
  for key in ('loadSize', 'fineSize'):
    if int(data[key]) <= 0:
      raise ValueError(f'data.{key} must be positive, got {data[key]}')


def _scaled_size(data, w, h):
  """Size after the resize step (before cropping)."""
  mode = data.resize_or_crop
  if 'resize' in mode:
    return data.loadSize, data.loadSize
  if 'scale_width' in mode and w != data.loadSize:
    return data.loadSize, data.loadSize * h // w
  return w, h


def sample_params(data, size, rng) -> Params:
  """Crop corner and flip for an example of size (W, H) drawn from ``rng``.

  Same draws as the original: x in [0, max(0, W' - fineSize)], y likewise
  (inclusive), flip when a uniform draw exceeds 0.5, where (W', H') is the
  size after the resize step. ``data.no_flip`` disables the flip.
  """
  nw, nh = _scaled_size(data, *size)
  x = int(rng.integers(0, max(0, nw - data.fineSize) + 1))
  y = int(rng.integers(0, max(0, nh - data.fineSize) + 1))
  flip = bool(rng.random() > 0.5)
  return Params((x, y), flip and not data.no_flip)


def eval_params(data, size) -> Params:
  """Test-time choices: no flip, and the centre crop for the crop modes.

  (The original draws a random crop even at test time; a fixed centre makes
  sample grids and generation reproducible. Modes without crop are exact.)
  """
  nw, nh = _scaled_size(data, *size)
  return Params((max(0, nw - data.fineSize) // 2, max(0, nh - data.fineSize) // 2), False)


def _round_to(v, base):
  return int(round(v / base) * base)  # Python's round, as the original (half to even)


def output_size(data, size, multiple: int):
  """(W, H) of a preprocessed example whose raw size is ``size`` = (W, H)."""
  w, h = _scaled_size(data, *size)
  if 'crop' in data.resize_or_crop and (w > data.fineSize or h > data.fineSize):
    w = h = data.fineSize
  if data.resize_or_crop == 'none':
    w, h = _round_to(w, float(multiple)), _round_to(h, float(multiple))
  return w, h


def _resize(arr, size, method):
  if (arr.shape[1], arr.shape[0]) == tuple(size):
    return arr
  dtype = arr.dtype
  # 16-bit ids go through PIL's 32-bit 'I' mode: its 'I;16' nearest resize maps rows
  # differently from 'L'/'RGB'/'I', while the original (older PIL) read them as 'I'.
  if arr.dtype in (np.uint16, np.int64, np.uint32):
    arr = arr.astype(np.int32)
  squeeze = arr.ndim == 3 and arr.shape[-1] == 1
  img = Image.fromarray(arr[..., 0] if squeeze else arr)
  out = np.asarray(img.resize(tuple(size), method))
  if out.dtype != dtype:
    out = out.astype(dtype)
  return out[..., None] if squeeze else out


def _crop(arr, x, y, size):
  """A size x size window at (x, y); beyond the border it is zero-filled (as PIL's crop)."""
  h, w = arr.shape[:2]
  if not (w > size or h > size):
    return arr
  out = np.zeros((size, size) + arr.shape[2:], arr.dtype)
  part = arr[y:y + size, x:x + size]
  out[:part.shape[0], :part.shape[1]] = part
  return out


def transform(arr, params: Params, data, multiple: int, *, nearest: bool):
  """Resize / crop / round / flip one (H, W[, C]) map, keeping its dtype."""
  method = Image.NEAREST if nearest else Image.BICUBIC
  h, w = arr.shape[:2]
  mode = data.resize_or_crop
  arr = _resize(arr, _scaled_size(data, w, h), method)
  if 'crop' in mode:
    arr = _crop(arr, params.crop[0], params.crop[1], data.fineSize)
  if mode == 'none':
    h, w = arr.shape[:2]
    size = (_round_to(w, float(multiple)), _round_to(h, float(multiple)))
    if min(size) <= 0:
      raise ValueError(f'a {w}x{h} map rounds to {size[0]}x{size[1]} with multiple {multiple}')
    arr = _resize(arr, size, method)
  if params.flip:
    arr = arr[:, ::-1]  # a view: the batch assembly copies it once
  return arr


# Which maps are labels (nearest) and which are pictures (bicubic).
NEAREST_KEYS = ('inst', 'feat')


def apply(example: dict, params: Params, data, multiple: int, *, rgb_labels: bool) -> dict:
  """Applies one crop/flip decision to every map of a raw example.

  ``rgb_labels``: the label map is an RGB input picture (``label_nc == 0``)
  and is resized bicubically like the photo. Keys other than the maps pass
  through unchanged.
  """
  out = dict(example)
  for key in ('label', 'inst', 'image', 'feat'):
    if key in example:
      nearest = key in NEAREST_KEYS or (key == 'label' and not rgb_labels)
      out[key] = transform(example[key], params, data, multiple, nearest=nearest)
  return out


def to_unit_range(x, out=None):
  """uint8 [0, 255] -> float32 [-1, 1], bit-identical to the original's float32 arithmetic.

  ``ToTensor`` computes t = x / 255 and ``Normalize(0.5, 0.5)`` (t - 0.5) / 0.5.
  Scaling by 2 commutes with float rounding, so x / 127.5 - 1 gives the same
  bits in two passes instead of three. ``x`` may be a strided view (a flip);
  ``out`` receives the result.
  """
  x = np.asarray(x)
  out = np.empty(x.shape, np.float32) if out is None else out
  np.divide(x, np.float32(127.5), out=out, dtype=np.float32, casting='unsafe')
  np.subtract(out, np.float32(1.0), out=out)
  return out


def stack(examples, keys) -> dict:
  """Stacks examples (maps may be strided views, e.g. flips) keeping their dtypes."""
  return {k: np.stack([e[k] for e in examples]) for k in keys}


def finalize(batch: dict, *, rgb_labels: bool) -> dict:
  """Model-ready dtypes from a stacked integer batch.

  label int32 (or float32 in [-1, 1] when ``rgb_labels``), inst uint16,
  image / feat float32 in [-1, 1]; other keys pass through.
  """
  out = {}
  for key, value in batch.items():
    if key in ('image', 'feat') or (key == 'label' and rgb_labels):
      out[key] = to_unit_range(value)
    elif key == 'label':
      out[key] = value.astype(np.int32)
    elif key == 'inst':
      out[key] = value.astype(np.uint16, copy=False)
    else:
      out[key] = value
  return out
