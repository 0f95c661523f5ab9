"""Reads the tensors and attributes of a TorchScript module file without PyTorch.

A TorchScript file (``torch.jit.save``) is a zip archive holding, under one
top-level folder:

* ``data.pkl``: a pickle of the module tree. Each module is an object of a
  ``__torch__.*`` class built with an empty constructor and given its state
  (a dict of attributes: parameters, submodules, ints, lists) by ``BUILD``;
  a tensor is a call of ``torch._utils._rebuild_tensor_v2(storage, offset,
  size, stride, requires_grad, hooks)`` whose storage is a persistent id
  ``('storage', <storage type>, <key>, <device>, <numel>)``;
  typed list attributes are ``torch.jit._pickle.build_intlist([...])`` calls;
* ``data/<key>``: each storage's raw little-endian bytes;
* ``code/``, ``constants.pkl``, ``version``: the compiled code, not needed to
  read weights.

:func:`read_module` unpickles ``data.pkl`` with a restricted unpickler that
knows only those few globals (tensor rebuilding, the storage types, typed
lists, ``collections.OrderedDict``) and stands in inert placeholder objects for the
``__torch__`` module classes; any other global is refused, so reading a file
never runs code from it. The result is a flat ``{dotted name: value}`` dict
of arrays and plain attributes, e.g. ``net.layers.conv.weight`` (an OIHW
float32 array) and ``net.layers.conv.stride`` (an int).
"""

import collections
import io
import pickle
import zipfile
import zlib
from typing import Any, Dict

import numpy as np

_STORAGE_DTYPES = {
    'FloatStorage': np.float32, 'DoubleStorage': np.float64, 'HalfStorage': np.float16,
    'LongStorage': np.int64, 'IntStorage': np.int32, 'ShortStorage': np.int16,
    'CharStorage': np.int8, 'ByteStorage': np.uint8, 'BoolStorage': np.bool_,
}
_TYPED_LISTS = ('build_intlist', 'build_floatlist', 'build_boollist')
_SKIP_ATTRS = ('training', '_is_full_backward_hook')


class TorchScriptError(ValueError):
  """The file is not a TorchScript archive this reader understands."""


class _Module:
  """Placeholder for a ``__torch__.*`` module object: keeps its class name and attributes."""

  def __init__(self, qualname: str):
    self.qualname = qualname
    self.attrs: Dict[str, Any] = {}

  def __setstate__(self, state):
    if not isinstance(state, dict):
      raise TorchScriptError(f'unexpected state for {self.qualname}: {type(state).__name__}')
    self.attrs = dict(state)


class _StorageType:
  """Stands in for ``torch.FloatStorage`` and friends: only its dtype matters."""

  def __init__(self, name: str):
    self.name = name
    self.dtype = np.dtype(_STORAGE_DTYPES[name])


def _module_class(qualname: str):
  """A class whose instances are :class:`_Module` placeholders named ``qualname``."""

  def make(*args):
    if args:
      raise TorchScriptError(f'{qualname}: constructor arguments are not supported')
    return _Module(qualname)

  return type(qualname.rsplit('.', 1)[-1], (), {'__new__': lambda cls, *a: make(*a)})


def _rebuild_tensor(storage, offset, size, stride, *_unused):
  """``torch._utils._rebuild_tensor_v2`` for numpy: a strided view copied to a plain array."""
  size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
  if not size:
    return storage[offset:offset + 1].reshape(()).copy()
  needed = offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1
  if min(size) > 0 and needed > storage.size:
    raise TorchScriptError(f'a tensor of size {size} overruns its storage ({storage.size} items)')
  item = storage.dtype.itemsize
  view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size,
                                         strides=tuple(s * item for s in stride))
  return np.ascontiguousarray(view)


class _Unpickler(pickle.Unpickler):
  """Unpickler that resolves only the globals a module's weights need."""

  def __init__(self, data: bytes, archive: zipfile.ZipFile, root: str):
    super().__init__(io.BytesIO(data))
    self._archive, self._root = archive, root
    self._storages: Dict[str, np.ndarray] = {}

  def find_class(self, module, name):
    if module == 'torch._utils' and name in ('_rebuild_tensor_v2', '_rebuild_tensor'):
      return _rebuild_tensor
    if module == 'torch' and name in _STORAGE_DTYPES:
      return _StorageType(name)
    if module == 'torch.jit._pickle' and name in _TYPED_LISTS:
      return list  # typed list attributes (e.g. a conv's padding [3, 0]) are plain lists
    if module == 'collections' and name == 'OrderedDict':
      return collections.OrderedDict
    if module.startswith('__torch__.') or module == '__torch__':
      return _module_class(f'{module}.{name}')
    raise pickle.UnpicklingError(f'global {module}.{name} is not allowed in a weight file')

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == 'storage'
            and isinstance(pid[1], _StorageType)):
      raise pickle.UnpicklingError(f'unsupported persistent id {pid!r:.80}')
    _, stype, key, _device, numel = pid
    if key not in self._storages:
      try:
        raw = self._archive.read(f'{self._root}/data/{key}')
      except KeyError as e:
        raise TorchScriptError(f'storage data/{key} is missing from the archive') from e
      arr = np.frombuffer(raw, dtype=stype.dtype.newbyteorder('<'))
      if arr.size < numel:
        raise TorchScriptError(f'storage data/{key} holds {arr.size} items, expected {numel}')
      self._storages[key] = arr.astype(stype.dtype, copy=False)
    return self._storages[key]


def _flatten(obj, prefix: str, out: Dict[str, Any]) -> None:
  if isinstance(obj, _Module):
    if prefix:
      out[f'{prefix}.__class__'] = obj.qualname
    for k, v in obj.attrs.items():
      if k not in _SKIP_ATTRS:
        _flatten(v, f'{prefix}.{k}' if prefix else k, out)
  elif isinstance(obj, (dict, collections.OrderedDict)):
    for k, v in obj.items():
      _flatten(v, f'{prefix}.{k}' if prefix else str(k), out)
  else:
    out[prefix] = obj


def read_module(path: str) -> Dict[str, Any]:
  """``{dotted name: array or attribute}`` of a TorchScript file's module tree.

  Raises :class:`TorchScriptError` (naming ``path``) for a file that is not
  a zip, has no ``data.pkl``, or whose pickle needs anything beyond tensors
  and module placeholders.
  """
  try:
    archive = zipfile.ZipFile(path)
  except (zipfile.BadZipFile, OSError) as e:
    raise TorchScriptError(f'{path}: not a TorchScript file (not a readable zip: {e})') from e
  with archive:
    pkls = [n for n in archive.namelist() if n.endswith('/data.pkl') and n.count('/') == 1]
    if len(pkls) != 1:
      raise TorchScriptError(f'{path}: not a TorchScript file (no single <root>/data.pkl)')
    root = pkls[0].split('/')[0]
    try:
      tree = _Unpickler(archive.read(pkls[0]), archive, root).load()
    except TorchScriptError as e:
      raise TorchScriptError(f'{path}: {e}') from e
    except (pickle.UnpicklingError, EOFError, TypeError, AttributeError, ValueError, KeyError,
            IndexError, zipfile.BadZipFile, zlib.error) as e:
      raise TorchScriptError(f'{path}: cannot read its data.pkl: {e}') from e
  out: Dict[str, Any] = {}
  _flatten(tree, '', out)
  if isinstance(tree, _Module):
    out['__class__'] = tree.qualname
  return out
