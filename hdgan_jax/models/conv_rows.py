"""Wide-kernel (7x7) convolutions on few channels as matmuls without a full patch matrix.

On XLA:CPU a plain slice copies at memory speed, but a ``concatenate`` of many
narrow channel slices runs at under 1 GB/s on one thread: building G's first
7x7 conv's 49-tap patch matrix (K = 49 * 36) took three quarters of that conv's
time, and did not use the second core. Two lowerings avoid it:

* :func:`rowcol`: a *column* patch only (the 7 horizontal taps, K = 7 * C,
  seven times less data, built by :func:`column_patch`'s reshape trick instead
  of a concatenate), one matmul to 7 * O channels (one output block per kernel
  row), then the 7 row-shifted blocks added: a plain elementwise fusion.
* :func:`planar_outtaps`: for few output channels (G's last conv to RGB): the
  input transposed to planes, one matmul to k * k * O planes, then k * k
  shifted plane slices added, each a run of whole rows.

Both band over output rows like :mod:`hdgan_jax.models.conv_matmul` (with
:mod:`hdgan_jax.models.conv_bands`) so the intermediates stay under ``PATCH_BYTES``.
"""

import jax.numpy as jnp
from jax import lax

from hdgan_jax.models import conv_bands as bands


def column_patch(x, k: int, ow: int):
  """(N, H, W, C) -> (N, H, ow, k*C) with [..., c', j*C + c] = x[..., c' + j, c].

  The k shifted column windows without a concatenate: x is repeated k times
  along a new axis, flattened with k*C zeros appended, and re-read with a row
  length one pixel longer, which shifts copy j by j pixels ("skew" trick).
  XLA fuses it into one loop with no per-element operand choice.
  """
  n, h, w, c = x.shape
  q = jnp.broadcast_to(x[:, :, None], (n, h, k, w, c)).reshape(n, h, k * w * c)
  q = jnp.pad(q, ((0, 0), (0, 0), (0, k * c)))[:, :, :k * (w + 1) * c]
  q = q.reshape(n, h, k, w + 1, c)[:, :, :, :ow]
  return q.transpose(0, 1, 3, 2, 4).reshape(n, h, ow, k * c)


def _band_rows(oh: int, bytes_per_row: int, k: int) -> int:
  """Output rows per band; a band also reads k - 1 halo rows."""
  return bands.rows_per_band(oh, int(bytes_per_row * (1 + (k - 1) / max(oh, 1))))


def rowcol(x, w):
  """Stride-1 VALID conv (NHWC, HWIO): column patch @ (k*C, k*O), then k row-shifted sums."""
  k, _, c, o = w.shape
  n, h, wd, _ = x.shape
  oh, ow = h - k + 1, wd - k + 1
  wm = w.transpose(1, 2, 0, 3).reshape(k * c, k * o)  # rows (j, c), columns (i, o)
  per = _band_rows(oh, n * ow * k * (c + o) * x.dtype.itemsize, k)
  x = bands.pad_rows(x, -(-oh // per) * per + k - 1)

  def band(r0):
    z = bands.dot(column_patch(lax.dynamic_slice_in_dim(x, r0, per + k - 1, axis=1), k, ow), wm)
    y = lax.slice(z, (0, 0, 0, 0), (n, per, ow, o)).astype(jnp.float32)
    for i in range(1, k):
      y = y + lax.slice(z, (0, i, 0, i * o), (n, i + per, ow, (i + 1) * o))
    return y.astype(x.dtype)
  return bands.join_bands(bands.map_bands(band, oh, per), oh)


def planar_outtaps(x, w):
  """Stride-1 VALID conv for few output channels, on planes.

  z = w^T @ x^T gives k*k*O planes (N, taps, O, H, W); each output plane is
  the sum of k*k shifted plane slices, whole rows at a time.
  """
  k, _, c, o = w.shape
  n, h, wd, _ = x.shape
  oh, ow = h - k + 1, wd - k + 1
  wm = w.transpose(0, 1, 3, 2).reshape(k * k * o, c)
  per = _band_rows(oh, n * wd * (k * k * o + c) * 4, k)
  x = bands.pad_rows(x, -(-oh // per) * per + k - 1)

  def band(r0):
    xb = lax.dynamic_slice_in_dim(x, r0, per + k - 1, axis=1)
    z = lax.dot_general(wm, xb, (((1,), (3,)), ((), ())),
                        preferred_element_type=jnp.float32)  # (k*k*O, N, rows, W)
    z = z.reshape(k, k, o, n, per + k - 1, wd)
    y = 0.0
    for i in range(k):
      for j in range(k):
        y = y + lax.slice(z, (i, j, 0, 0, i, j), (i + 1, j + 1, o, n, i + per, j + ow))[0, 0]
    return y.transpose(1, 2, 3, 0).astype(x.dtype)  # (N, rows, ow, O)
  return bands.join_bands(bands.map_bands(band, oh, per), oh)
