"""Data parallelism: 8 simulated devices, one example each, train like 1 device with the batch of 8.

The device count is fixed when JAX starts, so each side runs in a fresh
interpreter. A smaller model than tiny_run_config's (one discriminator scale
of one layer, one downsampling in G) keeps the two compiles short: what is
checked, the batch split over 'data' and the gradient all-reduce, does not
depend on the depth. The two runs share a compilation cache: the parameters
are initialised outside any mesh, op by op on the first device, the same
programs in both (~25 s of compiling, which XLA's device-count flag does not
change). Its own file so that pytest-xdist can run it beside the
rest of test_train.py.
"""

import json
import os
import subprocess
import sys

import pytest

MULTI = r'''
import json, sys, jax, numpy as np
sys.path.insert(0, {tests!r})
from conftest import tiny_run_config
from test_step import make_batch
from hdgan_jax import step
c = tiny_run_config()
c.model.update(dict(num_D=1, n_layers_D=1, n_downsample_global=1))
c.batch_size = 8
nets = step.build(c, steps_per_epoch=10)
mesh = step.make_mesh()
state = step.init_state(nets, c, jax.random.PRNGKey(0), height=32, width=64)
state = jax.device_put(state, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
fn = step.jit_train_step(nets, c, mesh, state)
out = []
for i in range(3):
  b = make_batch(n=8, label_nc=35, seed=i)
  state, m = fn(state, b, None)
  out.append({{k: float(v) for k, v in m.items()}})
print('JSON' + json.dumps({{'devices': jax.device_count(), 'losses': out}}))
'''


def _run_devices(n, cache):
  env = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={n}', JAX_PLATFORMS='cpu',
             JAX_COMPILATION_CACHE_DIR=cache)
  code = MULTI.format(tests=os.path.dirname(os.path.abspath(__file__)))
  r = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  return json.loads(r.stdout.split('JSON', 1)[1])


def test_eight_devices_match_one(tmp_path):
  cache = str(tmp_path / 'jax_cache')  # the 8-device run reuses the 1-device run's init compiles
  one, eight = _run_devices(1, cache), _run_devices(8, cache)
  assert one['devices'] == 1 and eight['devices'] == 8
  assert len(one['losses']) == len(eight['losses']) == 3
  for a, b in zip(one['losses'], eight['losses']):
    for k in a:
      assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-6), k
  # the later steps ran after updates: equal rows would mean nothing trained
  assert one['losses'][0]['G_GAN_Feat'] != pytest.approx(one['losses'][2]['G_GAN_Feat'], rel=1e-4)
