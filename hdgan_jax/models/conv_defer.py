"""Keeping the backward pass's copies of forward activations out of the forward pass (CPU).

A conv's kernel gradient reads its forward input ``x`` in another shape: the
matmul lowerings slice it into windows, XLA's own kernel-gradient conv wants it
channel-major. Both copies depend on ``x`` alone, so XLA:CPU builds them as
soon as ``x`` exists, in the forward pass, or merges them with the forward's
identical windows, and each stays live until the backward pass reaches its
layer, beside ``x`` itself. At the step's peak (in D's backward) all of them
are live at once. :func:`after` makes such a copy depend on the output gradient
too, so it is built when the gradient is, and freed right after use.

Measured on the 2-core Xeon (``benchmarks/train_step.py``, XLA's temp and the
process's peak RSS): 660 -> 475 MiB temp and 1980-1996 -> 1868 MiB peak in the
256x512 ngf-32 step (503 MiB from the kernel gradients' windows alone: the
residual blocks' 18 patch matrices of 9 MiB and D's 4x4 ones); 516 -> 423 MiB
temp and 3599 -> 3418 MiB peak at 128x256 (ngf 64, VGG19, num_D 3). Step times
unchanged (the same copies are made, later).

Used by every CPU kernel gradient that reads a forward input: :mod:`conv_matmul`
(stride 1, transposed), :mod:`conv_strided` and :mod:`conv_winograd`.
:func:`channel_major` makes the channel-major copies those gradients need once.
"""

import jax
import jax.numpy as jnp
from jax import lax


def after(x, dy):
  """``x``, exactly (``x + 0 * dy[0]``), but computed only once ``dy`` exists.

  ``0 * s`` is not folded for floats (``s`` may be inf or NaN), so XLA keeps the
  dependency; where the first element of ``dy`` is not finite the gradient built
  from this is not finite either, as it would be from ``x``.
  """
  first = lax.slice(dy, (0,) * dy.ndim, (1,) * dy.ndim).reshape(())
  return x + jnp.zeros((), x.dtype) * first.astype(x.dtype)


def channel_major(a):
  """``a.transpose(3, 0, 1, 2)``, exactly, as a matmul with the identity: (C, C) @ a^T.

  The channel-major copies that kernel gradients contract over pixels with
  (:mod:`conv_strided`, :mod:`conv_winograd`). XLA:CPU fuses a transpose with
  its elementwise producer (there the output gradient, an instance norm's
  backward) and then with every consumer: the T*T shifted copies of the
  strided kernel gradient each recomputed the norm's backward through a
  transposing read, at 0.4 GB/s (47 ms for D's 64 -> 128 conv at 129x257). Behind a dot the transposed copy is made once, and the dot's own
  cost is 2*C/T^2 of the kernel gradient's. Exact: each output is one product
  with 1 plus zeros (a non-finite entry turns its pixel's column non-finite,
  as it would make the kernel gradient). The 256x512 train step: median 1.97
  -> 1.77 s, fastest step 1.75 -> 1.62 s (``benchmarks/train_step.py``, two
  alternating runs each, 2-core Xeon).
  """
  return lax.dot_general(jnp.eye(a.shape[-1], dtype=a.dtype), a, (((1,), (a.ndim - 1,)), ((), ())),
                         precision=lax.Precision.HIGHEST)
