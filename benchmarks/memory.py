r"""Memory of one train step at the paper's sizes, without an accelerator.

Two setups: the paper's 2048x1024 recipe (local G with 1 enhancer, ngf 32,
num_D 3, VGG19 perceptual loss, batch 1) and 4096x2048 with 2 enhancers. For
each precision policy it prints:

* ``residual_bytes``: what the backward pass keeps, i.e. JAX's saved
  residuals of the step's three VJPs (G; D on real and fake; the VGG loss)
  with the plain XLA convolutions accelerators run (``HDGAN_CONV_LOWERING=xla``),
  found with ``jax.eval_shape``-style tracing only (no arithmetic, no
  allocation, so 4096x2048 costs seconds). Arguments (parameters, the batch)
  are not counted. They do not depend on the backend. Their sum is an upper
  bound: the step frees D's residuals before the VGG loss runs.
* ``state_bytes``: float32 parameters of G, D (and E) plus Adam's two moments.
* ``xla_temp_bytes``: XLA's compiled memory analysis of the whole jitted step
  on the current backend (``--xla=compile``; at full size this takes minutes
  on a small CPU, so ``--xla=none`` skips it and prints ``null``). XLA:CPU
  schedules for speed, not memory: its temp bytes do not shrink under remat,
  so this figure is about XLA:CPU, not about what an accelerator would need.

With ``--space=N`` the 4096x2048 rows also give ``residual_bytes_per_device``:
every residual that is an activation (batch, rows, ...) with at least N rows
is split into N bands, as ``mesh.constrain`` pins them; the rest is counted
whole on every device.

  .venv/bin/python benchmarks/memory.py --xla=none
  .venv/bin/python benchmarks/memory.py --sizes=2048x1024 --policies=float32 --xla=compile

The last line is ``RESULT {"rows": [...]}``.
"""

import json
import math
import os
import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

from hdgan_jax import config as config_lib, models, residuals, step
from hdgan_jax.models import vgg

flags.DEFINE_list('sizes', ['2048x1024', '4096x2048'], 'WIDTHxHEIGHT setups.')
flags.DEFINE_list('policies', ['float32', 'bfloat16', 'bfloat16+remat'], 'Precision policies.')
flags.DEFINE_enum('remat', 'blocks', ['blocks', 'full'], 'model.remat of the +remat policy.')
flags.DEFINE_enum('xla', 'none', ['none', 'compile'], 'XLA memory analysis of the compiled step.')
flags.DEFINE_integer('space', 8, 'Devices sharing one 4096x2048 image (per-device residuals).')
FLAGS = flags.FLAGS

GB = 1e9


def paper_config(width: int, height: int, policy: str):
  """The paper's recipe at ``width`` x ``height`` (2 enhancers above 2048 wide)."""
  c = config_lib.get_config()
  c.model.update(dict(netG='local', ngf=32, n_local_enhancers=1 if width <= 2048 else 2,
                      num_D=3, label_nc=35, dtype='float32' if policy == 'float32' else 'bfloat16',
                      remat=FLAGS.remat if policy.endswith('+remat') else 'none'))
  c.batch_size = 1
  c.no_vgg_loss = True  # VGG19 is attached below with abstract weights: only shapes matter
  return c


def abstract_nets(c, height: int, width: int):
  nets = step.build(c, steps_per_epoch=1000)
  module = vgg.VGG('vgg19', models.resolve_dtype(c.model.dtype), models.remat_policy(c.model))
  vgg_vars = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3))))
  return nets._replace(vgg=module, vgg_vars=vgg_vars, vgg_source='torch')


def abstract_batch(height: int, width: int):
  return {'label': jax.ShapeDtypeStruct((1, height, width), jnp.int32),
          'inst': jax.ShapeDtypeStruct((1, height, width), jnp.uint16),
          'image': jax.ShapeDtypeStruct((1, height, width, 3), jnp.float32)}


def per_device(aval, space: int) -> int:
  """Bytes of one device's share when rows split over ``space`` (as ``mesh.constrain`` pins them)."""
  if len(aval.shape) >= 3 and aval.shape[0] == 1 and aval.shape[1] >= space:
    return residuals.nbytes(aval) // aval.shape[1] * math.ceil(aval.shape[1] / space)
  return residuals.nbytes(aval)


def xla_temp_bytes(nets, c, state, batch):
  """XLA's temp bytes for the jitted step on this backend (compiles the whole step)."""
  fn = jax.jit(lambda s, b, v: step.train_step(nets._replace(vgg_vars=v), c, s, b, None))
  compiled = fn.lower(state, batch, nets.vgg_vars).compile()
  return int(compiled.memory_analysis().temp_size_in_bytes)


def measure(size: str, policy: str):
  width, height = (int(v) for v in size.split('x'))
  c = paper_config(width, height, policy)
  nets = abstract_nets(c, height, width)
  # Parameters do not depend on the image size: shapes from a small init.
  state = jax.eval_shape(lambda r: step.init_state(nets, c, r, height=256, width=256),
                         jax.random.PRNGKey(0))
  batch = abstract_batch(height, width)
  t0 = time.perf_counter()
  res = residuals.step_residuals(nets, c, state, batch)
  trace_s = time.perf_counter() - t0
  state_bytes = sum(residuals.nbytes(x) for x in jax.tree_util.tree_leaves(state))
  g_params = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(state.g_params['G']))
  row = {'size': size, 'policy': policy, 'remat': c.model.remat, 'g_params': g_params,
         'residual_bytes': sum(residuals.nbytes(a) for _, (a, _) in res),
         'residual_bytes_by_net': {n: sum(residuals.nbytes(a) for k, (a, _) in res if k == n)
                                   for n in ('G', 'D', 'VGG')},
         'state_bytes': state_bytes,
         'vgg_weight_bytes': sum(residuals.nbytes(x) for x in jax.tree_util.tree_leaves(nets.vgg_vars)),
         'trace_s': round(trace_s, 1), 'xla_temp_bytes': None}
  if width > 2048 and FLAGS.space > 1:
    row['space'] = FLAGS.space
    row['residual_bytes_per_device'] = sum(per_device(a, FLAGS.space) for _, (a, _) in res)
  if FLAGS.xla == 'compile':
    t0 = time.perf_counter()
    row['xla_temp_bytes'] = xla_temp_bytes(nets, c, state, batch)
    row['compile_s'] = round(time.perf_counter() - t0, 1)
    row['xla_backend'] = jax.default_backend()
  return row


def main(_):
  # Residuals are counted for the plain XLA convolutions that GPUs and TPUs run, not
  # for XLA:CPU's matmul rewrites (hdgan_jax/models/lowering.py), whatever this host is.
  os.environ.setdefault('HDGAN_CONV_LOWERING', 'xla')
  rows = []
  print(f"{'size':>10} {'policy':>15} {'residuals':>10} {'ratio':>6} {'state':>7} "
        f"{'state+res':>9} {'per device':>10} {'xla temp':>9}   (GB)")
  for size in FLAGS.sizes:
    base = None
    for policy in FLAGS.policies:
      row = measure(size, policy)
      base = base or row['residual_bytes']
      row['residual_ratio_to_float32'] = round(row['residual_bytes'] / base, 3)
      rows.append(row)
      dev = row.get('residual_bytes_per_device')
      dev_text = f'{(dev + row["state_bytes"]) / GB:10.2f}' if dev is not None else f"{'-':>10}"
      xla = row['xla_temp_bytes']
      print(f"{size:>10} {policy:>15} {row['residual_bytes'] / GB:10.2f} "
            f"{row['residual_ratio_to_float32']:6.3f} {row['state_bytes'] / GB:7.2f} "
            f"{(row['state_bytes'] + row['residual_bytes']) / GB:9.2f} {dev_text} "
            f"{xla / GB if xla is not None else float('nan'):9.2f}", flush=True)
  print('per device = state + residuals per device with the image split over --space devices')
  print('RESULT ' + json.dumps({'rows': rows}))


if __name__ == '__main__':
  app.run(main)
