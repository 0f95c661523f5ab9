"""The segment-mean op behind instance-wise average pooling."""

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings, strategies as st

from hdgan_jax import models


def naive(feat, seg):
  out = np.empty_like(feat)
  for b in range(feat.shape[0]):
    for i in np.unique(seg[b]):
      m = seg[b] == i
      out[b][m] = feat[b][m].mean(0)
  return out


@settings(max_examples=30, deadline=None)
@given(hnp.arrays(np.int32, (2, 5, 6), elements=st.sampled_from([0, 3, 26000, 26001, 33000])),
       st.integers(0, 2**16))
def test_matches_per_id_loop(seg, seed):
  feat = np.random.default_rng(seed).normal(size=(2, 5, 6, 3)).astype(np.float32)
  np.testing.assert_allclose(np.asarray(models.segment_mean(feat, seg)), naive(feat, seg),
                             rtol=1e-5, atol=1e-5)


def test_gradient_spreads_evenly_over_each_segment():
  seg = np.array([[[1, 1, 2], [2, 2, 9]]])
  feat = jnp.arange(6, dtype=jnp.float32).reshape(1, 2, 3, 1)
  w = jnp.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).reshape(1, 2, 3, 1)
  g = jax.grad(lambda f: jnp.sum(models.segment_mean(f, seg) * w))(feat)
  # d/df_p sum_q w_q mean_{S(q)} = sum_{q in S(p)} w_q / |S(p)|
  want = np.array([[1.5, 1.5, 4.0], [4.0, 4.0, 6.0]]).reshape(1, 2, 3, 1)
  np.testing.assert_allclose(np.asarray(g), want, rtol=1e-6)


def test_jit_static_shapes_and_bound():
  seg = np.random.default_rng(0).integers(0, 4, (3, 8, 8))
  feat = np.random.default_rng(1).normal(size=(3, 8, 8, 2)).astype(np.float32)
  f = jax.jit(models.segment_mean, static_argnums=2)
  np.testing.assert_allclose(np.asarray(f(feat, seg, 4)), naive(feat, seg), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(f(feat, seg[..., None], None)), naive(feat, seg),
                             rtol=1e-5, atol=1e-6)


@settings(max_examples=20, deadline=None)
@given(hnp.arrays(np.uint16, (2, 4, 5), elements=st.sampled_from([0, 7, 26000, 33001, 65535])))
def test_uint16_maps_take_the_table_path_and_agree(seg):
  feat = np.random.default_rng(3).normal(size=(2, 4, 5, 2)).astype(np.float32)
  table = np.asarray(jax.jit(models.segment_mean)(feat, seg))
  np.testing.assert_allclose(table, naive(feat, seg), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(table, np.asarray(models.segment_mean(feat, seg.astype(np.int32))),
                             rtol=1e-5, atol=1e-6)
