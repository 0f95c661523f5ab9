r"""Seconds per editor edit (edit + regeneration) at the two Cityscapes sizes, random weights.

What a user waits for after each click in ``hdgan_jax.editor``: the
``Session.apply`` of one edit (the pure edit, encoding the generator input,
the generator, the uint8 conversion). Weights are random (the time does not
depend on their values); the models are the original's: 512x1024 with the
global generator at ngf 64 (``experiments/cityscapes_512p.py``) and 1024x2048
with the local enhancer at ngf 32 around a global ngf 64
(``experiments/cityscapes.py``). The first render (compilation) is reported
apart and excluded from the mean. The scene is a procedural demo street at
that size; each edit changes one car's class (car -> truck -> car ...).
The last line is ``RESULT {json}``.

  .venv/bin/python benchmarks/editor_latency.py [--sizes=512x1024,1024x2048] [--edits=3]
"""

import importlib.util
import json
import os
import statistics
import tempfile
import time

from absl import app, flags
import jax
import numpy as np

from hdgan_jax import host_memory, models, render, run as run_lib
from hdgan_jax.data import demo
from hdgan_jax.editor_session import Session

flags.DEFINE_list('sizes', ['512x1024', '1024x2048'], 'HxW sizes to time.')
flags.DEFINE_integer('edits', 3, 'Timed edits per size (after the first, compiling render).')
FLAGS = flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENT = {512: 'cityscapes_512p.py', 1024: 'cityscapes.py'}


def experiment_config(name):
  spec = importlib.util.spec_from_file_location('exp', os.path.join(ROOT, 'experiments', name))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def random_run(config) -> run_lib.Run:
  """A Run with random G weights: N(0, 0.02) kernels, zero biases, shapes from jax.eval_shape."""
  m = config.model
  unit = models.required_multiple(m)
  x = np.zeros((1, unit, unit, models.generator_input_nc(m)), np.float32)
  shapes = jax.eval_shape(models.make_generator(m).init, jax.random.PRNGKey(0), x)['params']
  rng = np.random.default_rng(0)
  params = jax.tree_util.tree_map_with_path(
      lambda path, s: (rng.normal(0, 0.02, s.shape) if path[-1].key == 'kernel'
                       else np.zeros(s.shape)).astype(s.dtype), shapes)
  return run_lib.Run(config, {'G': params}, origin='random weights')


def time_size(height, width, edits):
  config = experiment_config(EXPERIMENT[height])
  scene = next(s for s in (demo.render_scene(i, height=height, width=width) for i in range(20))
               if any(k // 1000 == demo.CAR for k in s['styles']))
  car = max((k for k in scene['styles'] if k // 1000 == demo.CAR),
            key=lambda k: (scene['inst'] == k).sum())
  y, x = (int(v[0]) for v in np.nonzero(scene['inst'] == car))
  start = time.perf_counter()
  session = Session(render.Renderer(random_run(config)), scene['label'], scene['inst'],
                    out_dir=tempfile.mkdtemp())
  first = time.perf_counter() - start
  times = []
  for n in range(edits):
    inst = int(session.state.inst[y, x])
    t = time.perf_counter()
    session.apply({'op': 'change_class', 'instance': inst, 'to': 27 if n % 2 == 0 else 26})
    times.append(time.perf_counter() - t)
    assert session.message.startswith('applied'), session.message
  m = config.model
  return {'size': f'{height}x{width}', 'netG': m.netG, 'ngf': m.ngf,
          'first_render_s': round(first, 2), 'edit_s': [round(t, 2) for t in times],
          'mean_edit_s': round(statistics.mean(times), 2)}


def main(argv):
  del argv
  host_memory.use_memory_scheduler()  # as hdgan-editor does
  results = []
  for size in FLAGS.sizes:
    h, w = (int(v) for v in size.split('x'))
    r = time_size(h, w, FLAGS.edits)
    print(f"{r['size']} netG={r['netG']} ngf={r['ngf']}: first render {r['first_render_s']} s "
          f"(compiles), then {r['mean_edit_s']} s per edit {r['edit_s']}", flush=True)
    results.append(r)
  print('RESULT ' + json.dumps({'cpu_count': os.cpu_count(), 'results': results}))


if __name__ == '__main__':
  app.run(main)
