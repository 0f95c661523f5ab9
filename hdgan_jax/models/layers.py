"""Building blocks shared by pix2pixHD's networks, exact to PyTorch's semantics.

Everything is NHWC. Each layer reproduces one PyTorch primitive bit for bit
(up to float rounding) so converted NVIDIA checkpoints give NVIDIA's images:

* :class:`Conv` pads explicitly and symmetrically. ``padding='SAME'`` would pad a
  stride-2 conv as (0, 1) where PyTorch pads (1, 1).
* :class:`ConvTranspose` is ``nn.ConvTranspose2d(k, s=2, padding=p,
  output_padding=op)``: the stored kernel keeps PyTorch's orientation
  (kH, kW, in, out).
* How both run is decided per backend in :mod:`hdgan_jax.models.lowering`:
  plain XLA convs on GPU/TPU, matmul rewrites on CPU (forward and gradients).
* :func:`instance_norm` is ``nn.InstanceNorm2d(affine=False)``: biased variance,
  eps 1e-5, no running statistics.
* :func:`avg_pool_3x3_s2` is ``nn.AvgPool2d(3, 2, 1, count_include_pad=False)``.
"""

import functools
import math
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from hdgan_jax.models import lowering

Dtype = Any

# pix2pixHD's weights_init draws every conv weight from N(0, 0.02).
conv_kernel_init = nn.initializers.normal(stddev=0.02)


def torch_bias_init(fan_in: int):
  """PyTorch's default conv bias init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

  The original only re-initialises weights, so biases keep this default.
  """
  bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


# PyTorch's F.conv2d / F.conv_transpose2d, lowered per backend (see lowering.py).
conv2d = lowering.conv2d
conv_transpose2d = lowering.conv_transpose2d


def reflect_pad(x: jax.Array, p: int) -> jax.Array:
  """``nn.ReflectionPad2d(p)`` on an NHWC tensor."""
  return jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode='reflect')


class Conv(nn.Module):
  """``nn.Conv2d`` with symmetric zero padding ``padding`` on both sides."""
  features: int
  kernel_size: int
  strides: int = 1
  padding: int = 0
  dtype: Dtype = jnp.float32

  def kernel_and_bias(self, cin: int):
    k = self.kernel_size
    kernel = self.param('kernel', conv_kernel_init, (k, k, cin, self.features))
    bias = self.param('bias', torch_bias_init(cin * k * k), (self.features,))
    return kernel.astype(self.dtype), bias.astype(self.dtype)

  @nn.compact
  def __call__(self, x):
    kernel, bias = self.kernel_and_bias(x.shape[-1])
    return conv2d(x.astype(self.dtype), kernel, self.strides, self.padding) + bias


class InputConv(Conv):
  """``nn.ReflectionPad2d(k // 2)`` + ``nn.Conv2d(k)`` on the generator's own input.

  The first ``onehot_nc`` input channels are the one-hot labels and the next
  ``binary_nc`` (0 or 1) the instance edge map, as :func:`inputs.encode_input`
  builds them; that lets the CPU lowering run the conv as a table lookup
  (:mod:`hdgan_jax.models.conv_lookup`), exactly, falling back to the dense conv
  for any input that is not one-hot. Same parameters as :class:`Conv`.
  """
  onehot_nc: int = 0
  binary_nc: int = 0

  @nn.compact
  def __call__(self, x):
    kernel, bias = self.kernel_and_bias(x.shape[-1])
    pad = self.kernel_size // 2
    dense = functools.partial(reflect_conv2d, pad=pad)
    y = lowering.categorical_conv2d(x.astype(self.dtype), kernel, pad, self.onehot_nc,
                                    self.binary_nc, dense)
    return y + bias


class ConditionedConv(Conv):
  """:class:`Conv` on ``concat(cond, x)``, given as two arrays: D's first conv.

  Same parameters as :class:`Conv` on the concatenation. Under the CPU lowering
  it runs as two convs on the kernel's two channel slices: the condition's part
  is the same expression in D's real and fake passes, so XLA computes its
  forward once, and the input gradient G needs is the image's 3 channels wide
  instead of 39 (4 against 82 ms at 256x512 on the 2-core EPYC). With
  ``onehot_nc`` set (the full-resolution D, whose condition is
  :func:`inputs.encode_input`'s layout, like G's input) the condition's part is
  a table lookup and its kernel gradient, once per pass, segment sums
  (:mod:`conv_lookup`, exact; dense for any condition that is not one-hot).
  Other backends run the one conv.
  """
  onehot_nc: int = 0
  binary_nc: int = 0

  @nn.compact
  def __call__(self, x, cond):
    c = cond.shape[-1]
    kernel, bias = self.kernel_and_bias(c + x.shape[-1])
    x, cond = x.astype(self.dtype), cond.astype(self.dtype)
    k, s, p = self.kernel_size, self.strides, self.padding
    n, h, w, _ = x.shape
    flops = lowering._flops(n, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1, kernel.size)
    if lowering.resolve(flops=flops) == 'xla':
      return conv2d(jnp.concatenate([cond, x], axis=-1), kernel, s, p) + bias
    dense = functools.partial(conv2d, stride=s, padding=p)
    cond_part = lowering.categorical_conv2d(cond, kernel[:, :, :c], p, self.onehot_nc,
                                            self.binary_nc, dense, s, 'zero')
    return cond_part + conv2d(x, kernel[:, :, c:], s, p) + bias


def reflect_conv2d(x, kernel, pad: int):
  """``nn.ReflectionPad2d(pad)`` then a stride-1 ``nn.Conv2d`` without bias (G's 7x7 convs)."""
  return conv2d(reflect_pad(x, pad), kernel)


class ConvTranspose(nn.Module):
  """``nn.ConvTranspose2d(k, stride 2, padding, output_padding)`` exactly.

  The kernel is stored as (kH, kW, in, out), PyTorch's (in, out, kH, kW)
  moved to the back, so converting a checkpoint is a pure transpose.
  """
  features: int
  kernel_size: int = 3
  strides: int = 2
  padding: int = 1
  output_padding: int = 1
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    k, cin = self.kernel_size, x.shape[-1]
    kernel = self.param('kernel', conv_kernel_init, (k, k, cin, self.features))
    # PyTorch computes a transposed conv's fan_in from weight.size(1) = out.
    bias = self.param('bias', torch_bias_init(self.features * k * k),
                      (self.features,))
    y = conv_transpose2d(x.astype(self.dtype), kernel.astype(self.dtype), self.strides,
                         self.padding, self.output_padding)
    return y + bias.astype(self.dtype)


def instance_norm(x: jax.Array, eps: float = 1e-5) -> jax.Array:
  """``nn.InstanceNorm2d(affine=False)``: per sample and channel over H, W.

  Statistics are taken in float32 even under a low-precision compute dtype.
  """
  xf = x.astype(jnp.float32)
  mean = jnp.mean(xf, axis=(1, 2), keepdims=True)
  var = jnp.mean(jnp.square(xf - mean), axis=(1, 2), keepdims=True)
  return ((xf - mean) * jax.lax.rsqrt(var + eps)).astype(x.dtype)


class Norm(nn.Module):
  """The ``--norm`` option: 'instance' (no parameters) or 'batch'.

  'batch' is ``nn.BatchNorm2d(affine=True)`` with the original's init
  (scale ~ N(1, 0.02), bias 0) and PyTorch's momentum 0.1; running statistics
  live in the ``batch_stats`` collection and are used when ``train`` is False.
  """
  kind: str = 'instance'
  train: bool = False

  @nn.compact
  def __call__(self, x):
    if self.kind == 'instance':
      return instance_norm(x)
    if self.kind == 'batch':
      scale_init = lambda k, s, d=jnp.float32: 1.0 + 0.02 * jax.random.normal(k, s, d)
      return nn.BatchNorm(use_running_average=not self.train, momentum=0.9,
                          epsilon=1e-5, scale_init=scale_init,
                          name='bn')(x)
    raise ValueError(f"model.norm={self.kind!r} is not known; use 'instance' or 'batch'")


def avg_pool_3x3_s2(x: jax.Array) -> jax.Array:
  """``nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)``.

  The window sum is divided by the number of real pixels under the window,
  so border outputs are not darkened by the zero padding.
  """
  pad = ((0, 0), (1, 1), (1, 1), (0, 0))
  pool = functools.partial(jax.lax.reduce_window, init_value=0.0,
                           computation=jax.lax.add,
                           window_dimensions=(1, 3, 3, 1),
                           window_strides=(1, 2, 2, 1), padding=pad)
  total = pool(x.astype(jnp.float32))
  # Real pixels per window, from the static shape (a reduce_window over ones
  # would be constant-folded by XLA at compile time, seconds for large maps).
  def counts(n):
    out = (n - 1) // 2 + 1
    return np.array([min(2 * i + 1, n - 1) - max(2 * i - 1, 0) + 1 for i in range(out)], np.float32)
  count = np.outer(counts(x.shape[1]), counts(x.shape[2]))[None, :, :, None]
  return (total / count).astype(x.dtype)


class ResnetBlock(nn.Module):
  """pix2pixHD's residual block: x + [pad, conv3, norm, relu, pad, conv3, norm](x)."""
  dim: int
  norm: str = 'instance'
  train: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    h = Conv(self.dim, 3, dtype=self.dtype, name='conv_0')(reflect_pad(x, 1))
    h = nn.relu(Norm(self.norm, self.train, name='norm_0')(h))
    h = Conv(self.dim, 3, dtype=self.dtype, name='conv_1')(reflect_pad(h, 1))
    h = Norm(self.norm, self.train, name='norm_1')(h)
    return x + h


def resolve_dtype(name: Optional[str]):
  """Maps the config's dtype string to a jnp dtype, with a clear error."""
  table = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16, 'float16': jnp.float16}
  if name is None:
    return jnp.float32
  if name not in table:
    raise ValueError(f'model.dtype={name!r} is not supported; use one of {sorted(table)}')
  return table[name]
