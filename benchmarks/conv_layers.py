r"""Per-layer convolution timings: our lowering against plain ``lax.conv_general_dilated``.

Every distinct conv of a traced function (found in its jaxpr when traced with
the 'xla' lowering) is timed alone, forward and forward+both-gradients, under
'xla' and under 'auto' (what the model runs on this backend). Used by
``benchmarks/train_step.py --layers``; runnable alone for G at a given size:

  .venv/bin/python benchmarks/conv_layers.py --ngf=64 --height=512 --width=1024
"""

import functools
import statistics
import time
from typing import Callable, Dict, List

import jax
import jax.numpy as jnp
import numpy as np

from hdgan_jax.models import layers, lowering


def matmul_rate(repeats: int = 3) -> float:
  """GFLOP/s of XLA's own float32 matmul (2048x9216 @ 9216x1024) on this backend now."""
  a = jnp.ones((2048, 9216), jnp.float32)
  b = jnp.ones((9216, 1024), jnp.float32)
  f = jax.jit(jnp.dot)
  f(a, b).block_until_ready()
  best = float('inf')
  for _ in range(repeats):
    t0 = time.perf_counter()
    f(a, b).block_until_ready()
    best = min(best, time.perf_counter() - t0)
  return 2 * 2048 * 9216 * 1024 / best / 1e9


def _convs(jaxpr, out: Dict):
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == 'conv_general_dilated':
      x, w = eqn.invars[0].aval, eqn.invars[1].aval
      p = eqn.params
      forward = jax.lax.conv_dimension_numbers(x.shape, w.shape, ('NHWC', 'HWIO', 'NHWC'))
      if p['dimension_numbers'] != forward or max(p['rhs_dilation']) > 1:
        continue  # a gradient conv: timed with its forward conv
      key = (x.shape, w.shape, p['window_strides'], tuple(map(tuple, p['padding'])),
             p['lhs_dilation'])
      out[key] = out.get(key, 0) + 1
    for v in eqn.params.values():
      for j in (v if isinstance(v, (list, tuple)) else [v]):
        inner = j if hasattr(j, 'eqns') else getattr(j, 'jaxpr', None)  # Jaxpr / ClosedJaxpr
        if inner is not None:
          _convs(inner if hasattr(inner, 'eqns') else inner.jaxpr, out)


def find_convs(fn: Callable, *args) -> Dict:
  """{(x shape, kernel shape, strides, padding, lhs_dilation): count} of ``fn(*args)``."""
  with lowering.using('xla'):
    jaxpr = jax.make_jaxpr(fn)(*args)
  out: Dict = {}
  _convs(jaxpr.jaxpr, out)
  return out


def _layer_fn(key):
  """The conv as our public layer call (so 'auto' picks what the model picks)."""
  x_shape, w_shape, strides, padding, lhs_dil = key
  k = w_shape[0]
  if lhs_dil[0] > 1:  # a transposed conv: padding = (k-1-p, k-1-p+op)
    p = k - 1 - padding[0][0]
    op = padding[0][1] - padding[0][0]
    return lambda x, w: lowering.conv_transpose2d(x, w, lhs_dil[0], p, op)
  return lambda x, w: lowering.conv2d(x, w, strides[0], padding[0][0])


def _time(f, args, repeats):
  jax.block_until_ready(f(*args))
  ts = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(f(*args))
    ts.append(time.perf_counter() - t0)
  return statistics.median(ts)


def table(convs: Dict, *, grads: bool, repeats: int = 3) -> List[Dict]:
  """Times each conv under 'xla' and 'auto'; rows with GFLOP/s of each."""
  rows = []
  for key, count in sorted(convs.items(), key=lambda kv: -kv[0][0][1] * kv[0][0][2]):
    x_shape, w_shape, strides, _, lhs_dil = key
    x = jnp.ones(x_shape, jnp.float32)
    w = jnp.full(w_shape, 0.01, jnp.float32)
    fn = _layer_fn(key)
    y_shape = jax.eval_shape(fn, x, w).shape
    flop = 2 * y_shape[0] * y_shape[1] * y_shape[2] * w_shape[0] * w_shape[1] * w_shape[2] * w_shape[3]
    if lhs_dil[0] > 1:
      flop = 2 * x_shape[0] * x_shape[1] * x_shape[2] * w_shape[0] * w_shape[1] * w_shape[2] * w_shape[3]
    row = dict(x=list(x_shape), kernel=list(w_shape), stride=strides[0],
               transposed=lhs_dil[0] > 1, count=count, gflop=flop / 1e9)
    for kind in ('xla', 'auto'):
      fn = _layer_fn(key)  # a fresh function: jit caches traces per function, not per lowering
      with lowering.using(kind):
        if grads:
          g = jax.jit(jax.grad(lambda x, w: jnp.sum(fn(x, w) ** 2), argnums=(0, 1)))
          sec = _time(g, (x, w), repeats)
          row[f'{kind}_s'], row[f'{kind}_gflops'] = sec, 3 * flop / sec / 1e9
        else:
          f = jax.jit(fn)
          sec = _time(f, (x, w), repeats)
          row[f'{kind}_s'], row[f'{kind}_gflops'] = sec, flop / sec / 1e9
    rows.append(row)
  return rows


def input_conv_row(n: int, h: int, w: int, label_nc: int, out: int, repeats: int = 3) -> Dict:
  """G's first 7x7 conv on a random one-hot label map + edge map, forward, 'xla' against 'auto'.

  The per-layer table times every conv on dense inputs; this one is timed on
  the input it really sees, where 'auto' on CPU runs it as a table lookup.
  """
  r = np.random.default_rng(0)
  x = np.concatenate([np.eye(label_nc, dtype=np.float32)[r.integers(0, label_nc, (n, h, w))],
                      (r.random((n, h, w, 1)) < 0.1).astype(np.float32)], axis=-1)
  kern = jnp.asarray(r.standard_normal((7, 7, label_nc + 1, out)) * 0.02, jnp.float32)
  dense = functools.partial(layers.reflect_conv2d, pad=3)
  row = dict(x=[n, h, w, label_nc + 1], kernel=list(kern.shape), gflop=2 * n * h * w * kern.size / 1e9)
  for kind in ('xla', 'auto'):
    with lowering.using(kind):
      f = jax.jit(lambda x, k: lowering.categorical_conv2d(x, k, 3, label_nc, 1, dense))
      row[f'{kind}_s'] = _time(f, (jnp.asarray(x), kern), repeats)
  return row


def print_table(rows: List[Dict], rate: float, grads: bool) -> None:
  what = 'forward + both gradients' if grads else 'forward'
  print(f'per-layer convs ({what}); matmul rate here {rate:.0f} GFLOP/s')
  print(f"{'input NHWC':>22} {'kernel':>18} s T  n | {'xla ms':>8} {'GF/s':>5} | "
        f"{'ours ms':>8} {'GF/s':>5} {'%mm':>4} | speed-up")
  for r in rows:
    print(f"{str(tuple(r['x'])):>22} {str(tuple(r['kernel'])):>18} {r['stride']} "
          f"{'T' if r['transposed'] else ' '} {r['count']:2d} | {r['xla_s'] * 1e3:8.1f} "
          f"{r['xla_gflops']:5.0f} | {r['auto_s'] * 1e3:8.1f} {r['auto_gflops']:5.0f} "
          f"{100 * r['auto_gflops'] / rate:4.0f} | {r['xla_s'] / r['auto_s']:5.2f}x")


if __name__ == '__main__':
  import sys  # pylint: disable=g-import-not-at-top
  from absl import app, flags  # pylint: disable=g-import-not-at-top
  from hdgan_jax import config as config_lib, models  # pylint: disable=g-import-not-at-top
  flags.DEFINE_integer('ngf', 64, 'G width.')
  flags.DEFINE_integer('height', 512, 'Height.')
  flags.DEFINE_integer('width', 1024, 'Width.')
  flags.DEFINE_bool('grads', False, 'Time forward + gradients.')
  F = flags.FLAGS

  def _main(_):
    m = config_lib.model_config()
    m.ngf = F.ngf
    g = models.make_generator(m)
    x = jnp.zeros((1, F.height, F.width, 36))
    params = jax.eval_shape(lambda: g.init(jax.random.PRNGKey(0), x))
    convs = find_convs(lambda p, x: g.apply(p, x), params, x)
    print_table(table(convs, grads=F.grads), matmul_rate(), F.grads)
    r = input_conv_row(1, F.height, F.width, m.label_nc, F.ngf)
    print(f"G's first conv on one-hot labels + edge map {tuple(r['x'])} -> {F.ngf} (forward): "
          f"xla {r['xla_s'] * 1e3:.1f} ms, ours {r['auto_s'] * 1e3:.1f} ms (table lookup), "
          f"{r['xla_s'] / r['auto_s']:.2f}x")
  app.run(_main, argv=sys.argv)
