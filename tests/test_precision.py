"""model.dtype: bfloat16 computes in bfloat16, keeps float32 parameters, Adam state and losses; float16 is refused."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_model
from hdgan_jax import config as config_lib, step
from test_step import make_batch


def precision_config(dtype, **kw):
  c = config_lib.get_config()
  c.model = tiny_model(ngf=4, ndf=4, dtype=dtype, **kw)
  c.perceptual_backbone = 'vgg16'
  return c


def test_bfloat16_keeps_float32_state_and_losses():
  c = precision_config('bfloat16', netG='local', use_features=True)
  nets = step.build(c, steps_per_epoch=10)
  state = jax.eval_shape(lambda r: step.init_state(nets, c, r, height=32, width=32),
                         jax.random.PRNGKey(0))
  batch = make_batch(h=32, w=32)
  new, metrics = jax.eval_shape(lambda s, b: step.train_step(nets, c, s, b, None), state, batch)
  for tree in (state, new):
    dtypes = {x.dtype for x in jax.tree_util.tree_leaves((tree.g_params, tree.d_params,
                                                         tree.g_opt, tree.d_opt))}
    assert dtypes <= {jnp.dtype(jnp.float32), jnp.dtype(jnp.int32)}, dtypes
  assert {m.dtype for m in metrics.values()} == {jnp.dtype(jnp.float32)}
  text = str(jax.make_jaxpr(lambda s, b: step.compute_grads(nets, c, s, b))(state, batch))
  convs = [line for line in text.splitlines() if 'conv_general_dilated' in line]
  assert convs and all('bf16[' in line for line in convs)  # G, D, E and VGG compute in bfloat16


def test_bfloat16_generator_is_close_to_float32():
  batch = make_batch(h=32, w=64)
  out = {}
  params = None  # parameters are float32 under both compute dtypes: initialise once
  for dtype in ('float32', 'bfloat16'):
    c = precision_config(dtype)
    nets = step.build(c, steps_per_epoch=10)
    if params is None:
      params = step.init_state(nets, c, jax.random.PRNGKey(0), height=32, width=64).g_params
    out[dtype] = np.asarray(jax.jit(lambda p, b: step.generator_forward(nets, c, p, b)[1])(params, batch))
  assert out['bfloat16'].dtype == np.float32
  err = np.abs(out['bfloat16'] - out['float32'])
  assert 0 < err.max() < 0.1 and err.mean() < 0.01, (err.max(), err.mean())


def test_float16_training_is_refused_in_one_line():
  with pytest.raises(ValueError, match='float16') as e:
    step.build(precision_config('float16'), steps_per_epoch=10)
  assert '\n' not in str(e.value) and 'bfloat16' in str(e.value)
