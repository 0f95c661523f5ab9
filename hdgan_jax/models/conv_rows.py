"""Wide-kernel (7x7) convolutions to few output channels, on planes.

G's last conv (7x7, ngf -> 3 RGB channels) is the slowest conv per FLOP on
XLA:CPU: 3 output channels leave its native conv and an im2col matmul (N = 3)
far from the matmul rate. :func:`planar_outtaps` instead multiplies once to
k*k*O output planes (N = pixels, so the matmul runs at full rate) and adds
k*k shifted plane slices, each a run of whole rows; 5.7x faster than XLA at
512x1024 on the 2-core EPYC, 1.8x faster than the same outtaps in NHWC, whose
shifted adds read 3-channel runs. Banded over output rows
(:mod:`hdgan_jax.models.conv_bands`).
"""

import jax.numpy as jnp
from jax import lax

from hdgan_jax.models import conv_bands as bands


def _band_rows(oh: int, bytes_per_row: int, k: int) -> int:
  """Output rows per band; a band also reads k - 1 halo rows."""
  return bands.rows_per_band(oh, int(bytes_per_row * (1 + (k - 1) / max(oh, 1))))


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
