"""Convs on one-hot labels as table lookups (CPU lowering): G's first conv, D's condition.

The generator's input is the one-hot label map, the 0/1 instance edge map and,
with ``use_features``, a few float feature channels (:mod:`inputs`). A k x k conv
of a one-hot pixel with label l and edge e adds one kernel row per tap,
``K[t, l] + e * K[t, edge]``, so the categorical part of the conv is the sum of
k*k rows of a (k*k * label_nc * 2, out) table, gathered by the padded
``label * 2 + edge`` map: k*k adds per output value instead of k*k*C
multiply-adds (72x fewer at 35 classes; 165 against 1756 ms for 36->64 channels
at 512x1024 on the 2-core EPYC, ``benchmarks/conv_layers.py``). Feature
channels, if any, are a dense conv added to it.

Exact for every input: the lookup runs only when the categorical channels
really are one-hot (and the edge channel 0/1); otherwise (soft labels, NaN from
an out-of-range id, a caller's own tensor) a ``lax.cond`` runs the dense conv.
Gradients (custom VJP): the input gradient is the dense conv's. The kernel
gradient of the categorical channels is, per tap, the output gradient summed
over the pixels of each index (k*k segment sums, :func:`segment_kernel_grad`):
23 against XLA's 214 ms for 36->32 channels at 256x512. It runs under the same
one-hot check as the lookup; feature channels' kernel gradient stays dense.

The same holds for D's first conv on its condition (the same encoded input, 4x4,
stride 2, zero padding: ``stride`` and ``pad_mode='zero'``, where the padded
border indexes one more, all-zero row). At 256x512, 36 -> 64 channels, the
forward and one kernel gradient (D's real and fake passes each take one) run in
16-17 ms against 47-59 ms for XLA's strided conv (2-core EPYC, a scratch timing).
"""

import functools
from typing import Callable

import jax
import jax.numpy as jnp
from jax import lax


def categorical_index(x, onehot_nc: int, binary_nc: int):
  """(index map (N, H, W) int32, whether the categorical channels are exactly one-hot / 0-1).

  The index is ``label * 2 + edge`` (``label`` without an edge channel); it
  and each pixel's label count come from one matmul of the categorical
  channels with a (channels, 2) integer table: exact for 0/1 inputs (sums of
  small integers in float32, 'highest' precision), the only ones it is used
  for. A channel-axis reduction took 15 against 2.6 ms at 256x512x36 on the
  2-core Xeon (XLA:CPU reduces a 36-wide minor axis poorly).
  """
  cat = x[..., :onehot_nc + binary_nc].astype(jnp.float32)
  scale = 2.0 if binary_nc else 1.0
  table = [[scale * label, 1.0] for label in range(onehot_nc)]  # (index weight, count weight)
  table += [[1.0, 0.0]] + [[0.0, 0.0]] * (binary_nc - 1) if binary_nc else []
  z = lax.dot_general(cat, jnp.asarray(table, jnp.float32), (((cat.ndim - 1,), (0,)), ((), ())),
                      precision=lax.Precision.HIGHEST)
  ok = jnp.all((cat == 0) | (cat == 1)) & jnp.all(z[..., 1] == 1)
  return z[..., 0].astype(jnp.int32), ok


def _states(onehot_nc: int, binary_nc: int, pad_mode: str) -> int:
  """Index values per tap: label x edge, plus the zero border's own under ``pad_mode='zero'``."""
  return onehot_nc * 2 ** binary_nc + (pad_mode == 'zero')


def _padded(index, pad: int, pad_mode: str, states: int):
  """The index map padded as the dense conv pads its input (zero: the last, all-zero state)."""
  widths = ((0, 0), (pad, pad), (pad, pad))
  if pad_mode == 'reflect':
    return jnp.pad(index, widths, mode='reflect')
  if pad_mode == 'zero':
    return jnp.pad(index, widths, constant_values=states - 1)
  raise ValueError(f"pad_mode must be 'reflect' or 'zero', got {pad_mode!r}")


def _tap(padded, i: int, j: int, oh: int, ow: int, stride: int):
  """The padded index map's values under kernel tap (i, j) at every output position."""
  return padded[:, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride]


def lookup_table(kernel, onehot_nc: int, binary_nc: int, pad_mode: str = 'reflect'):
  """(k*k * states, out) float32 rows: tap-major, then label, then edge, then the zero border."""
  k, o = kernel.shape[0], kernel.shape[-1]
  w = kernel.astype(jnp.float32)
  rows = w[:, :, :onehot_nc, None, :]
  if binary_nc:
    rows = rows + jnp.arange(2, dtype=jnp.float32)[:, None] * w[:, :, onehot_nc, None, None, :]
  rows = rows.reshape(k, k, onehot_nc * 2 ** binary_nc, o)
  if pad_mode == 'zero':
    rows = jnp.concatenate([rows, jnp.zeros((k, k, 1, o), rows.dtype)], axis=2)
  return rows.reshape(k * k * _states(onehot_nc, binary_nc, pad_mode), o)


def lookup_conv(index, table, k: int, pad: int, stride: int = 1, pad_mode: str = 'reflect'):
  """Sum over the k*k taps of ``table`` rows gathered by the padded index map."""
  n, h, w = index.shape
  states = table.shape[0] // (k * k)
  padded = _padded(index, pad, pad_mode, states)
  oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
  out = None
  for i in range(k):
    for j in range(k):
      rows = _tap(padded, i, j, oh, ow, stride) + (i * k + j) * states
      term = table.at[rows].get(mode='promise_in_bounds')  # ids checked by the caller
      out = term if out is None else out + term
  return out


def segment_kernel_grad(index, dy, k: int, pad: int, onehot_nc: int, binary_nc: int,
                        stride: int = 1, pad_mode: str = 'reflect'):
  """dL/dkernel of the one-hot and 0/1 channels, (k, k, onehot_nc + binary_nc, O) float32.

  Tap (i, j) of the kernel met index ``label * 2 + edge`` wherever the padded
  index map holds it at offset (i, j), so its gradient row is ``dy`` summed
  over those pixels: one segment sum per tap. A label channel's row adds its
  two edge states; the edge channel's row adds every label's edge-on state.
  The zero border's sums (``pad_mode='zero'``) are dropped: it has no weights.
  """
  o = dy.shape[-1]
  oh, ow = dy.shape[1:3]
  states = 2 ** binary_nc
  n_seg = _states(onehot_nc, binary_nc, pad_mode)
  padded = _padded(index, pad, pad_mode, n_seg)
  d = dy.reshape(-1, o).astype(jnp.float32)
  sums = jnp.stack([jax.ops.segment_sum(d, _tap(padded, i, j, oh, ow, stride).reshape(-1),
                                        n_seg, mode='promise_in_bounds')
                    for i in range(k) for j in range(k)])
  sums = sums[:, :onehot_nc * states].reshape(k, k, onehot_nc, states, o)
  rows = [jnp.sum(sums, axis=3)]
  if binary_nc:
    rows.append(jnp.sum(sums[:, :, :, 1], axis=2, keepdims=True))
  return jnp.concatenate(rows, axis=2)


def conv(x, kernel, pad: int, onehot_nc: int, binary_nc: int, dense: Callable,
         stride: int = 1, pad_mode: str = 'reflect') -> jax.Array:
  """``dense(x, kernel)``, looked up where exact.

  ``dense`` pads by ``pad`` (reflect or zero, ``pad_mode``), then convolves
  with ``stride``; the lookup and its kernel gradient do the same.
  """
  return _conv(x, kernel, (pad, stride, pad_mode), onehot_nc, binary_nc, dense)


def _forward(x, kernel, index, ok, geometry, onehot_nc, binary_nc, dense):
  n_cat = onehot_nc + binary_nc
  pad, stride, pad_mode = geometry

  def looked_up(x, kernel):
    table = lookup_table(kernel, onehot_nc, binary_nc, pad_mode)
    y = lookup_conv(index, table, kernel.shape[0], pad, stride, pad_mode)
    if x.shape[-1] > n_cat:  # encoder features: a dense conv on those channels only
      y = y + dense(x[..., n_cat:], kernel[:, :, n_cat:]).astype(jnp.float32)
    return y.astype(x.dtype)

  return lax.cond(ok, looked_up, dense, x, kernel)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _conv(x, kernel, geometry, onehot_nc, binary_nc, dense):
  index, ok = categorical_index(x, onehot_nc, binary_nc)
  return _forward(x, kernel, index, ok, geometry, onehot_nc, binary_nc, dense)


def _conv_fwd(x, kernel, geometry, onehot_nc, binary_nc, dense):
  index, ok = categorical_index(x, onehot_nc, binary_nc)
  y = _forward(x, kernel, index, ok, geometry, onehot_nc, binary_nc, dense)
  return y, (x, kernel, index, ok)


def _conv_bwd(geometry, onehot_nc, binary_nc, dense, res, dy):
  x, kernel, index, ok = res
  pad, stride, pad_mode = geometry
  n_cat = onehot_nc + binary_nc
  dx = jax.vjp(lambda x: dense(x, kernel), x)[1](dy)[0]  # dropped by XLA when x is not differentiated

  def dense_grad(x, dy):
    return jax.vjp(lambda k: dense(x, k), kernel)[1](dy)[0]

  def segment_grad(x, dy):
    dk = segment_kernel_grad(index, dy, kernel.shape[0], pad, onehot_nc, binary_nc,
                             stride, pad_mode)
    if x.shape[-1] > n_cat:
      feat = jax.vjp(lambda k: dense(x[..., n_cat:], k), kernel[:, :, n_cat:])[1](dy)[0]
      dk = jnp.concatenate([dk, feat.astype(jnp.float32)], axis=2)
    return dk.astype(kernel.dtype)

  return dx, lax.cond(ok, segment_grad, dense_grad, x, dy)


_conv.defvjp(_conv_fwd, _conv_bwd)
