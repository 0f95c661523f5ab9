"""Input encoding: one-hot labels, instance edges (property tests), errors."""

import hypothesis.extra.numpy as hnp
import jax
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from conftest import tiny_model
from hdgan_jax import models


def edges_reference(t):
  """Direct statement of the rule: 1 where a 4-neighbour inside the image differs."""
  n, h, w = t.shape
  out = np.zeros((n, h, w), np.float32)
  for b in range(n):
    for y in range(h):
      for x in range(w):
        for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
          yy, xx = y + dy, x + dx
          if 0 <= yy < h and 0 <= xx < w and t[b, yy, xx] != t[b, y, x]:
            out[b, y, x] = 1
  return out[..., None]


ids = st.sampled_from([0, 1, 7, 26000, 26001, 24000, 2**31 - 1])


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.int64, hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=7),
                  elements=ids))
def test_edges_match_rule(t):
  np.testing.assert_array_equal(np.asarray(models.instance_edges(t)), edges_reference(t))


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_constant_map_has_no_edges(h, w, v):
  t = np.full((1, h, w), v)
  assert float(models.instance_edges(t).sum()) == 0.0


def test_edges_accept_channel_dim_and_are_float():
  t = np.array([[[1, 1, 2]]])[..., None]
  e = models.instance_edges(t)
  assert e.dtype == np.float32 and e.shape == (1, 1, 3, 1)
  np.testing.assert_array_equal(np.asarray(e)[0, 0, :, 0], [0, 1, 1])


@settings(max_examples=25, deadline=None)
@given(hnp.arrays(np.int32, (2, 3, 4), elements=st.integers(0, 4)))
def test_one_hot_layout_and_order(label):
  cfg = tiny_model(label_nc=5)
  inst = np.arange(24).reshape(2, 3, 4)
  x = np.asarray(models.encode_input(label, inst, cfg))
  assert x.shape == (2, 3, 4, 6)
  np.testing.assert_array_equal(x[..., :5].argmax(-1), label)
  np.testing.assert_array_equal(x[..., :5].sum(-1), 1)
  np.testing.assert_array_equal(x[..., 5:], np.asarray(models.instance_edges(inst)))


def test_label_id_out_of_range_is_a_clear_error():
  cfg = tiny_model(label_nc=5)
  label = np.zeros((1, 2, 2), np.int32)
  label[0, 1, 1] = 5
  with pytest.raises(ValueError, match=r'label ids \[5\].*label_nc=5'):
    models.encode_input(label, np.zeros_like(label), cfg)
  with pytest.raises(ValueError, match='outside'):
    models.encode_input(-label, np.zeros_like(label), cfg)


def test_label_id_out_of_range_under_jit_is_not_silent():
  cfg = tiny_model(label_nc=5, no_instance=True)
  label = np.zeros((1, 2, 2), np.int32)
  label[0, 0, 0] = 9
  x = jax.jit(lambda l: models.encode_input(l, None, cfg))(label)
  assert np.isnan(np.asarray(x)[0, 0, 0]).all()
  assert np.isfinite(np.asarray(x)[0, 1]).all()


def test_mismatched_sizes_and_missing_instance_map():
  cfg = tiny_model(label_nc=5)
  with pytest.raises(ValueError, match='differ'):
    models.encode_input(np.zeros((1, 4, 4), int), np.zeros((1, 4, 5), int), cfg)
  with pytest.raises(ValueError, match='no_instance'):
    models.encode_input(np.zeros((1, 4, 4), int), None, cfg)


def test_features_are_concatenated_last_and_rgb_mode():
  cfg = tiny_model(label_nc=0, input_nc=3)
  img = np.random.rand(1, 4, 4, 3).astype(np.float32)
  feat = np.random.rand(1, 4, 4, 3).astype(np.float32)
  x = np.asarray(models.encode_input(img, np.zeros((1, 4, 4), int), cfg, feat_map=feat))
  np.testing.assert_allclose(x[..., :3], img)
  np.testing.assert_allclose(x[..., 4:], feat)
  assert x.shape[-1] == models.generator_input_nc(tiny_model(label_nc=0, use_features=True))
