"""NVIDIA's feature cluster files (``features_clustered_010.npy``), read and written.

The original's ``encode_features.py`` saves a Python dict ``{label: centres}``
with ``np.save`` (a 0-d object array, i.e. a pickle inside an .npy file), one
``(k, feat_num)`` float array of K-means centres per class that had large
enough instances; its test-time sampler loads it with
``np.load(..., encoding='latin1').item()``. Released feature models
(``label2city_1024p_feat``) ship such a file next to ``latest_net_E.pth``.

Reading a pickle can run arbitrary code, so :func:`load_original_clusters`
never calls ``np.load(allow_pickle=True)``: it parses the .npy header itself
and unpickles with an allow-list that admits only what a dict of numpy arrays
needs (ndarray reconstruction, dtypes, scalars). Anything else is refused with
the name of the class the file asked for.
"""

import io
import os
import pickle
from typing import Dict, Mapping

import numpy as np

from hdgan_jax import features, fileutil

DEFAULT_NAME = 'features_clustered_{:03d}.npy'   # the original's file name for n_clusters

# (module, name) pairs a pickled dict of float arrays may reference. numpy 2
# writes numpy._core.*, numpy 1 (and the original's Python 2 era) numpy.core.*.
_ALLOWED = {
    (mod, name)
    for mod in ('numpy.core.multiarray', 'numpy._core.multiarray')
    for name in ('_reconstruct', 'scalar')
} | {('numpy', 'ndarray'), ('numpy', 'dtype'), ('builtins', 'dict'), ('__builtin__', 'dict'),
     ('copy_reg', '_reconstructor'), ('copyreg', '_reconstructor'), ('builtins', 'object'),
     ('__builtin__', 'object')}


class _SafeUnpickler(pickle.Unpickler):
  """Resolves only the globals a pickled ``{int: ndarray}`` needs."""

  def find_class(self, module, name):
    if (module, name) in _ALLOWED:
      return super().find_class(module, name)
    raise pickle.UnpicklingError(f'refusing to load {module}.{name}: a cluster file holds '
                                 'only a dict of numpy arrays')


def _read_pickled_npy(path: str):
  with open(path, 'rb') as f:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
      shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    else:
      shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    if dtype != np.dtype(object) or shape != ():
      raise ValueError(f'holds a {dtype} array of shape {shape}, not a pickled dict')
    return _SafeUnpickler(io.BytesIO(f.read()), encoding='latin1').load()


def load_original_clusters(path: str, *, feat_num: int) -> Dict[int, features.ClassClusters]:
  """``{class id: ClassClusters}`` from an original ``features_clustered_*.npy``.

  The original file has no instance counts; they are zero here.
  """
  fix = ('Give the features_clustered_*.npy written by the original encode_features.py, '
         'or rebuild clusters with --mode=encode_features.')
  if not os.path.isfile(path):
    raise features.ClusterFileError(f'{path}: no such file. {fix}')
  try:
    obj = _read_pickled_npy(path)
  except (OSError, ValueError, EOFError, pickle.UnpicklingError) as e:
    raise features.ClusterFileError(f'{path}: not an original cluster file ({e}). {fix}') from e
  obj = obj.item() if isinstance(obj, np.ndarray) else obj
  if not isinstance(obj, dict):
    raise features.ClusterFileError(f'{path}: holds a {type(obj).__name__}, not a dict. {fix}')
  out = {}
  for label, centers in obj.items():
    centers = np.asarray(centers, np.float32)
    if centers.size == 0:
      continue  # a class with no qualifying instance
    if centers.ndim != 2 or centers.shape[1] != feat_num:
      raise features.ClusterFileError(
          f'{path}: class {label} has centres of shape {centers.shape}; the model expects '
          f'(k, {feat_num}) (model.feat_num={feat_num}). Set --config.model.feat_num to match.')
    out[int(label)] = features.ClassClusters(centers, np.zeros(len(centers), np.int64))
  return out


def save_original_clusters(path: str, clusters: Mapping[int, features.ClassClusters]) -> None:
  """Writes ``clusters`` as the original's pickled dict, loadable by its test.py."""
  obj = {int(c): np.asarray(v.centers if hasattr(v, 'centers') else v, np.float32)
         for c, v in sorted(clusters.items())}
  arr = np.empty((), dtype=object)
  arr[()] = obj
  with fileutil.atomic_writer(path, suffix='.tmp.npy') as tmp:  # np.save adds .npy otherwise
    np.save(tmp, arr, allow_pickle=True)
