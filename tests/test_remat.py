"""model.remat: the same losses and gradients as without it, and fewer bytes kept for the backward pass."""

import jax
import numpy as np
import pytest

from conftest import tiny_model
from hdgan_jax import config as config_lib, residuals, step
from test_step import make_batch


def remat_config(policy, vgg=True):
  c = config_lib.get_config()
  c.model = tiny_model(netG='local', ngf=4, ndf=4, nef=4, use_features=True, remat=policy)
  c.perceptual_backbone = 'vgg16'
  c.no_vgg_loss = not vgg
  return c


def grads(policy):
  c = remat_config(policy, vgg=False)  # VGG's remat wrappers are the units' (and jax.checkpoint)
  nets = step.build(c, steps_per_epoch=10)
  state = step.init_state(nets, c, jax.random.PRNGKey(0), height=32, width=32)
  return jax.jit(lambda s, b: step.compute_grads(nets, c, s, b))(state, make_batch(h=32, w=32))


def test_remat_gives_the_same_losses_and_grads():
  """'full' nests the 'blocks' units inside whole levels, so it exercises both wrappers."""
  ref = grads('none')
  for policy in ('full',):
    got = grads(policy)
    for k, v in ref[2].items():
      assert float(got[2][k]) == pytest.approx(float(v), rel=1e-5, abs=1e-7), (policy, k)
    for a, b in zip(jax.tree_util.tree_leaves(got[:2]), jax.tree_util.tree_leaves(ref[:2])):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(np.max(np.abs(b))) + 1e-9)


def test_remat_keeps_fewer_residual_bytes(monkeypatch):
  monkeypatch.setenv('HDGAN_CONV_LOWERING', 'xla')  # the convs accelerators run (read at trace time)
  batch = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), make_batch(h=64, w=64))
  kept = {}
  for policy in ('none', 'blocks', 'full'):
    c = remat_config(policy)
    nets = step.build(c, steps_per_epoch=10)
    state = jax.eval_shape(lambda r: step.init_state(nets, c, r, height=32, width=32),
                           jax.random.PRNGKey(0))
    res = residuals.step_residuals(nets, c, state, batch)
    kept[policy] = {n: sum(residuals.nbytes(a) for k, (a, _) in res if k == n) for n in ('G', 'D', 'VGG')}
  for net in ('G', 'D', 'VGG'):
    assert kept['full'][net] < kept['blocks'][net] < kept['none'][net], (net, kept)
  g_d = {p: v['G'] + v['D'] for p, v in kept.items()}  # VGG's units keep little besides their outputs
  assert g_d['blocks'] < 0.6 * g_d['none'] and g_d['full'] < 0.5 * g_d['none'], g_d


def test_unknown_remat_policy_is_refused():
  with pytest.raises(ValueError, match="model.remat='some' is not known"):
    step.build(remat_config('some'), steps_per_epoch=10)
