"""Reading and writing state_dicts and Flax variables as files.

* ``.pth`` / ``.pt``: PyTorch pickles, read with ``torch.load(weights_only=True)``
  when the optional ``torch`` extra is installed (``pip install -e .[torch]``).
* ``.npz``: a flat ``key -> array`` archive, readable with numpy alone; the way
  to move weights between machines without torch.

Flax variables are saved as ``.npz`` with '/'-joined paths such as
``params/global/conv_in/kernel``.

A missing, empty, truncated or corrupt file raises :class:`WeightFileError`
naming the file. ``.pth`` files are only ever read with ``weights_only=True``:
a file that this refuses is reported, never retried as a full pickle (which
would run whatever code the file holds).
"""

import os
import zipfile
import zlib
from typing import Dict

import flax
import numpy as np

from hdgan_jax import fileutil


class WeightFileError(ValueError):
  """A weight file is missing, unreadable or of an unknown kind."""


def _need_file(path: str) -> None:
  if not os.path.isfile(path):
    raise WeightFileError(f'{path}: no such file. Give the path of a .pth or .npz state_dict.')
  if os.path.getsize(path) == 0:
    raise WeightFileError(f'{path}: the file is empty (0 bytes); an interrupted download or '
                          'copy? Fetch or export it again.')


def _import_torch(path: str):
  try:
    # optional dependency: torch is the `[torch]` extra, needed only for .pth files.
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise WeightFileError(
        f'{path}: reading .pth files needs PyTorch. Install the CPU build with '
        "`.venv/bin/pip install -e '.[torch]'` (torch==2.13.0), or convert the file "
        'on a machine with torch: python -m hdgan_jax.convert pth2npz --from=X.pth --out=X.npz') from e
  return torch


def load_state_dict(path: str) -> Dict[str, np.ndarray]:
  """Reads an original-format state_dict from ``.pth``/``.pt`` or ``.npz``."""
  _need_file(path)
  ext = os.path.splitext(path)[1].lower()
  if ext in ('.pth', '.pt'):
    torch = _import_torch(path)
    try:
      obj = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # torch raises many types for corrupt files
      first = str(e).strip().splitlines()[0][:300] if str(e).strip() else 'no detail'
      raise WeightFileError(
          f'{path}: not a readable PyTorch state_dict ({e.__class__.__name__}: {first}). Is '
          'the download complete? (.pth files are read with torch.load(weights_only=True) '
          'only; a file needing full unpickling is refused, as it could run code.)') from e
    if isinstance(obj, dict) and 'state_dict' in obj and isinstance(obj['state_dict'], dict):
      obj = obj['state_dict']
    if not isinstance(obj, dict):
      raise WeightFileError(f'{path}: holds a {type(obj).__name__}, not a state_dict')
    return {k: v.detach().cpu().numpy() for k, v in obj.items() if hasattr(v, 'detach')}
  if ext == '.npz':
    try:
      z = np.load(path, allow_pickle=False)
      if isinstance(z, np.ndarray):   # a bare .npy saved under an .npz name
        raise ValueError('a single .npy array, not an archive of named arrays')
      with z:
        return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError, zlib.error) as e:
      detail = f'{type(e).__name__}: {str(e).splitlines()[0] if str(e) else "no detail"}'
      if 'pickle' in str(e):   # numpy's guess for bytes that are neither zip nor .npy
        detail = 'neither a zip archive nor .npy data'
      raise WeightFileError(f'{path}: not a readable .npz archive ({detail}). Is the file '
                            'complete? Fetch or export it again.') from e
  raise WeightFileError(f'{path}: unknown weight file type {ext!r}; use .pth, .pt or .npz')


def save_state_dict(state_dict: Dict[str, np.ndarray], path: str) -> None:
  """Writes a state_dict as ``.pth`` (needs torch) or ``.npz``, atomically."""
  ext = os.path.splitext(path)[1].lower()
  if ext in ('.pth', '.pt'):
    torch = _import_torch(path)
    with fileutil.atomic_writer(path) as tmp:
      torch.save({k: torch.from_numpy(np.array(v, copy=True)) for k, v in state_dict.items()}, tmp)
  elif ext == '.npz':
    with fileutil.atomic_writer(path) as tmp:
      np.savez(tmp, **state_dict)
  else:
    raise WeightFileError(f'{path}: unknown weight file type {ext!r}; use .pth, .pt or .npz')


def save_variables(variables, path: str) -> None:
  """Writes Flax variables to ``.npz`` with '/'-joined keys, atomically."""
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(variables), sep='/')
  save_state_dict({k: np.asarray(v) for k, v in flat.items()}, path)


def load_variables(path: str):
  """Reads variables written by :func:`save_variables`."""
  flat = load_state_dict(path)
  if not all('/' in k for k in flat):
    raise WeightFileError(f'{path}: looks like an original state_dict, not hdgan_jax '
                          'variables; convert it with `python -m hdgan_jax.convert import`')
  return flax.traverse_util.unflatten_dict(flat, sep='/')
