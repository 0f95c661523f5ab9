"""The one switch that decides how convolutions are lowered, per backend.

* ``'xla'``: plain ``lax.conv_general_dilated`` (strides, padding and, for the
  transposed conv, ``lhs_dilation``). cuDNN on GPU and the MXU on TPU run these
  at their best, so GPU and TPU get them.
* ``'matmul'``: the rewrites of :mod:`hdgan_jax.models.conv_matmul`, where
  every conv and both of its gradients run as large matmuls (XLA:CPU reaches
  its matmul rate there and a third of it in its native conv). CPU only.
* ``'auto'`` (default): ``'matmul'`` on CPU for convs of at least
  :data:`MATMUL_MIN_FLOPS` (below that XLA's own conv is as fast and compiles
  several times faster, which keeps tiny test models quick), ``'xla'`` on
  every other backend; resolved at trace time from ``jax.default_backend()``.

Override with the ``model.conv_lowering`` option (applied around every network
call by ``step.build``), ``HDGAN_CONV_LOWERING=xla|matmul`` in the environment,
or ``with lowering.using('xla'):`` around tracing (tests and benchmarks). The
choice is read when a function is traced: a jitted function keeps the lowering
it was traced with.

Both lowerings compute PyTorch's ``F.conv2d`` / ``F.conv_transpose2d`` with
symmetric zero padding; tests check they agree, forward and backward.
"""

import contextlib
import contextvars
import functools
import os

import jax
import jax.numpy as jnp
from jax import lax

from hdgan_jax.models import conv_matmul

KINDS = ('auto', 'xla', 'matmul')
ENV = 'HDGAN_CONV_LOWERING'
_DN = ('NHWC', 'HWIO', 'NHWC')
MATMUL_MIN_FLOPS = 50e6  # 'auto' on CPU: smaller convs keep XLA's conv
_override = contextvars.ContextVar('hdgan_conv_lowering', default=None)


def setting(name=None) -> str:
  """The requested lowering: ``name``, else the active override, the env, 'auto'."""
  name = name or _override.get() or os.environ.get(ENV) or 'auto'
  if name not in KINDS:
    raise ValueError(f'conv lowering {name!r} is not known; use one of {KINDS} '
                     f'(model.conv_lowering or ${ENV})')
  return name


def resolve(name=None, flops: float = float('inf')) -> str:
  """'xla' or 'matmul' for a conv of ``flops`` multiply-adds x 2 under ``setting(name)``."""
  name = setting(name)
  if name == 'auto':
    big = flops >= MATMUL_MIN_FLOPS
    return 'matmul' if jax.default_backend() == 'cpu' and big else 'xla'
  return name


@contextlib.contextmanager
def using(name):
  """Traces inside this block use lowering ``name`` ('auto' | 'xla' | 'matmul')."""
  setting(name)  # validate early
  token = _override.set(name)
  try:
    yield
  finally:
    _override.reset(token)


def conv2d(x, kernel, stride: int = 1, padding: int = 0):
  """``F.conv2d(x, kernel, stride, padding)`` in NHWC / HWIO."""
  k = kernel.shape[0]
  out_px = ((x.shape[1] + 2 * padding - k) // stride + 1) * ((x.shape[2] + 2 * padding - k) // stride + 1)
  if resolve(flops=2 * x.shape[0] * out_px * kernel.size) == 'xla':
    return lax.conv_general_dilated(x, kernel, (stride, stride), ((padding, padding),) * 2,
                                    dimension_numbers=_DN)
  if padding:
    x = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  if stride == 1:
    return conv_matmul.conv_s1(x, kernel)
  return conv_matmul.conv_strided(x, kernel, stride)


def _phase_taps(k: int, s: int, lo: int):
  """For output phase r: {input offset d: kernel tap t} of a transposed conv."""
  taps = [{} for _ in range(s)]
  for r in range(s):
    for t in range(k):
      if (r + t - lo) % s == 0:
        taps[r][(r + t - lo) // s] = t
  return taps


def _pad_or_crop(x, axis: int, lo: int, hi: int):
  """Zero-pads (or, for a negative ``hi``, crops) one spatial axis."""
  if hi < 0:
    x = lax.slice_in_dim(x, 0, x.shape[axis] + hi, axis=axis)
    hi = 0
  widths = [(0, 0)] * x.ndim
  widths[axis] = (lo, hi)
  return jnp.pad(x, widths)


def conv_transpose2d(x, kernel, stride: int, padding: int, output_padding: int):
  """``F.conv_transpose2d``; ``kernel`` is (kH, kW, in, out) in PyTorch's orientation.

  'matmul': each of the s*s output phases is a stride-1 conv over only the
  taps that reach it (4 + 2 + 2 + 1 for k=3, s=2: no multiply by a zero tap),
  one banded matmul each, then depth-to-space.
  """
  k, s = kernel.shape[0], stride
  lo = k - 1 - padding
  if resolve(flops=2 * x.shape[0] * x.shape[1] * x.shape[2] * kernel.size) == 'xla':
    return lax.conv_general_dilated(x, kernel[::-1, ::-1], (1, 1),
                                    ((lo, lo + output_padding),) * 2, lhs_dilation=(s, s),
                                    dimension_numbers=_DN)
  return _transpose_matmul(x, kernel, stride, padding, output_padding)


@functools.partial(jax.jit, static_argnums=(2, 3, 4))  # one call per shape when run eagerly
def _transpose_matmul(x, kernel, s: int, padding: int, output_padding: int):
  """The 'matmul' lowering of :func:`conv_transpose2d`."""
  k = kernel.shape[0]
  lo = k - 1 - padding
  n, h, w, _ = x.shape
  o = kernel.shape[-1]
  out_h = (h - 1) * s - 2 * padding + k + output_padding
  out_w = (w - 1) * s - 2 * padding + k + output_padding
  taps = _phase_taps(k, s, lo)
  ds = [d for phase in taps for d in phase]
  dmin, dmax = min(ds), max(ds)
  qh, qw = -(-out_h // s), -(-out_w // s)
  x = _pad_or_crop(x, 1, max(-dmin, 0), qh - 1 + dmax - (h - 1))
  x = _pad_or_crop(x, 2, max(-dmin, 0), qw - 1 + dmax - (w - 1))
  if dmin > 0:
    x = x[:, dmin:, dmin:]
  flipped = kernel[::-1, ::-1]
  rows = []
  for r in range(s):
    cols = []
    for q in range(s):
      pairs = [(d1, t1, d2, t2) for d1, t1 in taps[r].items() for d2, t2 in taps[q].items()]
      if not pairs:
        cols.append(jnp.zeros((n, qh, qw, o), x.dtype))
        continue
      offsets = [(d1 - dmin, d2 - dmin) for d1, _, d2, _ in pairs]
      wm = jnp.concatenate([flipped[t1, t2] for _, t1, _, t2 in pairs], axis=0)
      cols.append(conv_matmul.tap_matmul(x, offsets, wm, 1, qh, qw))
    rows.append(jnp.stack(cols, axis=3))
  y = jnp.stack(rows, axis=2).reshape(n, qh * s, qw * s, o)
  return y[:, :out_h, :out_w]
