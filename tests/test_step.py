"""The fused train step: same gradients as the original's separate passes; schedule; freezing."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_model
from hdgan_jax import config as config_lib, losses, step
from hdgan_jax.models import lowering


def tiny_config(**model_kw):
  c = config_lib.get_config()
  c.model = tiny_model(**model_kw)
  c.perceptual_backbone = 'vgg16'
  return c


def make_batch(n=2, h=32, w=64, label_nc=5, seed=0):
  r = np.random.default_rng(seed)
  label = r.integers(0, label_nc, (n, h, w)).astype(np.int32)
  inst = np.where(r.random((n, h, w)) > 0.5, 26001, 26000).astype(np.uint16)
  image = np.tanh(r.normal(size=(n, h, w, 3))).astype(np.float32)
  return {'label': label, 'inst': inst, 'image': image}


def naive_grads(nets, c, state, batch):
  """The original's way: D on the fake twice, G grads through D(fake), D grads on detached fake."""
  m = c.model
  mode = losses.gan_mode(m)
  real = batch['image']

  def lg(gp):
    cond, fake = step.generator_forward(nets, c, gp, batch)
    pr = nets.D.apply({'params': state.d_params}, jnp.concatenate([cond, real], -1))
    pf = nets.D.apply({'params': state.d_params}, jnp.concatenate([cond, fake], -1))
    total = losses.gan_loss(pf, True, mode, for_discriminator=False)
    total += losses.feature_matching(pf, pr, num_D=m.num_D, n_layers_D=m.n_layers_D)
    if nets.vgg is not None:
      fv = nets.vgg.apply(nets.vgg_vars, fake)
      rv = nets.vgg.apply(nets.vgg_vars, real)
      total += losses.perceptual(fv, rv)
    return total

  def ld(dp):
    cond, fake = step.generator_forward(nets, c, state.g_params, batch)
    fake = jax.lax.stop_gradient(fake)
    pr = nets.D.apply({'params': dp}, jnp.concatenate([cond, real], -1))
    pf = nets.D.apply({'params': dp}, jnp.concatenate([cond, fake], -1))
    return 0.5 * (losses.gan_loss(pr, True, mode) + losses.gan_loss(pf, False, mode))

  return jax.grad(lg)(state.g_params), jax.grad(ld)(state.d_params)


@pytest.mark.parametrize('kw,vgg', [(dict(netG='global'), True), (dict(netG='local', use_features=True), False)])
def test_fused_step_equals_separate_passes(kw, vgg):
  c = tiny_config(**kw)
  c.no_vgg_loss = not vgg
  nets = step.build(c, steps_per_epoch=10)
  state = step.init_state(nets, c, jax.random.PRNGKey(0), height=32, width=64)
  batch = make_batch()
  g, d, _ = jax.jit(lambda s, b: step.compute_grads(nets, c, s, b))(state, batch)
  g_ref, d_ref = jax.jit(lambda s, b: naive_grads(nets, c, s, b))(state, batch)
  for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(g_ref)):
    np.testing.assert_allclose(a, b, rtol=2e-3, atol=1e-5)
  for a, b in zip(jax.tree_util.tree_leaves(d), jax.tree_util.tree_leaves(d_ref)):
    np.testing.assert_allclose(a, b, rtol=2e-3, atol=1e-5)


def test_init_in_two_executables_equals_one():
  """Parameters first, then moments and average: the same state as one executable makes."""
  c = tiny_config(netG='global', use_features=True)
  c.g_ema_decay = 0.99
  nets = step.build(c, steps_per_epoch=10)
  mesh = step.make_mesh()
  rng = jax.random.PRNGKey(7)
  got = step.init_state(nets, c, rng, height=32, width=64, mesh=mesh)
  # Under jit the whole init is traced into one executable (the former way), compiled alike.
  ref = jax.jit(lambda r: step.init_state(nets, c, r, height=32, width=64)).lower(rng).compile(
      step._INIT_COMPILE_OPTIONS.get(jax.default_backend()))(rng)
  assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(ref)
  assert set(got.g_params) == {'G', 'E'} and got.g_ema is not None
  for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(ref)):
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b)
    assert a.sharding.is_equivalent_to(step.mesh_lib.replicated(mesh), a.ndim)


def test_lr_schedule_matches_original_epochs():
  c = config_lib.get_config()
  c.niter, c.niter_decay, c.lr = 2, 4, 1.0
  f = step.lr_schedule(c, steps_per_epoch=3)
  # epochs 0-2 at full rate (the original decays after epoch niter + 1), then 3/4, 2/4, 1/4
  got = [float(f(s)) for s in range(0, 18, 3)]
  assert got == [1.0, 1.0, 1.0, 0.75, 0.5, 0.25]


@pytest.mark.parametrize('n_enh', [1, 2])
def test_fix_global_trains_only_the_outermost_enhancer_first(n_enh):
  """Like the original's ``model{n}*`` filter; held parts keep their Adam state untouched."""
  c = tiny_config(netG='local', n_local_enhancers=n_enh, n_downsample_global=1)
  c.no_vgg_loss = True
  c.niter_fix_global = 1
  nets = step.build(c, steps_per_epoch=2)
  state = step.init_state(nets, c, jax.random.PRNGKey(0), height=32, width=64)
  fn = jax.jit(lambda s, b: step.train_step(nets, c, s, b, None))
  before = state.g_params['G']
  outer = f'enhancer_{n_enh}'
  changed = lambda a, b: all(jax.tree_util.tree_leaves(
      jax.tree_util.tree_map(lambda x, y: bool(np.any(x != y)), a, b)))
  for i in range(2):
    state, _ = fn(state, make_batch(seed=i))
  for name, params in state.g_params['G'].items():
    if name == outer:
      assert changed(params, before[name])
    else:
      jax.tree_util.tree_map(np.testing.assert_array_equal, params, before[name])
  state, _ = fn(state, make_batch(seed=5))  # epoch 1: everything trains
  for name, params in state.g_params['G'].items():
    assert changed(params, before[name]), name


def test_the_cpu_step_does_not_copy_its_donated_state():
  """lowering.compiler_options: region analysis lets XLA:CPU update parameters and Adam
  moments in place; without it every one is copied at the start and held all step."""
  assert lowering.compiler_options('cpu') == lowering.CPU_COMPILER_OPTIONS
  assert lowering.compiler_options('gpu') == {} == lowering.compiler_options('tpu')
  c = tiny_config()
  c.no_vgg_loss = True
  nets = step.build(c, steps_per_epoch=10)
  mesh = step.make_mesh()
  abstract = step.abstract_state(nets, c, mesh, height=32, width=64)
  lowered = step.jit_train_step(nets, c, mesh, abstract).lower(abstract, make_batch(n=1), None)
  state_copies = lambda compiled: len(re.findall(r' copy\(%s_', compiled.as_text()))
  assert state_copies(lowered.compile()) == 0
  off = {k: False for k in lowering.CPU_COMPILER_OPTIONS}
  assert state_copies(lowered.compile(compiler_options=off)) > 10  # what the option removes
