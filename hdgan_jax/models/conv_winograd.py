"""Winograd F(2x2, 3x3) and F(2x2, 4x4): stride-1 convs with fewer multiplies (CPU lowering).

Each (r+1)x(r+1) input tile and the kernel are transformed (B^T d B, G g G^T),
the (r+1)^2 transformed taps are as many matmuls over the channels, and
A^T m A gives each 2x2 output tile: 2.25x fewer multiplies than direct for
r = 3 (G's residual convs), 2.56x for r = 4 (D's wide stride-1 4x4 convs).
:mod:`conv_matmul` picks it per shape (``pick_s1``) for the forward and, on
enough tiles, for the input gradient; D's wide 4x4 convs on 512+ tiles also take
its kernel gradient (:func:`kernel_grad`).
"""

from fractions import Fraction

import jax.numpy as jnp
import numpy as np
from jax import lax

from hdgan_jax.models import conv_defer


def cook_toom(r: int, points) -> tuple:
  """(B^T, G, A^T) of Winograd F(2, r) from r - 1 finite interpolation points and infinity.

  A^T evaluates at the points, G interpolates the kernel there (divided by the
  Lagrange denominators), and B^T is the one matrix with
  ``A^T [(G g) * (B^T d)] == correlate(d, g)`` for all g, d, solved exactly in
  rationals. The points set the rounding: for r = 4, (0, 1, -1, -2) gave the
  smallest error of eight sets tried, 2.6e-5 of the mean |y| at its worst
  (im2col: 3.3e-6) on a 256 -> 512 channel conv.
  """
  n = r + 1
  p = [Fraction(v) for v in points]
  assert len(p) == n - 1
  at = [[p[k] ** i for k in range(n - 1)] + [Fraction(int(i == 1))] for i in range(2)]
  g = []
  for k in range(n - 1):
    denom = np.prod([p[k] - p[l] for l in range(n - 1) if l != k])
    g.append([p[k] ** j / denom for j in range(r)])
  g.append([Fraction(int(j == r - 1)) for j in range(r)])
  # Column s of B^T: sum_k At[i,k] G[k,j] Bt[k,s] = [s == i + j] for every output i and
  # tap j, 2r equations in n unknowns, consistent and of full rank.
  rows = [(i, j) for i in range(2) for j in range(r)]
  bt = [[Fraction(0)] * n for _ in range(n)]
  for s in range(n):
    a = [[at[i][k] * g[k][j] for k in range(n)] + [Fraction(int(s == i + j))] for i, j in rows]
    bt_col = _solve(a, n)
    for k in range(n):
      bt[k][s] = bt_col[k]
  to = lambda m: np.array([[float(v) for v in row] for row in m])
  return to(bt), to(g), to(at)


def _solve(a, n: int):
  """The exact solution of a consistent, full-rank linear system (augmented rows ``a``)."""
  a = [row[:] for row in a]
  col_row = []
  r0 = 0
  for c in range(n):
    piv = next(i for i in range(r0, len(a)) if a[i][c] != 0)
    a[r0], a[piv] = a[piv], a[r0]
    a[r0] = [v / a[r0][c] for v in a[r0]]
    for i in range(len(a)):
      if i != r0 and a[i][c] != 0:
        a[i] = [vi - a[i][c] * v0 for vi, v0 in zip(a[i], a[r0])]
    col_row.append(r0)
    r0 += 1
  assert all(all(v == 0 for v in row) for row in a[r0:]), 'inconsistent system'
  return [a[col_row[c]][n] for c in range(n)]


# F(2, 3): points 0, 1, -1 and infinity, written out (their B^T is the familiar one).
_F23 = (np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64),
        np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], np.float64),
        np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64))
TRANSFORMS = {3: _F23, 4: cook_toom(4, (0, 1, -1, -2))}


def _combine(terms, coefs):
  """sum_s coefs[s] * terms[s] over the nonzero coefficients, +-1 as adds and subtracts."""
  acc = None
  for t, c in zip(terms, coefs):
    if c == 0:
      continue
    t = t if c == 1 else (-t if c == -1 else t * np.float32(c))
    acc = t if acc is None else acc + t
  return acc


def _input_transform(d, bt, axis: int, tiles: int):
  """B^T along ``axis``: n arrays, one per tile row/column, each strided over the tiles."""
  n = bt.shape[0]
  sl = [lax.slice_in_dim(d, o, o + 2 * (tiles - 1) + 1, 2, axis) for o in range(n)]
  return [_combine(sl, row) for row in bt]


def _kernel_transform(w, g, flip: bool = False):
  """The n^2 transformed kernels of ``w`` (``w[::-1, ::-1]`` if ``flip``), (n^2, C, O).

  One multithreaded K = r^2 matmul over the kernel instead of n^2 single-threaded
  slice-and-add fusions (which dominated a 1024-channel conv's transforms in an
  XLA profile); the flip is a permutation of the matrix's columns, so no flipped
  copy is made.
  """
  k, _, c, o = w.shape
  n = g.shape[0]
  gg = np.einsum('ai,bj->abij', g, g)
  gg = (gg[:, :, ::-1, ::-1] if flip else gg).reshape(n * n, k * k).astype(np.float32)
  u = lax.dot(jnp.asarray(gg, w.dtype), w.reshape(k * k, c * o), precision=lax.Precision.HIGHEST)
  return u.reshape(n * n, c, o)


def winograd(x, w, transpose: bool = False):
  """Stride-1 VALID r x r conv (r = 3 or 4) by Winograd F(2x2, rxr); any output size.

  (r+1)^2 separate matmuls, one per transformed tap, rather than one batched
  matmul over a stacked operand: XLA:CPU then computes each transformed tile
  operand inside its matmul's fusion instead of copying them all into one
  buffer first (faster for 1024 channels at 32x64 in a scratch comparison;
  ``benchmarks/conv_layers.py`` times the result). Odd output sizes are padded.
  ``transpose=True`` convolves with ``w`` flipped and its channel axes swapped,
  the input gradient's kernel, without copying it: the matmuls contract over
  the kernel's last axis (a transposed copy of a 1024x1024 kernel made the
  gradient 2.6-8x slower than the forward).
  """
  r = w.shape[0]
  bt, g, at = TRANSFORMS[r]
  nt = r + 1
  n, h, wd, c = x.shape
  o = w.shape[-2] if transpose else w.shape[-1]
  contract = 1 if transpose else 0
  oh, ow = h - r + 1, wd - r + 1
  th, tw = -(-oh // 2), -(-ow // 2)
  x = jnp.pad(x, ((0, 0), (0, 2 * th - oh), (0, 2 * tw - ow), (0, 0)))
  v = [_input_transform(a, bt, 2, tw) for a in _input_transform(x, bt, 1, th)]  # (n, th, tw, C)
  u = _kernel_transform(w, g, flip=transpose)  # u[nt*i + j]: (C, O); (O, C) if transposed
  m = [[lax.dot_general(v[i][j].reshape(-1, c), u[nt * i + j], (((1,), (contract,)), ((), ())),
                         preferred_element_type=jnp.float32).reshape(n, th, tw, o)
        for j in range(nt)] for i in range(nt)]
  cols = [[_combine([m[i][j] for i in range(nt)], row) for row in at] for j in range(nt)]
  rows = [jnp.stack([_combine([cols[j][p] for j in range(nt)], row) for row in at], axis=3)
          for p in range(2)]
  y = jnp.stack(rows, axis=2).reshape(n, 2 * th, 2 * tw, o)
  return y[:, :oh, :ow].astype(x.dtype)


def kernel_grad(x, dy, r: int):
  """dL/dw of the stride-1 VALID r x r conv of ``x`` whose output gradient is ``dy``, by Winograd.

  The forward's M = V U per transformed tap gives dU = V^T dM, dM the output
  transform's adjoint applied to dy's 2x2 tiles, and dw = G^T dU G: (r+1)^2
  matmuls contracting over the tiles, 2.56x fewer multiplies than the direct
  correlation for r = 4. V is transformed from the channel-major input, so
  each matmul's operands are in their natural layout ((C, tiles) @ (tiles, O)).
  ``x`` is read through :func:`conv_defer.after`.
  """
  bt, g, at = TRANSFORMS[r]
  nt = r + 1
  n, h, wd, c = x.shape
  o = dy.shape[-1]
  oh, ow = h - r + 1, wd - r + 1
  th, tw = -(-oh // 2), -(-ow // 2)
  x = jnp.pad(conv_defer.after(x, dy), ((0, 0), (0, 2 * th - oh), (0, 2 * tw - ow), (0, 0)))
  xt = conv_defer.channel_major(x)  # (C, n, H, W)
  v = [_input_transform(a, bt, 3, tw) for a in _input_transform(xt, bt, 2, th)]  # (C, n, th, tw)
  d = jnp.pad(dy, ((0, 0), (0, 2 * th - oh), (0, 2 * tw - ow), (0, 0)))
  tiles = [[d[:, p::2, q::2] for q in range(2)] for p in range(2)]  # dy's tile entry (p, q)
  # y[p, q] = sum_ij at[p, i] at[q, j] m[i][j], so dm[i][j] = sum_pq at[p, i] at[q, j] dy[p, q].
  cols = [[_combine(tiles[p], at[:, j]) for j in range(nt)] for p in range(2)]
  du = []
  for i in range(nt):
    for j in range(nt):
      dm = _combine([cols[p][j] for p in range(2)], at[:, i])
      du.append(lax.dot_general(v[i][j].reshape(c, -1), dm.reshape(-1, o), (((1,), (0,)), ((), ())),
                                preferred_element_type=jnp.float32))
  gg = np.einsum('ai,bj->ijab', g, g).reshape(r * r, nt * nt).astype(np.float32)
  dw = lax.dot(jnp.asarray(gg), jnp.stack(du).reshape(nt * nt, c * o), precision=lax.Precision.HIGHEST)
  return dw.reshape(r, r, c, o).astype(x.dtype)
