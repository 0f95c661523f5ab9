"""Row bands for the CPU conv lowerings: bounded intermediates, one compiled body.

The matmul lowerings (:mod:`conv_matmul`, :mod:`conv_rows`) build patch or
tap matrices several times larger than the conv's input; at 2048x1024 they
would need gigabytes. They are built for a band of output rows at a time,
each band's matrices under :data:`PATCH_BYTES`, the bands run by ``lax.map``.
"""

import jax.numpy as jnp
from jax import lax

PATCH_BYTES = 160 << 20  # the largest patch (or shifted-gradient) matrix built in one piece


def dot(a, b):
  """(..., K) @ (K, O) with float32 accumulation, result in ``a``'s dtype."""
  y = lax.dot_general(a, b, (((a.ndim - 1,), (0,)), ((), ())),
                      preferred_element_type=jnp.float32)
  return y.astype(a.dtype)


def rows_per_band(rows: int, bytes_per_row: int, limit: int = 0) -> int:
  """Output rows per band so that a band's matrices stay under ``limit`` (default PATCH_BYTES)."""
  return max(1, min(rows, (limit or PATCH_BYTES) // max(int(bytes_per_row), 1)))


def pad_rows(x, rows: int):
  """Zero rows at the bottom up to ``rows`` (bands past the end read zeros)."""
  extra = rows - x.shape[1]
  return jnp.pad(x, ((0, 0), (0, extra), (0, 0), (0, 0))) if extra > 0 else x


def map_bands(band, rows: int, per: int):
  """``band(r0)`` for r0 = 0, per, 2*per, ...: one call if a single band, else ``lax.map``.

  ``lax.map`` keeps one band's buffers alive at a time and compiles the body
  once, where a Python loop would unroll hundreds of bands at 2048x1024.
  """
  nb = -(-rows // per)
  if nb == 1:
    return band(0)[None]
  return lax.map(band, jnp.arange(nb, dtype=jnp.int32) * per)


def join_bands(ys, rows: int):
  """(bands, N, per, W, O) -> (N, rows, W, O)."""
  nb, n, per = ys.shape[:3]
  return jnp.moveaxis(ys, 0, 1).reshape((n, nb * per) + ys.shape[3:])[:, :rows]
