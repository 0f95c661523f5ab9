"""Decoding one file of a dataset into numpy maps, with errors that name the file.

Owns reading label maps (ids, colour-coded via a palette, or RGB inputs when
``label_nc == 0``), 16-bit instance maps, photos and feature maps, plus the
per-example size and id checks. ``sources`` (listing and pairing files), the
data check and the editor's CLI all decode through here, so a file is read the
same way everywhere.

Label and instance maps must be lossless. JPEG (and lossy WebP, JPEG 2000)
compression rewrites pixel values along every edge, so a compressed id map
holds wrong ids on many pixels and ids of classes that are not in the scene;
training on it teaches the model noise. Such maps are refused (by extension
when a dataset is listed, :func:`lossy_paths`, and by the decoded format here)
unless the caller opts in (``data.allow_lossy_maps``), which logs a warning.
Photos and feature maps may be JPEG.
"""

import io
import os

from absl import logging
import numpy as np
from PIL import Image

from hdgan_jax.data.errors import DataError
from hdgan_jax.models.inputs import check_label_ids


# Lossy formats by file extension (listing) and by PIL's decoded format (reading).
LOSSY_EXTENSIONS = {'.jpg': 'JPEG', '.jpeg': 'JPEG', '.jpe': 'JPEG', '.jfif': 'JPEG',
                    '.webp': 'WebP', '.jp2': 'JPEG 2000', '.j2k': 'JPEG 2000',
                    '.jpx': 'JPEG 2000', '.jpf': 'JPEG 2000'}
_LOSSY_FORMATS = {'JPEG': 'JPEG', 'MPO': 'JPEG', 'WEBP': 'WebP', 'JPEG2000': 'JPEG 2000'}
# Extensions of lossless formats a label or instance map may have.
LOSSLESS_EXTENSIONS = ('.png', '.bmp', '.tif', '.tiff', '.ppm', '.pgm')
_warned = set()   # roles already warned about in this process (allow_lossy opt-in)


def lossy_message(path, what='label map', fmt=None):
  """Why a lossy (JPEG) label/instance map is refused, and what to do instead."""
  fmt = fmt or LOSSY_EXTENSIONS.get(os.path.splitext(str(path))[1].lower(), 'lossy')
  return (f'{path}: {what}s must be lossless (PNG), but this file is {fmt}. Lossy compression '
          'changes the ids of many pixels (along every edge) and invents classes that are '
          f'not in the scene. Export the {what} as PNG from the original annotation '
          '(converting this file keeps its wrong ids), or opt in with '
          '--config.data.allow_lossy_maps=True (hdgan_jax.edit: --allow_lossy_maps) to read '
          'it anyway.')


def lossy_error(lossy, root) -> DataError:
  """DataError for the (path, what) pairs of lossy maps found listing ``root``."""
  if len(lossy) == 1:
    return DataError(lossy_message(*lossy[0]), kind='lossy')
  listed = '\n  '.join(f'{p} ({what})' for p, what in lossy[:20])
  more = f'\n  ... and {len(lossy) - 20} more' if len(lossy) > 20 else ''
  return DataError(
      f'{len(lossy)} label/instance maps under {root} are JPEG/WebP, but maps must be lossless '
      f'(PNG):\n  {listed}{more}\nLossy compression changes the ids of many pixels (along '
      'every edge) and invents classes that are not in the scene. Export the maps as PNG from '
      'the original annotation (converting these files keeps their wrong ids), or set '
      '--config.data.allow_lossy_maps=True to read them anyway.', kind='lossy')


def lossy_paths(paths):
  """The paths among ``paths`` whose extension is a lossy format (.jpg, .webp, ...)."""
  return [p for p in paths if os.path.splitext(str(p))[1].lower() in LOSSY_EXTENSIONS]


def warn_lossy(what, detail=''):
  """Warns once per process that lossy ``what``s are read because the caller opted in."""
  if what in _warned:
    return
  _warned.add(what)
  logging.warning('reading lossy (JPEG/WebP) %ss%s because allow_lossy_maps is set: '
                  'compression has changed the ids of pixels along edges and may have added '
                  'ids of classes not in the scene; those pixels are used as they are.',
                  what, detail)


def check_lossless(img, where, what='label map', allow_lossy=False):
  """Refuses a decoded map stored in a lossy format (DataError kind 'lossy').

  ``img`` is the PIL image (its ``format`` says how the file was stored; TIFF
  files are checked for JPEG compression). ``allow_lossy`` warns instead.
  """
  fmt = _LOSSY_FORMATS.get(img.format or '')
  if img.format == 'TIFF' and str(img.info.get('compression', '')).lower() in (
      'jpeg', 'tiff_jpeg', 'webp'):
    fmt = 'JPEG-compressed TIFF'
  if fmt is None:
    return
  if allow_lossy:
    warn_lossy(what, f' (e.g. {where})')
    return
  raise DataError(lossy_message(where, what, fmt), kind='lossy')


def _open(src, where):
  """PIL image from a path or bytes, fully decoded; bad files raise DataError."""
  try:
    img = Image.open(io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else src)
    img.load()
    return img
  except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as e:
    raise DataError(f'{where}: cannot open the file ({e.strerror}); check the path',
                    kind='unreadable') from None
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    raise DataError(f'{where}: cannot read the image ({e}); the file is truncated or not an '
                    'image. Re-extract or re-download it, or remove it with its partner '
                    'files.', kind='unreadable') from None


def read_label(src, config, where, palette=None):
  """Label ids (H, W), or the (H, W, input_nc) uint8 input picture when label_nc == 0.

  Label maps (ids or colours) in a lossy format raise DataError unless
  ``config.data.allow_lossy_maps``; RGB input pictures (label_nc == 0) may be JPEG.
  """
  m = config.model
  img = _open(src, where)
  if m.label_nc == 0:
    if m.input_nc not in (1, 3):
      raise DataError(f'model.input_nc={m.input_nc}: RGB input maps (label_nc=0) must have '
                      '1 or 3 channels')
    arr = np.asarray(img.convert('RGB' if m.input_nc == 3 else 'L'))
    return arr if arr.ndim == 3 else arr[..., None]
  allow = bool(config.data.get('allow_lossy_maps', False))
  if palette is not None:
    check_lossless(img, where, 'label map', allow)
    ids = palette.to_ids(np.asarray(img.convert('RGB')), where)
  else:
    ids = read_label_ids(img, where, "set --config.data.palette (a JSON/CSV colour table or "
                         "'cityscapes') for colour-coded maps, or --config.model.label_nc=0 "
                         'for RGB input maps', allow_lossy=allow)
  check_ids(ids, m.label_nc, where)
  return ids


def read_label_ids(src, where, fix='convert colour-coded maps to ids first', *,
                   allow_lossy=False):
  """(H, W) ids of a single-channel label image (path, bytes or PIL image), native byte
  order; needs no config: no palette, no range check. Colour pictures and lossy files
  (unless ``allow_lossy``) raise DataError."""
  img = src if isinstance(src, Image.Image) else _open(src, where)
  check_lossless(img, where, 'label map', allow_lossy)
  if img.mode in ('RGB', 'RGBA', 'CMYK', 'LA', 'YCbCr'):
    raise DataError(f'{where}: the label map is a {img.mode} picture, not ids; {fix}')
  ids = np.asarray(img)
  if ids.dtype == bool:   # a 1-bit map: ids 0 and 1
    return ids.astype(np.uint8)
  if ids.dtype.kind == 'f':   # whole numbers beyond int32 are out of any label range anyway
    return np.clip(_whole(ids, where, 'label map'), -1, 2**31 - 1).astype(np.int64)
  return ids.astype(ids.dtype.newbyteorder('=')) if ids.dtype.byteorder == '>' else ids


def _whole(arr, where, what):
  """A floating-point map (TIFF mode F) whose values must all be whole numbers."""
  if not (np.isfinite(arr).all() and (arr == np.round(arr)).all()):
    raise DataError(f'{where}: the {what} holds fractional or non-finite values; ids must be '
                    'whole numbers (save it as an 8/16-bit PNG)', kind='ids')
  return arr


def check_ids(ids, label_nc, where):
  """Label ids must lie in [0, label_nc); raises DataError with the model's message."""
  if ids.size and (ids.min() < 0 or ids.max() >= label_nc):
    try:
      check_label_ids(ids, label_nc, where=f'{where}: label map')
    except ValueError as e:
      raise DataError(str(e), kind='ids') from None


def read_inst(src, where, *, allow_lossy=False):
  """Instance ids (H, W) uint16; ids outside [0, 65535] and lossy files (unless
  ``allow_lossy``) raise DataError."""
  img = _open(src, where)
  check_lossless(img, where, 'instance map', allow_lossy)
  if img.mode not in ('1', 'L', 'P', 'I', 'I;16', 'I;16B', 'I;16L', 'I;16N', 'F'):
    raise DataError(f'{where}: an instance map must be a single-channel id image, got mode '
                    f'{img.mode}; use the *_instanceIds.png files (16-bit ids)')
  arr = np.asarray(img)
  if arr.dtype == np.uint16:
    return arr
  if arr.dtype.kind == 'f':
    arr = _whole(arr, where, 'instance map')
  elif arr.dtype.byteorder == '>' or arr.dtype == bool:
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

