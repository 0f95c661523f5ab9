"""One image split over devices along its height equals the unsharded step (8 simulated devices).

The device count is fixed when JAX starts, so the cases run in one fresh
interpreter with ``--xla_force_host_platform_device_count=8``; each case
trains 3 steps on a 1-device mesh and on a mesh with a 'space' axis and
compares every loss.
"""

import json
import os
import subprocess
import sys

import pytest

from hdgan_jax import config as config_lib, mesh as mesh_lib

SCRIPT = r'''
import json, sys
sys.path.insert(0, {tests!r})
import jax, numpy as np
from conftest import tiny_model
from test_step import make_batch
from hdgan_jax import config as config_lib, step

CASES = [  # (model overrides, (data, space), batch, vgg)
    (dict(netG='global'), (1, 8), 1, False),
    (dict(netG='local', n_local_enhancers=1, use_features=True), (2, 4), 2, False),
    (dict(netG='local', n_local_enhancers=2, n_downsample_global=1), (1, 8), 1, False),
]
for kw, (data, space), n, vgg in CASES:
  c = config_lib.get_config()
  c.model = tiny_model(ngf=4, ndf=4, nef=4, n_layers_D=2, **kw)
  c.no_vgg_loss, c.perceptual_backbone, c.batch_size = not vgg, 'vgg16', n
  nets = step.build(c, steps_per_epoch=10)
  losses = {{}}
  for name, (d, s) in (('one', (1, 1)), ('space', (data, space))):
    c.mesh.data, c.mesh.space = d, s
    mesh = step.make_mesh(c, jax.devices()[:d * s])
    state = step.init_state(nets, c, jax.random.PRNGKey(0), height=64, width=32, mesh=mesh)
    fn = step.jit_train_step(nets, c, mesh, state)
    rows = []
    for i in range(3):
      state, m = fn(state, make_batch(n=n, h=64, w=32, label_nc=5, seed=i), None)
      rows.append({{k: float(v) for k, v in m.items()}})
    losses[name] = rows
    hlo = fn.lower(state, make_batch(n=n, h=64, w=32, label_nc=5, seed=9), None).as_text()
    losses[name + '_constraints'] = hlo.count('sharding_constraint') + hlo.count('@Sharding')
  print('CASE' + json.dumps(losses), flush=True)
'''


@pytest.fixture(scope='module')
def results():
  # Plain XLA convolutions, as the accelerators that split images over devices run them
  # (hdgan_jax/models/lowering.py); XLA:CPU's matmul rewrites partition the same way.
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8', JAX_PLATFORMS='cpu',
             HDGAN_CONV_LOWERING='xla')
  code = SCRIPT.format(tests=os.path.dirname(os.path.abspath(__file__)))
  r = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True,
                     timeout=1800)
  assert r.returncode == 0, r.stderr[-3000:]
  return [json.loads(line[4:]) for line in r.stdout.splitlines() if line.startswith('CASE')]


@pytest.mark.parametrize('case', range(3), ids=['global', 'local1_E_data2', 'local2'])
def test_space_sharded_step_equals_unsharded(results, case):
  res = results[case]
  assert res['one_constraints'] == 0 and res['space_constraints'] > 20, res
  for a, b in zip(res['one'], res['space']):
    for k in ('G_GAN', 'G_GAN_Feat', 'G_VGG', 'D_real', 'D_fake'):
      assert b[k] == pytest.approx(a[k], rel=1e-3, abs=1e-6), (k, a[k], b[k])
  assert res['one'][0]['G_GAN_Feat'] != pytest.approx(res['one'][2]['G_GAN_Feat'], rel=1e-3)


def test_mesh_errors_are_one_line():
  m = config_lib.mesh_config()
  m.space = 3
  with pytest.raises(mesh_lib.MeshError, match='mesh.space=3 must be >= 1 and divide the 8'):
    mesh_lib.mesh_shape(m, 8)
  m.space, m.data = 2, 3
  with pytest.raises(mesh_lib.MeshError, match='mesh.data=3 x mesh.space=2'):
    mesh_lib.mesh_shape(m, 8)
  m.data = -1
  assert mesh_lib.mesh_shape(m, 8) == (4, 2)
  c = config_lib.get_config()
  c.mesh.data, c.mesh.space, c.model.remat = 0, 0, 'some'
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.validate(c)
  assert 'mesh.space=0' in str(e.value) and 'mesh.data=0' in str(e.value) and 'model.remat' in str(e.value)
  assert '\n' not in str(e.value)
