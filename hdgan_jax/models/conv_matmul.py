"""Convolutions as large matrix multiplications: the CPU lowerings.

XLA:CPU runs ``lax.conv_general_dilated`` at a fraction of its own matmul rate
(about 64 against 208 GFLOP/s on a 2-core AVX-512 EPYC), and narrow-output or
few-input-channel convs far below that. Every function here computes the same
numbers as a VALID conv (NHWC input, HWIO kernel) through ``dot_general`` on
big operands instead:

* :func:`im2col`: the window's taps concatenated along channels, one matmul with
  K = k*k*C; banded over output rows (:mod:`conv_bands`) so the patch matrix
  stays under ``PATCH_BYTES``. Used for D's 4x4 convs on wide channels and 3x3
  convs on 512+ channels at maps too small for Winograd; G's 7x7
  convs on few channels use :mod:`conv_rows`, which builds no full patch.
* :func:`winograd` (:mod:`conv_winograd`): F(2x2, 3x3) for stride-1 3x3 convs on 64+ channels (128+ in
  the VGG loss network; their input gradients too from 256 tiles): 16 matmuls of
  K = C on 4x4 input tiles, 2.25x fewer multiplies than direct; F(2x2, 4x4) for
  D's stride-1 4x4 convs on 256+ channels: 25 matmuls, 2.56x fewer (their kernel
  gradient too from 512 tiles: :func:`conv_winograd.kernel_grad`).
* :func:`outtaps`: for few output channels (D's last conv to 1): one matmul
  to k*k*O channels, then k*k shifted adds.

Strided and transposed convs are :mod:`conv_strided`'s; the transposed convs'
kernel gradients, which XLA:CPU runs as slow rhs-dilated convs (0.6-0.75 s
against 0.04-0.14 s), are :func:`kernel_grad` here on small maps
(:func:`conv_strided.transposed_kernel_grad`). Which lowering runs for
which stride-1 shape is :func:`pick_s1`'s table, from ``benchmarks/conv_layers.py``.

:func:`conv_s1` wraps the stride-1 lowerings in a custom VJP whose input
gradient is one matmul to k*k*C channels followed by shifted adds
(:func:`input_grad`; for few output channels, a stride-1 conv of the padded
output gradient with the flipped kernel) and whose kernel gradient is one
correlation matmul (:func:`kernel_grad`); autodiff through the slicing would
build k*k full-size padded copies. Which lowering runs for which shape is
decided in :mod:`hdgan_jax.models.lowering`.
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax

from hdgan_jax.models import conv_bands as bands, conv_defer, conv_rows, conv_winograd
from hdgan_jax.models.conv_winograd import winograd

# Forward Winograd from 64 channels (faster than XLA's conv from 32; the local enhancers'
# residual convs have 64). The VGG loss network asks for 128 (lowering.winograd_from): as
# accurate as XLA's conv (max error 1.7e-6 against 4.2e-6 of the mean |y| at 64 channels),
# but under it VGG19's conv1_2 moves the three-iteration training parity against the
# original to 2.9e-4 relative at iteration 2, over its 2e-4 tolerance. Adam's first steps
# are nearly lr * sign(g), so any change of rounding in the perceptual loss's gradient
# flips whole steps of its near-zero entries; with conv1_2 on XLA's conv it stays at 3e-5.
WINOGRAD_MIN_CHANNELS = 64
WINOGRAD_MIN_CHANNELS_LOSS_NET = 128
WINOGRAD_MIN_TILES = 64  # 2x2 output tiles per conv (batch included)
WINOGRAD_MIN_GRAD_TILES = 256  # input gradient; below it no faster inside a train step, 100+ MB more temp
IM2COL_KERNELS = (4,)  # stride-1 kernel sizes that run as (banded) im2col (D's 4x4)
# D's stride-1 4x4 convs (256 -> 512 channels) as Winograd F(2x2, 4x4) from this many
# channels and tiles, forward; their input gradient from WINOGRAD4_MIN_GRAD_TILES. At
# 36x68x256 -> 512 (the 256x512 model's full-scale D, 561 tiles): forward 37 against
# im2col's 92 ms, input gradient 46 against 57; at 153 tiles, forward 12 against 14 but
# input gradient 29 against 13. Its kernel gradient is Winograd too from
# WINOGRAD4_MIN_KGRAD_TILES (conv_winograd.kernel_grad): 52 -> 35 ms at 561 tiles, a tie
# at 153 (11.3 against 11.1 ms; fastest of 11 alternating calls, 2-core Xeon), with a
# larger rounding error (5.9e-5 of the mean |dw| at worst, against 3.1e-6), so the
# per-tap matmuls below it.
WINOGRAD4_MIN_CHANNELS = 256
WINOGRAD4_MIN_TILES = 128
WINOGRAD4_MIN_GRAD_TILES = 256
WINOGRAD4_MIN_KGRAD_TILES = 512
# 3x3 convs on this many channels and under IM2COL3_MAX_TILES tiles run as im2col: one
# matmul with K = 9C, both gradients as matmuls. Winograd's 16 matmuls are then too small:
# at 16x32x512 (128 tiles) the forward took 15 against 19 ms and the input gradient 12
# against 20 (Winograd) or 18 (XLA); at 512 tiles Winograd wins (39 against 82 ms).
IM2COL3_MIN_CHANNELS = 512
IM2COL3_MAX_TILES = 256
ROWS_KERNEL = 7  # G's 7x7 convs: conv_rows' lowerings
OUTTAPS_MAX_OUT = 4  # G's last conv to RGB, D's last conv to 1 channel


def _xla(x, w, s: int, lhs_dilation=(1, 1), padding='VALID'):
  return lax.conv_general_dilated(x, w, (s, s), padding, lhs_dilation=lhs_dilation,
                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def out_size(x_shape, k: int, s: int):
  return (x_shape[1] - k) // s + 1, (x_shape[2] - k) // s + 1


def space_to_depth(x, k: int, s: int, oh: int, ow: int):
  """A stride-``s`` k x k conv's input as unit-stride taps.

  Returns x reshaped to (N, oh + (k-1)//s, ow + (k-1)//s, s*s*C) and, per tap
  (i, j), its (row, col, first channel) there: every window becomes a contiguous
  slice (strided slices copy several times slower on CPU). Exact: only the taps'
  own channels are read, no zero taps are multiplied.
  """
  if s == 1:
    return x, [(i, j, 0) for i in range(k) for j in range(k)]
  n, _, _, c = x.shape
  rows, cols = oh + (k - 1) // s, ow + (k - 1) // s
  x = bands.pad_rows(x[:, :s * rows, :s * cols], s * rows)
  x = jnp.pad(x, ((0, 0), (0, 0), (0, s * cols - x.shape[2]), (0, 0)))
  x = x.reshape(n, rows, s, cols, s, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, rows, cols, s * s * c)
  return x, [(i // s, j // s, ((i % s) * s + j % s) * c) for i in range(k) for j in range(k)]


def _tap(xb, tap, rows: int, ow: int, c: int):
  i, j, ch = tap
  return lax.slice(xb, (0, i, j, ch), (xb.shape[0], i + rows, j + ow, ch + c))


def tap_matmul(x, taps, wm, oh: int, ow: int, c: int = 0):
  """sum over taps t of window(x, taps[t]) @ wm[t*c:(t+1)*c], as banded matmuls.

  ``taps`` are unit-stride (row, col, first channel) starts in ``x``, each
  reading ``c`` channels (default all); ``wm`` stacks the taps' (c, O) matrices
  along K. Output (N, oh, ow, O).
  """
  n, c = x.shape[0], c or x.shape[-1]
  reach = max(t[0] for t in taps)
  per = bands.rows_per_band(oh, n * ow * len(taps) * c * x.dtype.itemsize)
  x = bands.pad_rows(x, -(-oh // per) * per + reach)

  def band(r0):
    xb = lax.dynamic_slice_in_dim(x, r0, per + reach, axis=1)
    cols = [_tap(xb, t, per, ow, c) for t in taps]
    return bands.dot(jnp.concatenate(cols, axis=-1) if len(cols) > 1 else cols[0], wm)
  return bands.join_bands(bands.map_bands(band, oh, per), oh)


def im2col(x, w, s: int = 1):
  """VALID conv of ``x`` (N,H,W,C) with ``w`` (k,k,C,O), stride ``s``, as banded matmuls."""
  k, _, c, o = w.shape
  oh, ow = out_size(x.shape, k, s)
  x, taps = space_to_depth(x, k, s, oh, ow)
  return tap_matmul(x, taps, w.reshape(k * k * c, o), oh, ow, c)


def outtaps(x, w):
  """Stride-1 VALID conv for few output channels: x @ [all taps] then shifted adds."""
  k, _, c, o = w.shape
  n, h, wd, _ = x.shape
  oh, ow = h - k + 1, wd - k + 1
  wm = w.transpose(2, 0, 1, 3).reshape(c, k * k * o)
  per = bands.rows_per_band(oh, n * wd * k * k * o * 4)
  x = bands.pad_rows(x, -(-oh // per) * per + k - 1)

  def band(r0):
    z = bands.dot(lax.dynamic_slice_in_dim(x, r0, per + k - 1, axis=1), wm).astype(jnp.float32)
    y = 0.0
    for i in range(k):
      for j in range(k):
        t = (i * k + j) * o
        y = y + lax.slice(z, (0, i, j, t), (n, i + per, j + ow, t + o))
    return y.astype(x.dtype)
  return bands.join_bands(bands.map_bands(band, oh, per), oh)


def kernel_grad(x, dy, k: int, s: int = 1):
  """dL/dw of a VALID stride-``s`` conv: dw[i, j] = window(x, i, j)^T @ dy, as matmuls.

  Few output channels: x^T against the stacked shifted copies of dy (K = pixels,
  k*k*O columns). Otherwise one matmul per tap, x's shifted window against dy,
  with no patch matrix: the forward's im2col built the same windows, and from
  ``x`` alone XLA would merge them with it and keep the patches live from the
  forward pass to here (:mod:`conv_defer`). Banded, summed over bands.
  """
  n, oh, ow, o = dy.shape
  c, wd = x.shape[-1], x.shape[2]
  contract = lambda a, b: lax.dot_general(a, b, (((0, 1, 2), (0, 1, 2)), ((), ())),
                                          preferred_element_type=jnp.float32)
  if s == 1 and o <= OUTTAPS_MAX_OUT:
    per = bands.rows_per_band(oh, n * wd * k * k * o * 4)
    rows = -(-oh // per) * per
    dy = bands.pad_rows(dy, rows)
    x = bands.pad_rows(x, rows + k - 1)
    hb = per + k - 1

    def band(r0):  # this band's dy rows only, so no pair is counted twice
      d = jnp.pad(lax.dynamic_slice_in_dim(dy, r0, per, axis=1),
                  ((0, 0), (k - 1, k - 1), (k - 1, wd - ow), (0, 0)))
      # Column (i, j) holds dy shifted by (i, j): x[p] pairs with dy[p - (i, j)].
      shifted = jnp.concatenate([lax.slice(d, (0, k - 1 - i, k - 1 - j, 0),
                                           (n, k - 1 - i + hb, k - 1 - j + wd, o))
                                 for i in range(k) for j in range(k)], axis=-1)
      return contract(lax.dynamic_slice_in_dim(x, r0, hb, axis=1), shifted)  # (C, k*k*O)
    dw = jnp.sum(bands.map_bands(band, oh, per), axis=0)
    return dw.reshape(c, k, k, o).transpose(1, 2, 0, 3)
  x, taps = space_to_depth(x, k, s, oh, ow)
  per = bands.rows_per_band(oh, n * ow * k * k * c * x.dtype.itemsize)
  rows = -(-oh // per) * per
  reach = max(t[0] for t in taps)
  dy = bands.pad_rows(dy, rows)
  x = bands.pad_rows(x, rows + reach)

  def band(r0):
    dyb = lax.dynamic_slice_in_dim(dy, r0, per, axis=1)
    xb = conv_defer.after(lax.dynamic_slice_in_dim(x, r0, per + reach, axis=1), dyb)
    return jnp.concatenate([contract(_tap(xb, t, per, ow, c), dyb) for t in taps], axis=0)
  return jnp.sum(bands.map_bands(band, oh, per), axis=0).reshape(k, k, c, o)


def input_grad(dy, w, x_shape):
  """dL/dx of a stride-1 VALID conv: z = dy @ w^T (k*k*C channels), then k*k shifted adds.

  The same numbers as the conv of the padded ``dy`` with the flipped, channel-
  swapped kernel, without that kernel: transposing a (3, 3, 1024, 1024) kernel's
  channel axes alone took 37 ms of the 51 ms such an input gradient took at
  8x16 (``dot_general`` contracts ``w``'s output axis in place), and ``z`` is
  computed at ``dy``'s pixels only, not over the padded map. Banded over ``x``'s
  rows when ``z`` would pass ``PATCH_BYTES`` (each band recomputes k - 1 rows).
  """
  k, _, c, o = w.shape
  n, oh, ow, _ = dy.shape
  h = x_shape[1]
  wm = w.reshape(k * k * c, o)
  z_of = lambda d: lax.dot_general(d, wm, (((3,), (1,)), ((), ())),
                                   preferred_element_type=jnp.float32)

  def col2im(z, rows: int, top: int, pad_rows: bool):
    """Row y of the result sums z's row y + top - i at tap (i, j), shifted j columns."""
    out = None
    for i in range(k):
      for j in range(k):
        t = (i * k + j) * c
        if pad_rows:
          term = jnp.pad(z[..., t:t + c], ((0, 0), (i, k - 1 - i), (j, k - 1 - j), (0, 0)))
        else:
          term = jnp.pad(lax.slice_in_dim(z[..., t:t + c], top - i, top - i + rows, axis=1),
                         ((0, 0), (0, 0), (j, k - 1 - j), (0, 0)))
        out = term if out is None else out + term
    return out.astype(dy.dtype)

  per = bands.rows_per_band(h, n * ow * k * k * c * 4)
  if per >= h:
    return col2im(z_of(dy), h, 0, pad_rows=True)
  nb = -(-h // per)
  dyp = jnp.pad(dy, ((0, 0), (k - 1, nb * per - oh), (0, 0), (0, 0)))  # dy row r at r + k - 1

  def band(r0):
    z = z_of(lax.dynamic_slice_in_dim(dyp, r0, per + k - 1, axis=1))
    return col2im(z, per, k - 1, pad_rows=False)
  return bands.join_bands(bands.map_bands(band, h, per), h)


def _tiles(x_shape, k: int) -> int:
  """Winograd's 2x2 output tiles of a VALID k x k conv of ``x_shape`` (batch included)."""
  oh, ow = x_shape[1] - k + 1, x_shape[2] - k + 1
  return x_shape[0] * -(-oh // 2) * -(-ow // 2)


def pick_s1(x_shape, w_shape, dtype, winograd_min=None) -> str:
  """The stride-1 forward for this shape: 'planar' | 'rowcol' | 'outtaps' | 'winograd' | 'im2col' | 'xla'.

  From per-layer timings on the 2-core EPYC (``benchmarks/conv_layers.py``):
  G's 7x7 convs as :mod:`conv_rows`: the last one to RGB as 'planar' outtaps
  (59 against XLA's 550 ms at 256x512), the first one as 'rowcol' (415 against
  446 ms there; im2col was slower than both); D's stride-1 4x4
  convs as im2col (22-37x XLA's with their gradients), or as Winograd on 256+
  channels and 128+ tiles (WINOGRAD4_*); every stride-1 3x3 conv
  on ``winograd_min`` (default :data:`WINOGRAD_MIN_CHANNELS`) or more channels
  and 64+ tiles as Winograd (G1's residual conv at 32x64x1024: 143 against
  614 ms; equal at 32 tiles), except that 3x3 convs on 512+ channels under 256
  tiles run as im2col with matmul gradients (G1's residual conv at 8x16x1024,
  the 128x256 model's bottleneck: 98 against 128 ms forward + both gradients,
  the forward 15 against 37 ms; the 128x256 VGG19 train step 3.27 -> 2.81 s;
  at 16x32x512, the 256x512 model's, the same time in the step and 220 MiB
  less XLA temp than Winograd with XLA's gradients).
  """
  k, _, c, o = w_shape
  winograd_min = winograd_min or WINOGRAD_MIN_CHANNELS
  if k == ROWS_KERNEL:
    return 'planar' if o <= OUTTAPS_MAX_OUT else 'rowcol'
  if o <= OUTTAPS_MAX_OUT and k > 1:
    return 'outtaps'
  if k == 3 and min(c, o) >= IM2COL3_MIN_CHANNELS and _tiles(x_shape, k) < IM2COL3_MAX_TILES:
    return 'im2col'  # too few tiles for Winograd's 16 matmuls to beat one
  if k == 3 and _tiles(x_shape, k) >= WINOGRAD_MIN_TILES:
    if dtype == jnp.float32 and min(c, o) >= winograd_min:
      return 'winograd'
  if k == 4 and dtype == jnp.float32 and min(c, o) >= WINOGRAD4_MIN_CHANNELS:
    if _tiles(x_shape, k) >= WINOGRAD4_MIN_TILES:
      return 'winograd'
  return 'im2col' if k in IM2COL_KERNELS else 'xla'


def _grads(x_shape, w_shape, dtype, winograd_min=None) -> str:
  """How the backward pass runs: 'xla' | 'matmul' | 'winograd' | 'winograd_matmul'.

  Measured with gradients: the 7x7 convs' matmul kernel gradients lose to
  XLA's (1.9 s against 0.9 s for G's first conv at 256x512 as an im2col
  correlation; 1.7 s against 0.6 s on one core from column patches), so they
  keep XLA's; D's 4x4 and the small-map 3x3 convs (im2col) and outtaps run both
  gradients as matmuls (:func:`input_grad`, :func:`kernel_grad`; the 128x256
  VGG19 train step 2.84 -> 2.32 s when the input gradient stopped building the
  flipped kernel). The Winograd-forward convs under 256 tiles measured the same
  with these matmul gradients as with XLA's (55 ms at 16x32x512), so keep XLA's.
  'winograd': the input gradient as a Winograd conv where the forward is one and
  the conv has 256+ tiles (at G1's 16x32x512 in the 256x512 train step it gained
  nothing and took 100 MB more XLA temp), and XLA's kernel gradient, which was
  as fast as :func:`kernel_grad` at 1024 channels in a scratch comparison.
  'winograd_matmul': D's 4x4 Winograd convs on WINOGRAD4_MIN_GRAD_TILES or more:
  a Winograd input gradient and :func:`kernel_grad` (below, both as matmuls).
  """
  kind = pick_s1(x_shape, w_shape, dtype, winograd_min)
  k = w_shape[0]
  if k == 7 or kind == 'xla':
    return 'xla'
  if kind == 'winograd' and k == 4:
    return 'winograd_matmul' if _tiles(x_shape, k) >= WINOGRAD4_MIN_GRAD_TILES else 'matmul'
  if kind == 'winograd':
    return 'winograd' if _tiles(x_shape, k) >= WINOGRAD_MIN_GRAD_TILES else 'xla'
  return 'matmul'


def _forward_s1(x, w, winograd_min=None):
  kind = pick_s1(x.shape, w.shape, x.dtype, winograd_min)
  if kind == 'planar':
    return conv_rows.planar_outtaps(x, w)
  if kind == 'rowcol':
    return conv_rows.rowcol(x, w)
  if kind == 'outtaps':
    return outtaps(x, w)
  if kind == 'winograd':
    return winograd(x, w)
  if kind == 'im2col':
    return im2col(x, w)
  return _xla(x, w, 1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_s1(x, w, winograd_min=None):
  """Stride-1 VALID conv through matmuls, forward and both gradients.

  ``winograd_min``: Winograd's channel threshold (None: the module's), fixed when
  the forward is traced so the backward pass makes the same choice.
  """
  return _forward_s1(x, w, winograd_min)


def _conv_s1_fwd(x, w, winograd_min):
  return _forward_s1(x, w, winograd_min), (x, w)


def _conv_s1_bwd(winograd_min, res, dy):
  x, w = res
  k = w.shape[0]
  dy = dy.astype(x.dtype)
  kind = _grads(x.shape, w.shape, x.dtype, winograd_min)
  if kind == 'xla':  # XLA's channel-major copy of x for its kernel gradient: built now
    return jax.vjp(lambda x, w: _xla(x, w, 1), conv_defer.after(x, dy), w)[1](dy)
  dyp = jnp.pad(dy, ((0, 0), (k - 1, k - 1), (k - 1, k - 1), (0, 0)))
  if kind == 'winograd':
    dw = jax.vjp(lambda w: _xla(conv_defer.after(x, dy), w, 1), w)[1](dy)[0]
    return winograd(dyp, w, transpose=True), dw
  if kind == 'winograd_matmul':
    dx = winograd(dyp, w, transpose=True)
    if _tiles(x.shape, k) >= WINOGRAD4_MIN_KGRAD_TILES:
      return dx, conv_winograd.kernel_grad(x, dy, k).astype(w.dtype)
  elif w.shape[-1] > OUTTAPS_MAX_OUT:
    dx = input_grad(dy, w, x.shape)
  else:  # few output channels: z would be k*k*C wide for a K = O matmul
    dx = _forward_s1(dyp, w[::-1, ::-1].transpose(0, 1, 3, 2), winograd_min)
  dw = kernel_grad(x, dy, k).astype(w.dtype)
  return dx, dw


_conv_s1.defvjp(_conv_s1_fwd, _conv_s1_bwd)
conv_s1 = jax.jit(_conv_s1, static_argnums=2)  # one compiled call per shape when run eagerly; inlined under jit
