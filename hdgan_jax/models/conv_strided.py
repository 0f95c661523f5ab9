"""Strided convs on CPU: XLA's forward, both gradients as stride-1 work on phases.

A stride-``s`` k x k conv reads each input phase (row % s, col % s) through a
sub-kernel of at most T x T taps, T = ceil(k / s). Its two gradients are then
unit-stride:

* input gradient: phase (si, sj) of the padded input's gradient is the full
  correlation of ``dy`` with the flipped sub-kernel W[s*a + si, s*b + sj]^T:
  stride-1 XLA convs of ``dy`` (one to s*s*C channels when s divides k, else
  one per phase; :func:`input_grad`), then depth-to-space. XLA:CPU runs stride-1 convs near
  its matmul rate, its strided convs' input gradient (an lhs-dilated conv) at a
  third of it or less.
* kernel gradient: dw[s*a + si, s*b + sj] = sum_p xs[p + (a, b)]^T dy[p], where
  ``xs`` is the padded input space-to-depth (s*s*C channels). Shifting ``dy``
  instead of ``xs`` makes all T*T taps one matmul, the T*T shifted copies of
  ``dy`` against ``xs`` (:func:`kernel_grad`; banded over rows at large maps).
  It reads ``xs`` through :func:`conv_defer.after`, so the copy is made in the
  backward pass.

Measured for the 256x512 model's convs (2-core Xeon, huge pages, fastest of
9-21 alternating calls in scratch timings; XLA's own against these): D's
64->128 at 129x257, input gradient 17 -> 9 ms, kernel gradient 42 -> 21 ms;
128->256 at 65x129, 11 -> 8 and 23.5 -> 13.5 ms; G's down_1 (3x3, 64->128 at
128x256) kernel gradient 32 -> 20 ms. :func:`grad_kinds` picks per shape.
Transposed convs (:func:`conv_transpose`) are the strided conv's adjoint, so
their forward is :func:`input_grad`, and on large maps their kernel gradient is
:func:`kernel_grad` (:func:`transposed_kernel_grad`).
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax

from hdgan_jax.models import conv_bands as bands, conv_defer, conv_matmul

_DN = ('NHWC', 'HWIO', 'NHWC')


def _xla(x, w, stride: int, padding: int):
  return lax.conv_general_dilated(x, w, (stride, stride), ((padding, padding),) * 2,
                                  dimension_numbers=_DN)


def _geometry(x_shape, k: int, s: int, p: int):
  """(taps per side T, output height, output width) of the conv."""
  oh = (x_shape[1] + 2 * p - k) // s + 1
  ow = (x_shape[2] + 2 * p - k) // s + 1
  return -(-k // s), oh, ow


def _phase_taps(k: int, s: int, phase: int) -> int:
  """Taps of a k-wide kernel that read input phase ``phase`` (kernel indices phase, phase + s, ...)."""
  return len(range(phase, k, s))


def input_grad(dy, w, x_shape, s: int, p: int):
  """dL/dx of ``conv(x, w, stride s, padding p)``: stride-1 convs of ``dy``, then depth-to-space.

  k % s == 0: every phase has T x T taps, one conv to s*s*C channels. Otherwise
  one conv per phase with only its own taps (a 3x3 kernel's phases have 4, 2, 2
  and 1), which skips the zero-padded kernel's 16 - 9 zero taps: at 256x512x32
  10.3 -> 9.2 ms, where one conv of D's 4x4 shape takes 8.9 against 10.7 ms
  per phase (fastest of 21 alternating calls, 2-core Xeon).
  """
  k, c, o = w.shape[0], w.shape[2], w.shape[3]
  t, oh, ow = _geometry(x_shape, k, s, p)
  n, h, wd = x_shape[0], x_shape[1], x_shape[2]
  conv = lambda kern, pads: lax.conv_general_dilated(dy, kern.astype(dy.dtype), (1, 1), pads,
                                                     dimension_numbers=_DN)
  if k % s == 0:
    # kt[u, v, o, (si, sj, c)] = w[s * (T-1-u) + si, s * (T-1-v) + sj, c, o]
    kt = w.reshape(t, s, t, s, c, o)[::-1, :, ::-1].transpose(0, 2, 5, 1, 3, 4)
    z = conv(kt.reshape(t, t, o, s * s * c), ((t - 1, t - 1),) * 2)
    z = z.reshape(n, oh + t - 1, ow + t - 1, s, s, c)  # (n, R, S, si, sj, C)
  else:  # phase (si, sj): its own ta x tb taps, padded to the same R x S output
    def phase(si, sj):
      ta, tb = _phase_taps(k, s, si), _phase_taps(k, s, sj)
      if not ta or not tb:  # k < s: no tap reads this phase
        return jnp.zeros((n, oh + t - 1, ow + t - 1, c), dy.dtype)
      return conv(w[si::s, sj::s][::-1, ::-1].transpose(0, 1, 3, 2), ((ta - 1, t - 1), (tb - 1, t - 1)))
    z = jnp.stack([jnp.stack([phase(si, sj) for sj in range(s)], axis=3) for si in range(s)],
                  axis=3)  # (n, R, S, si, sj, C)
  rows, cols = s * (oh + t - 1), s * (ow + t - 1)
  full = z.transpose(0, 1, 3, 2, 4, 5).reshape(n, rows, cols, c)  # the padded input's gradient
  need_h, need_w = h + 2 * p, wd + 2 * p  # padded rows past ``rows`` are never read: zero
  full = jnp.pad(full, ((0, 0), (0, max(0, need_h - rows)), (0, max(0, need_w - cols)), (0, 0)))
  return full[:, p:p + h, p:p + wd]


def kernel_grad(x, dy, k: int, s: int, p: int, band_bytes: int = 0):
  """dL/dw of ``conv(x, w, stride s, padding p)`` (k x k): [shifted dy]^T @ xs, banded.

  ``dy`` is moved channel-major first (:func:`conv_defer.channel_major`, so the
  copy is made once), so the T*T shifted copies stack along the leading axis
  and the one matmul, (T*T*O, pixels) @ (pixels, s*s*C), has both operands in
  its natural layout: with ``xs`` as the transposed operand
  XLA:CPU copied it channel-major, fused with the space-to-depth, at 1 GB/s
  (that layout against this one: D's 64 -> 128 conv at 129x257 26.3 -> 20.7 ms,
  G's down_0, 3x3 32 -> 64 at 256x512, 46 -> 38 ms; fastest of 9 alternating
  calls, 2-core Xeon).
  """
  n, oh, ow, o = dy.shape
  c = x.shape[-1]
  t = -(-k // s)
  per = bands.rows_per_band(oh, n * (ow + t - 1) * t * t * o * dy.dtype.itemsize, band_bytes)
  rows = -(-oh // per) * per
  dyt = conv_defer.channel_major(bands.pad_rows(dy, rows))  # (O, n, rows, ow)
  xp = jnp.pad(conv_defer.after(x, dy), ((0, 0), (p, p), (p, p), (0, 0)))
  xs, _ = conv_matmul.space_to_depth(xp, t * s, s, oh, ow)  # (n, oh + T - 1, ow + T - 1, s*s*C)
  xs = bands.pad_rows(xs, rows + t - 1)

  def band(r0):  # this band's dy rows only, so no pair is counted twice
    d = lax.dynamic_slice_in_dim(dyt, r0, per, axis=2)
    shifted = jnp.concatenate([jnp.pad(d, ((0, 0), (0, 0), (a, t - 1 - a), (b, t - 1 - b)))
                               for a in range(t) for b in range(t)], axis=0)  # (T*T*O, n, R, S)
    xb = lax.dynamic_slice_in_dim(xs, r0, per + t - 1, axis=1)
    return lax.dot_general(shifted, xb, (((1, 2, 3), (0, 1, 2)), ((), ())),
                           preferred_element_type=jnp.float32)
  g = jnp.sum(bands.map_bands(band, oh, per), axis=0)  # ((a, b, O), (si, sj, C))
  g = g.reshape(t, t, o, s, s, c).transpose(0, 3, 1, 4, 5, 2).reshape(t * s, t * s, c, o)
  return g[:k, :k]


def phases_win(k: int, s: int, c: int) -> bool:
  """Whether :func:`input_grad` beats XLA's lhs-dilated conv to ``c`` channels (see grad_kinds)."""
  return k % s == 0 or s * s * c <= 256


def grad_kinds(x_shape, w_shape, s: int, p: int):
  """('phases' | 'xla' for the input gradient, 'shifted' | 'xla' for the kernel gradient).

  From the timings above and the G / encoder downsampling convs (3x3, stride 2,
  one conv per phase): the phase-wise input gradient (:func:`phases_win`) wins
  for every k % s == 0 conv measured and for 3x3 ones on at most 64 channels
  (20.4 -> 10.1 ms at 256x512x32 -> 64, 9.4 -> 7.5 at 128x256x64 -> 128,
  medians of 21 alternating calls); at 128 channels it ties (5.6 against
  5.7 ms at 64x128), and it loses from 256. The shifted-dy kernel gradient
  needs a map of at least 2048 output pixels, s*s*C >= 128 (the matmul's N; at
  C = 3 it took 22.5 against XLA's 8.4 ms) and 1 GFLOP: XLA's kernel gradient
  is near its matmul rate on small maps (3.2 against 3.5 ms for 0.55 GFLOP at
  33x65) and falls to a quarter of it on large ones (42 ms for 2.2 GFLOP at
  65x129; G's down_0, s*s*C = 128: 50 -> 41 ms).
  """
  k, _, c, o = w_shape
  _, oh, ow = _geometry(x_shape, k, s, p)
  dx = 'phases' if phases_win(k, s, c) else 'xla'
  pixels = x_shape[0] * oh * ow
  big = pixels >= 2048 and s * s * c >= 128 and 2.0 * pixels * k * k * c * o >= 1e9
  return dx, 'shifted' if big else 'xla'


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv(x, w, stride: int, padding: int):
  """``F.conv2d(x, w, stride, padding)`` (NHWC / HWIO): XLA's forward, gradients by :func:`grad_kinds`."""
  return _xla(x, w, stride, padding)


def _conv_fwd(x, w, stride, padding):
  return _xla(x, w, stride, padding), (x, w)


def _conv_bwd(stride, padding, res, dy):
  x, w = res
  dy = dy.astype(x.dtype)
  dx_kind, dw_kind = grad_kinds(x.shape, w.shape, stride, padding)
  if dx_kind == 'phases':
    dx = input_grad(dy, w, x.shape, stride, padding).astype(x.dtype)
  else:
    dx = jax.vjp(lambda x: _xla(x, w, stride, padding), x)[1](dy)[0]
  if dw_kind == 'shifted':
    dw = kernel_grad(x, dy, w.shape[0], stride, padding).astype(w.dtype)
  else:  # XLA's channel-major copy of x for its kernel gradient: built now
    dw = jax.vjp(lambda w: _xla(conv_defer.after(x, dy), w, stride, padding), w)[1](dy)[0]
  return dx, dw


conv.defvjp(_conv_fwd, _conv_bwd)


# The transposed conv's kernel gradient is the strided conv's (of its output
# gradient, against its input; :func:`kernel_grad`) from this many input pixels,
# in bands of at most TRANSPOSED_BAND_BYTES of shifted copies. G's 64 -> 32
# upsampling conv at 128x256: 52-53 -> 42-44 ms against the per-tap matmuls
# (unbanded 37 ms, but 20 MiB more XLA temp in the 256x512 step, where it sat at
# the peak); 128 -> 64 at 64x128: 20 ms either way, 25 ms banded; at 32x64 the
# per-tap matmuls win, 9.5 against 11 ms (fastest of 11 alternating calls,
# 2-core Xeon).
TRANSPOSED_SHIFTED_MIN_PIXELS = 16384
TRANSPOSED_BAND_BYTES = 8 << 20


def transposed_kernel_grad(x, dy, k: int, s: int, padding: int):
  """dL/dkernel (k, k, in, out) of ``F.conv_transpose2d(x, kernel, s, padding, .)`` given its ``dy``."""
  if x.shape[0] * x.shape[1] * x.shape[2] >= TRANSPOSED_SHIFTED_MIN_PIXELS:
    # x takes the output gradient's part: its channel-major copy, too, waits for dy
    x = conv_defer.after(x, dy)
    return kernel_grad(dy, x, k, s, padding, band_bytes=TRANSPOSED_BAND_BYTES).transpose(0, 1, 3, 2)
  h, w = x.shape[1], x.shape[2]
  need_h, need_w = s * (h - 1) + k, s * (w - 1) + k
  dyp = jnp.pad(dy, ((0, 0), (padding, 0), (padding, 0), (0, 0)))[:, :need_h, :need_w]
  dyp = jnp.pad(dyp, ((0, 0), (0, need_h - dyp.shape[1]), (0, need_w - dyp.shape[2]), (0, 0)))
  return conv_matmul.kernel_grad(dyp, x, k, s).transpose(0, 1, 3, 2)  # per-tap matmuls


def transposed_xla(x, kernel, s: int, padding: int, output_padding: int):
  """``F.conv_transpose2d`` as XLA's lhs-dilated conv (the 'xla' lowering's, GPU's and TPU's)."""
  k = kernel.shape[0]
  lo = k - 1 - padding
  return lax.conv_general_dilated(x, kernel[::-1, ::-1], (1, 1), ((lo, lo + output_padding),) * 2,
                                  lhs_dilation=(s, s), dimension_numbers=_DN)


def _transposed(x, kernel, s: int, padding: int, output_padding: int):
  """``F.conv_transpose2d``: the adjoint of ``conv(., kernel^T, s, padding)``, so its input_grad.

  Phase-wise (:func:`input_grad`) where :func:`phases_win` (G's upsampling
  convs to at most 64 channels: 169 -> 116 ms for 128 -> 64 channels at
  256x512 -> 512x1024, 317 -> 168 ms for 64 -> 32 at 512x1024 -> 1024x2048, a
  scratch timing on the 2-core Xeon), else XLA's lhs-dilated conv.
  """
  k, cout = kernel.shape[0], kernel.shape[3]
  if not phases_win(k, s, cout):
    return transposed_xla(x, kernel, s, padding, output_padding)
  n, h, w = x.shape[:3]
  out = (n, (h - 1) * s - 2 * padding + k + output_padding,
         (w - 1) * s - 2 * padding + k + output_padding, cout)
  return input_grad(x, kernel.transpose(0, 1, 3, 2), out, s, padding)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv_transpose(x, kernel, s: int, padding: int, output_padding: int):
  """``F.conv_transpose2d`` (kernel (k, k, in, out), PyTorch's orientation).

  Forward: :func:`_transposed`. Input gradient: the strided conv it is the
  adjoint of, XLA's (fast forward conv). Kernel gradient, an rhs-dilated conv
  in XLA, as matmuls: dK[t] = sum_a x[a]^T dy[s*a + t - padding], the stride-s
  correlation of the padded dy with x (:func:`transposed_kernel_grad`).
  """
  return _transposed(x, kernel, s, padding, output_padding)


def _conv_transpose_fwd(x, kernel, s, padding, output_padding):
  return _transposed(x, kernel, s, padding, output_padding), (x, kernel)


def _conv_transpose_bwd(s, padding, output_padding, res, dy):
  x, kernel = res
  k = kernel.shape[0]
  dy = dy.astype(x.dtype)
  dx = _xla(dy, kernel.transpose(0, 1, 3, 2).astype(dy.dtype), s, padding)
  dk = transposed_kernel_grad(x, dy, k, s, padding)
  return dx, dk.astype(kernel.dtype)


_conv_transpose.defvjp(_conv_transpose_fwd, _conv_transpose_bwd)
conv_transpose = jax.jit(_conv_transpose, static_argnums=(2, 3, 4))
