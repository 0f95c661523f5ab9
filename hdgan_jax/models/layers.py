"""Building blocks shared by pix2pixHD's networks, exact to PyTorch's semantics.

Everything is NHWC. Each layer reproduces one PyTorch primitive bit for bit
(up to float rounding) so converted NVIDIA checkpoints give NVIDIA's images:

* :class:`Conv` pads explicitly and symmetrically. ``padding='SAME'`` would pad a
  stride-2 conv as (0, 1) where PyTorch pads (1, 1).
* :class:`ConvTranspose` is ``nn.ConvTranspose2d(k, s=2, padding=p,
  output_padding=op)``: the stored kernel keeps PyTorch's orientation
  (kH, kW, in, out); it runs as one stride-1 conv producing the s*s output
  phases, then depth-to-space (:func:`conv_transpose2d`).
* Strided convs run as stride-1 convs of the space-to-depth input
  (:func:`conv2d`): the same numbers, but no dilated conv reaches XLA, whose
  CPU backend runs those (the gradients of strided convs) very slowly.
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


def _conv_valid(x, w):
  return jax.lax.conv_general_dilated(x, w, (1, 1), 'VALID',
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def _pad_or_crop(x, axis: int, lo: int, hi: int):
  """Zero-pads (or, for a negative ``hi``, crops) one spatial axis."""
  if hi < 0:
    x = jax.lax.slice_in_dim(x, 0, x.shape[axis] + hi, axis=axis)
    hi = 0
  widths = [(0, 0)] * x.ndim
  widths[axis] = (lo, hi)
  return jnp.pad(x, widths)


def conv2d(x, kernel, stride: int = 1, padding: int = 0):
  """``F.conv2d`` (symmetric zero padding) with every XLA conv stride 1 and undilated.

  A stride-s conv is rewritten exactly as a stride-1 conv of the space-to-depth
  input (s*s*C channels) with a ceil(k/s)-tap kernel. XLA's CPU backend runs
  the weight gradients of strided convs (dilated convs) up to ~30x slower than
  plain ones (the discriminator's 4x4 stride-2 convs: 6.8 s -> 0.24 s at
  256x512); after the rewrite forward and backward are plain convs.
  """
  k = kernel.shape[0]
  if stride == 1:  # explicit padding: XLA:CPU's weight gradient of a padded conv is slow
    return _conv_valid(jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0))), kernel)
  if k % stride:
    # Kernels the stride does not divide (G's 3x3 stride 2) would need zero taps in
    # the rewritten kernel; on XLA:CPU that variant's weight gradients drifted up to
    # 1% from PyTorch's inside the fused train step, so they stay plain strided convs.
    return jax.lax.conv_general_dilated(x, kernel, (stride, stride), ((padding, padding),) * 2,
                                        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  s = stride
  kq = -(-k // s)
  n, h, w, c = x.shape
  out_h, out_w = (h + 2 * padding - k) // s + 1, (w + 2 * padding - k) // s + 1
  ph, pw = s * (out_h + kq - 1), s * (out_w + kq - 1)
  x = _pad_or_crop(x, 1, padding, ph - h - padding)
  x = _pad_or_crop(x, 2, padding, pw - w - padding)
  x = x.reshape(n, ph // s, s, pw // s, s, c).transpose(0, 1, 3, 2, 4, 5)
  x = x.reshape(n, ph // s, pw // s, s * s * c)
  kern = jnp.pad(kernel, ((0, kq * s - k), (0, kq * s - k), (0, 0), (0, 0)))
  kern = kern.reshape(kq, s, kq, s, c, -1).transpose(0, 2, 1, 3, 4, 5).reshape(kq, kq, s * s * c, -1)
  return _conv_valid(x, kern)


def _phase_taps(k: int, s: int, lo: int):
  """For output phase r: {input offset d: kernel tap t} of a transposed conv."""
  taps = [{} for _ in range(s)]
  for r in range(s):
    for t in range(k):
      if (r + t - lo) % s == 0:
        taps[r][(r + t - lo) // s] = t
  return taps


def conv_transpose2d(x, kernel, stride: int, padding: int, output_padding: int):
  """``F.conv_transpose2d`` as one stride-1 conv over s*s output phases + depth-to-space.

  ``kernel`` is (kH, kW, in, out) in PyTorch's orientation (not flipped). Exact
  for any k, stride, padding and output_padding; no input dilation reaches XLA.
  """
  k, s = kernel.shape[0], stride
  lo = k - 1 - padding
  n, h, w, c = x.shape
  out_h, out_w = (h - 1) * s - 2 * padding + k + output_padding, (w - 1) * s - 2 * padding + k + output_padding
  taps = _phase_taps(k, s, lo)
  ds = [d for phase in taps for d in phase]
  dmin, dmax = min(ds), max(ds)
  kd = dmax - dmin + 1
  flipped = kernel[::-1, ::-1]
  zero = jnp.zeros_like(flipped[0, 0])
  rows = []
  for a in range(kd):
    cols = []
    for b in range(kd):
      phases = [flipped[taps[r][a + dmin], taps[q][b + dmin]]
                if (a + dmin) in taps[r] and (b + dmin) in taps[q] else zero
                for r in range(s) for q in range(s)]
      cols.append(jnp.concatenate(phases, axis=-1))
    rows.append(jnp.stack(cols))
  kern = jnp.stack(rows)  # (kd, kd, in, s*s*out), phases (r, q) major
  qh, qw = -(-out_h // s), -(-out_w // s)
  x = _pad_or_crop(x, 1, max(-dmin, 0), qh - 1 + dmax - (h - 1))
  x = _pad_or_crop(x, 2, max(-dmin, 0), qw - 1 + dmax - (w - 1))
  if dmin > 0:
    x = x[:, dmin:, dmin:]
  y = _conv_valid(x, kern)[:, :qh, :qw]
  o = kernel.shape[-1]
  y = y.reshape(n, qh, qw, s, s, o).transpose(0, 1, 3, 2, 4, 5).reshape(n, qh * s, qw * s, o)
  return y[:, :out_h, :out_w]


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

  @nn.compact
  def __call__(self, x):
    k, cin = self.kernel_size, x.shape[-1]
    kernel = self.param('kernel', conv_kernel_init, (k, k, cin, self.features))
    bias = self.param('bias', torch_bias_init(cin * k * k), (self.features,))
    y = conv2d(x.astype(self.dtype), kernel.astype(self.dtype), self.strides, self.padding)
    return y + bias.astype(self.dtype)


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
