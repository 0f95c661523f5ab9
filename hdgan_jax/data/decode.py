"""Decoding one file of a dataset into numpy maps, with errors that name the file.

Owns reading label maps (ids, colour-coded via a palette, or RGB inputs when
``label_nc == 0``), 16-bit instance maps, photos and feature maps, plus the
per-example size and id checks. ``sources`` (listing and pairing files), the
data check and the editor's CLI all decode through here, so a file is read the
same way everywhere.
"""

import io

import numpy as np
from PIL import Image

from hdgan_jax.data.errors import DataError
from hdgan_jax.models.inputs import check_label_ids


def _open(src, where):
  """PIL image from a path or bytes, fully decoded; bad files raise DataError."""
  try:
    img = Image.open(io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else src)
    img.load()
    return img
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    raise DataError(f'{where}: cannot read the image ({e}); the file is truncated or not an '
                    'image. Re-extract or re-download it, or remove it with its partner '
                    'files.', kind='unreadable') from None


def read_label(src, config, where, palette=None):
  """Label ids (H, W), or the (H, W, input_nc) uint8 input picture when label_nc == 0."""
  m = config.model
  img = _open(src, where)
  if m.label_nc == 0:
    if m.input_nc not in (1, 3):
      raise DataError(f'model.input_nc={m.input_nc}: RGB input maps (label_nc=0) must have '
                      '1 or 3 channels')
    arr = np.asarray(img.convert('RGB' if m.input_nc == 3 else 'L'))
    return arr if arr.ndim == 3 else arr[..., None]
  if palette is not None:
    ids = palette.to_ids(np.asarray(img.convert('RGB')), where)
  else:
    ids = read_label_ids(img, where, "set --config.data.palette (a JSON/CSV colour table or "
                         "'cityscapes') for colour-coded maps, or --config.model.label_nc=0 "
                         'for RGB input maps')
  check_ids(ids, m.label_nc, where)
  return ids


def read_label_ids(src, where, fix='convert colour-coded maps to ids first'):
  """(H, W) ids of a single-channel label image (path, bytes or PIL image), native byte
  order; needs no config: no palette, no range check. Colour pictures raise DataError."""
  img = src if isinstance(src, Image.Image) else _open(src, where)
  if img.mode in ('RGB', 'RGBA', 'CMYK', 'LA', 'YCbCr'):
    raise DataError(f'{where}: the label map is a {img.mode} picture, not ids; {fix}')
  ids = np.asarray(img)
  return ids.astype(ids.dtype.newbyteorder('=')) if ids.dtype.byteorder == '>' else ids


def check_ids(ids, label_nc, where):
  """Label ids must lie in [0, label_nc); raises DataError with the model's message."""
  if ids.size and (ids.min() < 0 or ids.max() >= label_nc):
    try:
      check_label_ids(ids, label_nc, where=f'{where}: label map')
    except ValueError as e:
      raise DataError(str(e), kind='ids') from None


def read_inst(src, where):
  """Instance ids (H, W) uint16; ids outside [0, 65535] raise DataError."""
  img = _open(src, where)
  if img.mode not in ('L', 'P', 'I', 'I;16', 'I;16B', 'I;16L', 'I;16N', 'F'):
    raise DataError(f'{where}: an instance map must be a single-channel id image, got mode '
                    f'{img.mode}; use the *_instanceIds.png files (16-bit ids)')
  arr = np.asarray(img)
  if arr.dtype == np.uint16:
    return arr
  if arr.dtype.byteorder == '>' or arr.dtype.kind == 'f':
    arr = arr.astype(np.int64)
  if arr.size and (arr.min() < 0 or arr.max() > 65535):
    raise DataError(f'{where}: instance ids must be in [0, 65535] (16 bits), found '
                    f'{int(arr.min())}..{int(arr.max())}; renumber the instances, e.g. '
                    'class*1000+k as Cityscapes does', kind='ids')
  return arr.astype(np.uint16)


def read_rgb(src, where):
  """An (H, W, 3) uint8 picture (photos and precomputed feature maps)."""
  img = _open(src, where)
  return np.asarray(img if img.mode == 'RGB' else img.convert('RGB'))


def check_sizes(example: dict, where) -> None:
  """All maps of one example must have the same (H, W)."""
  sizes = {k: v.shape[:2] for k, v in example.items() if isinstance(v, np.ndarray)}
  if len(set(sizes.values())) > 1:
    listed = ', '.join(f'{k} {w}x{h}' for k, (h, w) in sizes.items())
    raise DataError(f'{where}: maps differ in size ({listed}, as WxH); the label, instance, '
                    'photo and feature maps of an example must be pixel-aligned. Fix or '
                    'remove the example.', kind='size')

