"""The one switch that decides how convolutions are lowered, per backend.

* ``'xla'``: plain ``lax.conv_general_dilated`` (strides, padding and, for the
  transposed conv, ``lhs_dilation``). cuDNN on GPU and the MXU on TPU run these
  at their best, so GPU and TPU get them.
* ``'matmul'``: the rewrites of :mod:`hdgan_jax.models.conv_matmul`, where
  every stride-1 conv and both of its gradients run as large matmuls (XLA:CPU
  reaches its matmul rate there and a third of it in its native conv), strided
  and transposed convs as stride-1 work on phases (:mod:`conv_strided`), and
  G's first conv on one-hot labels as a table lookup (:mod:`conv_lookup`). CPU only.
* ``'auto'`` (default): ``'matmul'`` on CPU for convs of at least
  :data:`MATMUL_MIN_FLOPS` (below that XLA's own conv is as fast and compiles
  several times faster, which keeps tiny test models quick), ``'xla'`` on
  every other backend; resolved at trace time from ``jax.default_backend()``.

Choose with the ``model.conv_lowering`` option (set for the process whenever a
network is built from a config, ``models.use_lowering``),
``HDGAN_CONV_LOWERING=xla|matmul`` in the environment (wins over the config), or
``with lowering.using('xla'):`` around tracing (wins over both; tests, benchmarks). The
choice is read when a function is traced: a jitted function keeps the lowering
it was traced with.

Under 'matmul', ``with lowering.winograd_from(128):`` raises the channel count from
which 3x3 convs traced inside it take Winograd; the VGG loss network does this
(:data:`conv_matmul.WINOGRAD_MIN_CHANNELS_LOSS_NET` says why).

Both lowerings compute PyTorch's ``F.conv2d`` / ``F.conv_transpose2d`` with
symmetric zero padding; tests check they agree, forward and backward.
"""

import contextlib
import contextvars
import os
from typing import Optional

import jax
import jax.numpy as jnp
from jax import lax

from hdgan_jax.models import conv_lookup, conv_matmul, conv_strided

KINDS = ('auto', 'xla', 'matmul')
ENV = 'HDGAN_CONV_LOWERING'
_DN = ('NHWC', 'HWIO', 'NHWC')
MATMUL_MIN_FLOPS = 50e6  # 'auto' on CPU: smaller convs keep XLA's conv
_override = contextvars.ContextVar('hdgan_conv_lowering', default=None)
_default = ['auto']  # model.conv_lowering of the last network built (set_default)
_winograd_min = contextvars.ContextVar('hdgan_winograd_min_channels', default=None)


def set_default(name: str) -> None:
  """The process-wide lowering when neither ``using`` nor the environment says otherwise."""
  _default[0] = setting(name)


def setting(name=None) -> str:
  """The requested lowering: ``name``, else ``using``'s, the env's, ``set_default``'s."""
  name = name or _override.get() or os.environ.get(ENV) or _default[0]
  if name not in KINDS:
    raise ValueError(f'conv lowering {name!r} is not known; use one of {KINDS} '
                     f'(model.conv_lowering or ${ENV})')
  return name


def _flops(*dims) -> float:
  """2 * product of ``dims``; 0 when one is symbolic (``jax.export``'s batch).

  A function exported with a symbolic shape is meant for several platforms, so
  'auto' gives it the plain XLA convs every platform runs.
  """
  total = 2.0
  for d in dims:
    if not isinstance(d, int):
      return 0.0
    total *= d
  return total


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


@contextlib.contextmanager
def winograd_from(channels: int):
  """Stride-1 3x3 convs traced inside this block use Winograd from ``channels`` channels.

  The VGG loss network traces under :data:`conv_matmul.WINOGRAD_MIN_CHANNELS_LOSS_NET`
  (why: that constant's comment); everything else under the module's default.
  """
  token = _winograd_min.set(channels)
  try:
    yield
  finally:
    _winograd_min.reset(token)


# XLA options for compiling the train step, per backend. CPU: copy insertion's
# region analysis. Without it XLA:CPU copies every donated parameter and Adam
# moment that the in-place update would overwrite while a gradient still reads it
# (150 copies, about 380 MB, in the 256x512 ngf-32 step) and schedules the copies
# at the start, so they are held all step. With it: no such copies, XLA temp
# 702 -> 660 MiB (256x512) and 641 -> 516 MiB (128x256 ngf 64, VGG19), steps
# 2-4 % faster (fastest of five: 1.83-1.86 against 1.87-1.89 s; 1.83-1.87
# against 1.93-1.94 s), two alternating runs each on the 2-core EPYC.
CPU_COMPILER_OPTIONS = {'xla_cpu_copy_insertion_use_region_analysis': True}


def compiler_options(backend: Optional[str] = None) -> dict:
  """The options for ``jax.jit(..., compiler_options=...)`` on ``backend`` (default: JAX's)."""
  return dict(CPU_COMPILER_OPTIONS) if (backend or jax.default_backend()) == 'cpu' else {}


def conv2d(x, kernel, stride: int = 1, padding: int = 0):
  """``F.conv2d(x, kernel, stride, padding)`` in NHWC / HWIO."""
  k = kernel.shape[0]
  oh, ow = (x.shape[1] + 2 * padding - k) // stride + 1, (x.shape[2] + 2 * padding - k) // stride + 1
  kind = resolve(flops=_flops(x.shape[0], oh, ow, kernel.size))
  if kind == 'xla':
    return lax.conv_general_dilated(x, kernel, (stride, stride), ((padding, padding),) * 2,
                                    dimension_numbers=_DN)
  if stride > 1:  # XLA's forward (near its matmul rate); gradients per conv_strided.grad_kinds
    return conv_strided.conv(x, kernel, stride, padding)
  if padding:
    x = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  return conv_matmul.conv_s1(x, kernel, _winograd_min.get())


def conv_transpose2d(x, kernel, stride: int, padding: int, output_padding: int):
  """``F.conv_transpose2d``; ``kernel`` is (kH, kW, in, out) in PyTorch's orientation.

  'matmul': the forward phase-wise (stride-1 convs, where that wins), the
  input gradient XLA's strided conv, the kernel gradient as matmuls
  (:func:`conv_strided.conv_transpose`).
  """
  if resolve(flops=_flops(x.shape[0], x.shape[1], x.shape[2], kernel.size)) == 'xla':
    return conv_strided.transposed_xla(x, kernel, stride, padding, output_padding)
  return conv_strided.conv_transpose(x, kernel, stride, padding, output_padding)


def categorical_conv2d(x, kernel, pad: int, onehot_nc: int, binary_nc: int, dense,
                       stride: int = 1, pad_mode: str = 'reflect'):
  """``dense(x, kernel)``: a ``stride`` conv after a ``pad``-wide pad, on one-hot label channels.

  G's input (reflect pad, stride 1) and D's condition (zero pad, stride 2).
  'matmul' (CPU): a table lookup for the one-hot + edge channels
  (:mod:`conv_lookup`, exact, dense whenever the input is not one-hot); 'xla'
  and ``onehot_nc == 0`` (RGB or other float inputs): ``dense``.
  """
  k = kernel.shape[0]
  oh = (x.shape[1] + 2 * pad - k) // stride + 1
  ow = (x.shape[2] + 2 * pad - k) // stride + 1
  if not onehot_nc or resolve(flops=_flops(x.shape[0], oh, ow, kernel.size)) == 'xla':
    return dense(x, kernel)
  return conv_lookup.conv(x, kernel, pad, onehot_nc, binary_nc, dense, stride, pad_mode)
