"""Helper for the test_space_sharding_*.py files: one sharded-vs-unsharded case per subprocess.

The device count is fixed when JAX starts, so a case runs in a fresh
interpreter with ``--xla_force_host_platform_device_count=8``: from the same
parameters (initialised once, on the sharded mesh) it trains a few steps on a
1-device mesh and on a mesh with a 'space' axis (every image split into bands
of rows) and returns every loss of both, plus how many sharding constraints
each program carries. Each case is its own test file so that
pytest-xdist (``--dist loadfile``) can run the cases on different workers; one
subprocess for all of them used to be the slowest item of the suite.

Plain XLA convolutions (``HDGAN_CONV_LOWERING=xla``), as the accelerators that
split images over devices run them (hdgan_jax/models/lowering.py). XLA:CPU's
matmul rewrites are not run under space sharding here.
"""

import json
import os
import subprocess
import sys

import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))
LOSSES = ('G_GAN', 'G_GAN_Feat', 'G_VGG', 'D_real', 'D_fake')

SCRIPT = r'''
import json, sys, time
sys.path.insert(0, {tests!r})
import jax
from conftest import tiny_model
from test_step import make_batch
from hdgan_jax import config as config_lib, step

case = json.loads(sys.argv[1])
c = config_lib.get_config()
c.model = tiny_model(**case['model'])
c.no_vgg_loss, c.perceptual_backbone, c.batch_size = True, 'vgg16', case['batch']
h, w, n = case['height'], case['width'], case['batch']
nets = step.build(c, steps_per_epoch=10)
out = {{}}
t0 = time.time()
meshes = {{}}
for name, (d, s) in (('space', tuple(case['mesh'])), ('one', (1, 1))):
  c.mesh.data, c.mesh.space = d, s
  meshes[name] = step.make_mesh(c, jax.devices()[:d * s])
# Born on the sharded mesh as training does; the reference gets a host copy (the step
# donates its state). One init instead of two: it compiles for ~25 s, longer than a step.
born = step.init_state(nets, c, jax.random.PRNGKey(0), height=h, width=w, mesh=meshes['space'])
host = jax.device_get(born)
for name, (d, s) in (('one', (1, 1)), ('space', tuple(case['mesh']))):
  c.mesh.data, c.mesh.space = d, s
  mesh = meshes[name]
  state = born if name == 'space' else jax.device_put(host, step.state_shardings(mesh, born))
  fn = step.jit_train_step(nets, c, mesh, state)
  batches = [make_batch(n=n, h=h, w=w, label_nc=5, seed=i) for i in range(case['steps'])]
  hlo = fn.lower(state, batches[0], None).as_text()
  out[name + '_constraints'] = hlo.count('sharding_constraint') + hlo.count('@Sharding')
  out[name + '_seconds'] = [round(time.time() - t0, 1)]  # traced; then each step (the first compiles)
  rows = []
  for b in batches:
    state, m = fn(state, b, None)
    rows.append({{k: float(v) for k, v in m.items()}})
    out[name + '_seconds'].append(round(time.time() - t0, 1))
  out[name] = rows
print('CASE' + json.dumps(out), flush=True)
'''


def run_case(model, mesh, batch=1, height=64, width=16, steps=2):
  """Losses of ``steps`` train steps on 1 device and on ``mesh`` = (data, space) of 8 devices.

  ``model`` overrides conftest.tiny_model (n_layers_D 2, ngf/ndf/nef 4 unless given).
  """
  case = dict(model=dict(dict(ngf=4, ndf=4, nef=4, n_layers_D=2), **model), mesh=list(mesh),
              batch=batch, height=height, width=width, steps=steps)
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8',
             JAX_PLATFORMS='cpu', HDGAN_CONV_LOWERING='xla')
  r = subprocess.run([sys.executable, '-c', SCRIPT.format(tests=TESTS), json.dumps(case)],
                     env=env, capture_output=True, text=True, timeout=900)
  assert r.returncode == 0, r.stderr[-3000:]
  return next(json.loads(line[4:]) for line in r.stdout.splitlines() if line.startswith('CASE'))


def check_case(res, min_constraints):
  """Sharded losses equal unsharded ones (rel 1e-3) at every step, and training moved them.

  The constraint counts show the 1-device program is unconstrained and the
  sharded one really pins activations to the 'space' bands (a loose count, so
  that a refactor of the networks does not break it, but far above zero).
  """
  assert res['one_constraints'] == 0 and res['space_constraints'] > min_constraints, res
  assert len(res['one']) == len(res['space']) >= 2, res
  for a, b in zip(res['one'], res['space']):
    for k in LOSSES:
      assert b[k] == pytest.approx(a[k], rel=1e-3, abs=1e-6), (k, a[k], b[k])
  # step 2 runs after one update: equal rows for every step would mean nothing trained
  assert res['one'][0]['G_GAN_Feat'] != pytest.approx(res['one'][-1]['G_GAN_Feat'], rel=1e-3)
