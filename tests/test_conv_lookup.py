"""G's first conv as a table lookup equals the dense conv: forward, gradients, any input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from hdgan_jax import config as config_lib
from hdgan_jax import models
from hdgan_jax.models import conv_lookup, layers, lowering


def _dense(x, kernel):
  return layers.reflect_conv2d(x, kernel, 3)


def _conv(kind, x, kernel, onehot_nc, binary_nc):
  with lowering.using(kind):
    return lowering.categorical_conv2d(x, kernel, 3, onehot_nc, binary_nc, _dense)


def _input(seed, n, h, w, classes, edge: bool, feat: int):
  r = np.random.default_rng(seed)
  parts = [np.eye(classes, dtype=np.float32)[r.integers(0, classes, (n, h, w))]]
  if edge:
    parts.append((r.random((n, h, w, 1)) < 0.3).astype(np.float32))
  parts.append(r.standard_normal((n, h, w, feat)).astype(np.float32))
  x = np.concatenate(parts, -1)
  kernel = r.standard_normal((7, 7, x.shape[-1], 6)).astype(np.float32) * 0.1
  return jnp.asarray(x), jnp.asarray(kernel)


def _relative(a, b):
  return float(jnp.max(jnp.abs(a - b))) / (float(jnp.max(jnp.abs(a))) or 1.0)


def _forward_and_grads(kind, x, kernel, nc, binary):
  f = jax.jit(lambda x, k: _conv(kind, x, k, nc, binary))
  loss = lambda x, k: jnp.sum(jnp.sin(_conv(kind, x, k, nc, binary)))
  return (f(x, kernel),) + jax.jit(jax.grad(loss, (0, 1)))(x, kernel)


@pytest.mark.parametrize('edge,feat', [(True, 0), (True, 3), (False, 0), (False, 2)])
def test_lookup_equals_dense(edge, feat):
  x, kernel = _input(0, 2, 9, 12, 5, edge, feat)
  binary = int(edge)
  index, ok = conv_lookup.categorical_index(x, 5, binary)
  assert bool(ok)  # the lookup branch is the one compared, not the dense fallback
  labels = np.argmax(np.asarray(x[..., :5]), -1)
  np.testing.assert_array_equal(index, labels * 2 + np.asarray(x[..., 5]) if edge else labels)
  looked_up = _forward_and_grads('matmul', x, kernel, 5, binary)
  dense = _forward_and_grads('xla', x, kernel, 5, binary)
  for name, a, b in zip(('y', 'dx', 'dkernel'), dense, looked_up):
    assert _relative(a, b) <= 2e-6, name


def test_kernel_gradient_is_segment_sums():
  """On one-hot inputs the kernel gradient is k*k segment sums, not a dense correlation."""
  x, kernel = _input(2, 1, 8, 10, 4, True, 2)
  index, ok = conv_lookup.categorical_index(x, 4, 1)
  dy = jnp.asarray(np.random.default_rng(3).standard_normal((1, 8, 10, 6)), jnp.float32)
  got = conv_lookup.segment_kernel_grad(index, dy, 7, 3, 4, 1)
  want = jax.vjp(lambda k: _dense(x[..., :5], k), kernel[:, :, :5])[1](dy)[0]
  assert got.shape == (7, 7, 5, 6) and _relative(want, got) <= 2e-6
  loss = lambda k: jnp.sum(_conv('matmul', x, k, 4, 1) * dy)
  assert str(jax.make_jaxpr(jax.grad(loss))(kernel)).count('scatter-add') == 49


def test_the_lookup_runs_only_on_one_hot_inputs():
  """Soft labels, a non-0/1 edge value or NaN take the dense conv: same numbers."""
  x, kernel = _input(1, 1, 8, 8, 4, True, 0)
  soft = x.at[0, 2, 3, :4].set(0.25)
  edge = x.at[0, 5, 5, 4].set(0.5)
  for bad in (soft, edge, x * 0.5):
    assert not bool(conv_lookup.categorical_index(bad, 4, 1)[1])
    assert _relative(_conv('xla', bad, kernel, 4, 1), _conv('matmul', bad, kernel, 4, 1)) <= 2e-6
  nan = np.asarray(_conv('matmul', x.at[0, 4, 4, :4].set(jnp.nan), kernel, 4, 1))
  want = np.asarray(_conv('xla', x.at[0, 4, 4, :4].set(jnp.nan), kernel, 4, 1))
  np.testing.assert_array_equal(np.isnan(nan), np.isnan(want))
  assert np.isnan(nan).sum() == 7 * 7 * 6  # the 7x7 neighbourhood, every output channel


@settings(max_examples=12, deadline=None)
@given(h=st.integers(4, 11), w=st.integers(4, 11), classes=st.integers(1, 7),
       edge=st.booleans(), seed=st.integers(0, 1000))
def test_lookup_property(h, w, classes, edge, seed):
  """Any size the reflect pad accepts, any class count, with or without the edge map."""
  x, kernel = _input(seed, 1, h, w, classes, edge, 0)
  conv = lambda kind: jax.jit(lambda x, k: _conv(kind, x, k, classes, int(edge)))(x, kernel)
  assert _relative(conv('xla'), conv('matmul')) <= 2e-6  # jitted: one compile per example


def test_generator_uses_the_lookup_only_on_its_own_input():
  """G1's conv_in and the finest enhancer's see encode_input's layout; coarser levels do not."""
  m = config_lib.get_config().model
  m.update(dict(netG='local', label_nc=7, ngf=4, n_downsample_global=1, n_blocks_global=1,
                n_local_enhancers=2, n_blocks_local=1))
  g = models.make_generator(m)
  assert (g.onehot_nc, g.binary_nc) == (7, 1)
  x = models.encode_input(np.zeros((1, 16, 16), int), np.zeros((1, 16, 16), int), m)
  params = g.init(jax.random.PRNGKey(0), x)
  with lowering.using('matmul'):
    jaxpr = str(jax.make_jaxpr(g.apply)(params, x))
  assert jaxpr.count('cond[') == 1  # the finest enhancer's conv_in only
  m.update(dict(no_instance=True, netG='global'))
  assert (models.make_generator(m).onehot_nc, models.make_generator(m).binary_nc) == (7, 0)
  m.label_nc = 0
  assert models.make_generator(m).onehot_nc == 0


def _d_dense(x, kernel):
  return lowering.conv2d(x, kernel, 2, 2)  # D's first conv: 4x4, stride 2, zero padding 2


def _d_conv(kind, x, kernel, onehot_nc, binary_nc):
  with lowering.using(kind):
    return lowering.categorical_conv2d(x, kernel, 2, onehot_nc, binary_nc, _d_dense, 2, 'zero')


@pytest.mark.parametrize('h,w', [(8, 12), (9, 7)])
@pytest.mark.parametrize('edge,feat', [(True, 0), (False, 2)])
def test_strided_zero_padded_lookup_equals_dense(h, w, edge, feat):
  """D's condition: stride 2, zero border (an all-zero table row), forward and both gradients."""
  x, _ = _input(4, 2, h, w, 5, edge, feat)
  kernel = jnp.asarray(np.random.default_rng(5).standard_normal((4, 4, x.shape[-1], 6)) * 0.1,
                       jnp.float32)
  binary = int(edge)
  assert bool(conv_lookup.categorical_index(x, 5, binary)[1])
  loss = lambda kind: lambda x, k: jnp.sum(jnp.sin(_d_conv(kind, x, k, 5, binary)))
  for name, a, b in zip(('y', 'dx', 'dkernel'),
                        (_d_conv('xla', x, kernel, 5, binary),) + jax.grad(loss('xla'), (0, 1))(x, kernel),
                        (_d_conv('matmul', x, kernel, 5, binary),) + jax.grad(loss('matmul'), (0, 1))(x, kernel)):
    assert a.shape == b.shape and _relative(a, b) <= 2e-6, name
  jaxpr = str(jax.make_jaxpr(jax.grad(loss('matmul'), 1))(x, kernel))
  assert jaxpr.count('scatter-add') == 16  # one segment sum per tap of the 4x4 kernel


@settings(max_examples=10, deadline=None)
@given(h=st.integers(1, 11), w=st.integers(1, 11), classes=st.integers(1, 6),
       edge=st.booleans(), seed=st.integers(0, 1000))
def test_strided_lookup_property(h, w, classes, edge, seed):
  """Any size (1x1 included: every output but the centre reads the zero border)."""
  x, _ = _input(seed, 1, h, w, classes, edge, 0)
  kernel = jnp.asarray(np.random.default_rng(seed).standard_normal((4, 4, x.shape[-1], 3)),
                       jnp.float32)
  dy = jnp.asarray(np.random.default_rng(seed + 1).standard_normal(
      _d_conv('xla', x, kernel, classes, int(edge)).shape), jnp.float32)
  grad = lambda kind: jax.jit(jax.grad(
      lambda k: jnp.sum(_d_conv(kind, x, k, classes, int(edge)) * dy)))(kernel)
  conv = lambda kind: jax.jit(lambda x, k: _d_conv(kind, x, k, classes, int(edge)))(x, kernel)
  assert _relative(conv('xla'), conv('matmul')) <= 2e-6  # jitted: one compile per example
  assert _relative(grad('xla'), grad('matmul')) <= 2e-6


def test_discriminator_looks_up_only_its_full_resolution_condition():
  """make_discriminator passes encode_input's layout to scale{num_D-1} alone; same numbers."""
  m = config_lib.get_config().model
  m.update(dict(label_nc=5, ndf=8, n_layers_D=2, num_D=3))
  d = models.make_discriminator(m)
  labels = np.random.default_rng(0).integers(0, 5, (1, 24, 32))
  inst = np.random.default_rng(1).integers(0, 3, (1, 24, 32))
  cond = models.encode_input(labels, inst, m)
  img = jnp.asarray(np.random.default_rng(2).standard_normal((1, 24, 32, 3)), jnp.float32)
  params = d.init(jax.random.key(0), img, cond)
  score = lambda p, img, cond: sum(jnp.sum(jnp.sin(f)) for s in d.apply(p, img, cond) for f in s)
  results = {}
  for kind in ('xla', 'matmul'):
    with lowering.using(kind):
      results[kind] = ((jax.jit(score)(params, img, cond),)
                       + jax.jit(jax.grad(score, (0, 1)))(params, img, cond))
  want, got = (jax.tree_util.tree_leaves(results[k]) for k in ('xla', 'matmul'))
  scale = max(float(jnp.max(jnp.abs(a))) for a in want)
  for a, b in zip(want, got):
    # one scale for all: biases before an instance norm have pure-rounding gradients
    np.testing.assert_allclose(a, b, rtol=0, atol=2e-6 * scale)
  with lowering.using('matmul'):
    jaxpr = str(jax.make_jaxpr(jax.grad(score))(params, img, cond))
  assert jaxpr.count('cond[') == 2 and jaxpr.count('scatter-add') == 16  # lookup, its grad
  m.label_nc = 0
  assert models.make_discriminator(m).onehot_nc == 0
