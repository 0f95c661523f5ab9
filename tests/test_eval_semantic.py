"""The semantic scorer: high on real demo photos, low on noise, metrics and persistence."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from hdgan_jax import config, eval_semantic
from hdgan_jax.data import demo


def stack(scenes):
  scenes = list(scenes)
  return (np.stack([s['image'] for s in scenes]), np.stack([s['label'] for s in scenes]))


@pytest.fixture(scope='module')
def fitted():
  images, labels = stack(demo.render_dataset(40, height=64, width=128, seed=0))
  scorer = eval_semantic.SemanticScorer().fit(images, labels, max_pixels=100_000)
  held_out = stack(demo.render_dataset(8, height=64, width=128, seed=1))
  return scorer, held_out


def test_high_on_real_photos_low_on_noise(fitted):
  scorer, (images, labels) = fitted
  real = scorer.score(images, labels)
  assert real['pixel_acc'] > 0.8 and real['miou'] > 0.4
  rng = np.random.default_rng(0)
  fakes = {
      'noise': rng.integers(0, 256, images.shape).astype(np.uint8),
      'grey': np.full(images.shape, 128, np.uint8),
      'shuffled pixels': rng.permuted(images.reshape(len(images), -1, 3), axis=1)
                         .reshape(images.shape),
      'upside down': images[:, ::-1],
  }
  for name, fake in fakes.items():
    s = scorer.score(fake, labels)
    assert s['pixel_acc'] < real['pixel_acc'] - 0.25, name
    assert s['miou'] < real['miou'] - 0.2, name
  other = scorer.score(np.roll(images, 1, axis=0), labels)   # right look, wrong layout
  assert other['pixel_acc'] < real['pixel_acc'] - 0.15


def test_predict_shapes_and_input_ranges(fitted):
  scorer, (images, labels) = fitted
  pred = scorer.predict(images[:2])
  assert pred.shape == labels[:2].shape and pred.dtype == np.int32
  assert set(np.unique(pred).tolist()) <= set(scorer.classes.tolist())
  as_float = images[:2].astype(np.float32) / 127.5 - 1
  np.testing.assert_array_equal(scorer.predict(as_float), pred)
  np.testing.assert_array_equal(scorer.predict(images[0]), pred[:1])   # single image
  chunked = scorer.predict(images[:2], chunk_pixels=1)
  np.testing.assert_array_equal(chunked, pred)


def test_save_load_round_trip(fitted, tmp_path):
  scorer, (images, labels) = fitted
  path = str(tmp_path / 'scorer.pkl')
  scorer.save(path)
  back = eval_semantic.SemanticScorer.load(path)
  np.testing.assert_array_equal(back.predict(images[:2]), scorer.predict(images[:2]))
  assert back.score(images, labels) == scorer.score(images, labels)
  np.save(tmp_path / 'other.npy', np.zeros(3))
  with pytest.raises(Exception):
    eval_semantic.SemanticScorer.load(str(tmp_path / 'other.npy'))


def test_errors():
  with pytest.raises(RuntimeError):
    eval_semantic.SemanticScorer().predict(np.zeros((1, 8, 8, 3), np.uint8))
  with pytest.raises(ValueError):
    eval_semantic.SemanticScorer().fit(np.zeros((1, 8, 8, 3), np.uint8), np.zeros((1, 8, 8)))
  with pytest.raises(ValueError):
    eval_semantic.SemanticScorer().fit(np.zeros((1, 8, 8, 3), np.uint8), np.zeros((1, 8, 9)))


def test_fit_restricted_classes_and_demo_config():
  cfg = config.get_config()
  cfg.data.demo_num_images, cfg.data.demo_height, cfg.data.demo_width = 6, 32, 64
  scorer = eval_semantic.fit_demo_scorer(cfg, max_pixels=5_000)
  assert set(scorer.classes.tolist()) <= set(demo.CLASSES)
  assert scorer.predict(np.zeros((1, 32, 64, 3), np.uint8)).shape == (1, 32, 64)
  images, labels = stack(demo.render_dataset(4, height=32, width=64, seed=3))
  two = eval_semantic.SemanticScorer(max_iter=5).fit(
      images, labels, classes=[demo.SKY, demo.ROAD], max_pixels=2_000)
  assert two.classes.tolist() == [demo.ROAD, demo.SKY]
  assert set(np.unique(two.predict(images)).tolist()) <= {demo.ROAD, demo.SKY}


def test_metrics_hand_example():
  m = eval_semantic.segmentation_metrics(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]))
  assert m['pixel_acc'] == pytest.approx(0.75)
  assert m['miou'] == pytest.approx((1 / 2 + 2 / 3) / 2)
  # A class only predicted counts (IoU 0); ignored labels drop out of both numbers.
  m = eval_semantic.segmentation_metrics(np.array([5, 1, 1]), np.array([1, 1, 9]), ignore=[9])
  assert m['pixel_acc'] == pytest.approx(0.5) and m['miou'] == pytest.approx(0.25)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=60))
def test_metrics_properties(pairs):
  pred, lab = np.array(pairs).T
  m = eval_semantic.segmentation_metrics(pred, lab)
  assert 0 <= m['miou'] <= 1 and 0 <= m['pixel_acc'] <= 1
  assert m['pixel_acc'] == pytest.approx(np.mean(pred == lab))
  assert eval_semantic.segmentation_metrics(lab, lab) == {'pixel_acc': 1.0, 'miou': 1.0}
  perm = np.random.default_rng(len(pairs)).permutation(len(pairs))
  assert eval_semantic.segmentation_metrics(pred[perm], lab[perm]) == pytest.approx(m)
  swapped = eval_semantic.segmentation_metrics(lab, pred)
  assert swapped['miou'] == pytest.approx(m['miou'])   # IoU is symmetric
