"""VGG19 weights for the perceptual loss: torchvision ``.pth`` or Keras ``.h5`` -> ``.npz``.

No package ships VGG19 and nothing downloads at run time, so users bring one of
the two public files; this converter checks it is the file it claims to be
(SHA-256 / MD5 of the official releases), renames the convs to conv{b}_{i}
(HWIO) and records which preprocessing the weights expect ('torch' or
'caffe'), so the loss feeds them correctly.
"""

import hashlib
import os
from typing import Dict, Tuple

import h5py
import numpy as np

from hdgan_jax.convert import io
from hdgan_jax.models import vgg

# torchvision names its files by the SHA-256 prefix; Keras publishes the MD5.
TORCHVISION_SHA256_PREFIX = 'dcbb9e9d'      # vgg19-dcbb9e9d.pth
KERAS_NOTOP_MD5 = '253f8cb515780f3b799900260a226db6'  # vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5


def file_digests(path: str) -> Tuple[str, str]:
  sha, md5 = hashlib.sha256(), hashlib.md5()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      sha.update(chunk)
      md5.update(chunk)
  return sha.hexdigest(), md5.hexdigest()


def from_torchvision(sd: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
  out = {}
  for name, idx in vgg.weight_names_torchvision('vgg19'):
    key = f'features.{idx}.weight'
    if key not in sd:
      raise io.WeightFileError(f'not a torchvision VGG19 state_dict: {key} is missing')
    out[f'{name}/kernel'] = np.asarray(sd[key], np.float32).transpose(2, 3, 1, 0)
    out[f'{name}/bias'] = np.asarray(sd[f'features.{idx}.bias'], np.float32)
  return out


def from_keras_h5(path: str) -> Dict[str, np.ndarray]:
  """Reads a Keras VGG19 .h5; an unreadable file raises WeightFileError naming it."""
  try:
    return _read_keras_h5(path)
  except (OSError, KeyError, ValueError) as e:
    if isinstance(e, io.WeightFileError):
      raise
    raise io.WeightFileError(f'{path}: not a readable Keras HDF5 weight file '
                             f'({type(e).__name__}: {e}); is the download complete?') from e


def _read_keras_h5(path: str) -> Dict[str, np.ndarray]:
  out = {}
  with h5py.File(path, 'r') as f:
    root = f['model_weights'] if 'model_weights' in f else f
    for name in vgg.conv_names('vgg19'):
      b, i = name[4:].split('_')
      group = f'block{b}_conv{i}'
      if group not in root:
        raise io.WeightFileError(f'{path}: no layer {group}; not a Keras VGG19 weight file')
      arrays = {}
      root[group].visit(lambda k, g=root[group], a=arrays: a.__setitem__(k, g[k][()])
                        if hasattr(g[k], 'shape') else None)
      kernel = [v for k, v in arrays.items() if v.ndim == 4]
      bias = [v for k, v in arrays.items() if v.ndim == 1]
      if len(kernel) != 1 or len(bias) != 1:
        raise io.WeightFileError(f'{path}: layer {group} does not hold one kernel and one bias')
      out[f'{name}/kernel'] = np.asarray(kernel[0], np.float32)
      out[f'{name}/bias'] = np.asarray(bias[0], np.float32)
  return out


def convert_vgg19(src: str, out: str, *, allow_unverified: bool = False) -> str:
  """Converts ``src`` to ``out`` (.npz); returns the source's SHA-256."""
  if not os.path.isfile(src):
    raise io.WeightFileError(f'{src}: no such file. {vgg.VGG19_HELP}')
  sha, md5 = file_digests(src)
  ext = os.path.splitext(src)[1].lower()
  official = sha.startswith(TORCHVISION_SHA256_PREFIX) or md5 == KERAS_NOTOP_MD5
  if not official and not allow_unverified:
    raise io.WeightFileError(
        f'{src}: SHA-256 {sha} is neither torchvision\'s vgg19-dcbb9e9d.pth nor Keras\' '
        'VGG19 notop file (a truncated or different download?). Re-download it, or pass '
        '--allow_unverified to convert it anyway (e.g. your own VGG19).')
  if ext in ('.h5', '.hdf5', '.keras'):
    weights, source = from_keras_h5(src), 'caffe'
  else:
    weights, source = from_torchvision(io.load_state_dict(src)), 'torch'
  weights['meta/source'] = np.array(source)
  weights['meta/sha256'] = np.array(sha)
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  io.save_state_dict(weights, out)
  return sha
