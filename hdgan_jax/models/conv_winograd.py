"""Winograd F(2x2, 3x3): stride-1 3x3 convs with 2.25x fewer multiplies (CPU lowering).

Each 4x4 input tile and the kernel are transformed (B^T d B, G g G^T), the
sixteen transformed taps are sixteen matmuls over the channels, and A^T m A
gives each 2x2 output tile. :mod:`conv_matmul` picks it per shape
(``pick_s1``) for the forward and, from 256 tiles, for the input gradient.
"""

import jax.numpy as jnp
import numpy as np
from jax import lax


def _bt(d, axis: int, tiles: int):
  """B^T of Winograd F(2,3) along ``axis``: 4 arrays, one per tile row/column."""
  sl = lambda o: lax.slice_in_dim(d, o, o + 2 * (tiles - 1) + 1, 2, axis)
  d0, d1, d2, d3 = sl(0), sl(1), sl(2), sl(3)
  return [d0 - d2, d1 + d2, d2 - d1, d1 - d3]


# G of Winograd F(2,3) (3 kernel taps -> 4), and G (x) G over both kernel axes as
# one (16, 9) matrix: tap (i, j) of the transformed kernel is row 4i + j.
_G = np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], np.float32)
_GG = np.einsum('ai,bj->abij', _G, _G).reshape(16, 9)


def _kernel_transform(w, flip: bool = False):
  """The 16 transformed kernels of ``w`` (``w[::-1, ::-1]`` if ``flip``), (16, C, O).

  One multithreaded K=9 matmul over the kernel instead of sixteen single-threaded
  slice-and-add fusions (which dominated a 1024-channel conv's transforms in an
  XLA profile); the flip is a permutation of the matrix's columns, so no flipped
  copy is made.
  """
  k, _, c, o = w.shape
  gg = _GG[:, ::-1] if flip else _GG
  u = lax.dot(jnp.asarray(gg, w.dtype), w.reshape(k * k, c * o), precision=lax.Precision.HIGHEST)
  return u.reshape(16, c, o)


def _at(m0, m1, m2, m3):
  """A^T of Winograd F(2,3): 4 tile values -> 2 outputs."""
  return m0 + m1 + m2, m1 - m2 - m3


def winograd(x, w, transpose: bool = False):
  """Stride-1 VALID 3x3 conv by Winograd F(2x2, 3x3); any output size (odd ones padded).

  Sixteen separate matmuls, one per transformed tap, rather than one batched
  matmul over a stacked (16, tiles, C) operand: XLA:CPU then computes each
  transformed tile operand inside its matmul's fusion instead of copying all
  sixteen into one buffer first (faster for 1024 channels at 32x64 in a scratch
  comparison; ``benchmarks/conv_layers.py`` times the result).
  ``transpose=True`` convolves with ``w`` flipped and its channel axes swapped,
  the input gradient's kernel, without copying it: the matmuls contract over
  the kernel's last axis (a transposed copy of a 1024x1024 kernel made the
  gradient 2.6-8x slower than the forward).
  """
  n, h, wd, c = x.shape
  o = w.shape[-2] if transpose else w.shape[-1]
  contract = 1 if transpose else 0
  oh, ow = h - 2, wd - 2
  th, tw = -(-oh // 2), -(-ow // 2)
  x = jnp.pad(x, ((0, 0), (0, 2 * th - oh), (0, 2 * tw - ow), (0, 0)))
  v = [_bt(a, 2, tw) for a in _bt(x, 1, th)]  # v[i][j]: (n, th, tw, C)
  u = _kernel_transform(w, flip=transpose)  # u[4i + j]: (C, O); (O, C) if transposed
  m = [[lax.dot_general(v[i][j].reshape(-1, c), u[4 * i + j], (((1,), (contract,)), ((), ())),
                         preferred_element_type=jnp.float32).reshape(n, th, tw, o)
        for j in range(4)] for i in range(4)]
  cols = [_at(*[m[i][j] for i in range(4)]) for j in range(4)]
  rows = [jnp.stack(_at(*[cols[j][p] for j in range(4)]), axis=3) for p in range(2)]
  y = jnp.stack(rows, axis=2).reshape(n, 2 * th, 2 * tw, o)
  return y[:, :oh, :ow].astype(x.dtype)
