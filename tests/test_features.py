"""Instance feature extraction, per-class K-means, cluster files and sampling."""

import jax
import numpy as np
import pytest

from hdgan_jax import architecture, features, models
from tests.conftest import tiny_model


def scene():
  """16x16: road (7) on top, a car 26000 (48 px), a car 26001 (2 px), sky 23."""
  inst = np.full((16, 16), 7, np.int64)
  inst[8:, :] = 23
  inst[2:8, 2:10] = 26000
  inst[0, 0:2] = 26001
  feat = np.zeros((16, 16, 3), np.float32)
  for i, v in [(7, 1.0), (23, 2.0), (26000, 3.0), (26001, 4.0)]:
    feat[inst == i] = [v, -v, 10 * v]
  return feat, inst


def test_instance_features_means_classes_and_area_rule():
  feat, inst = scene()
  feat[2, 2, 0] += 0.5   # not pooled: the mean is still taken
  got = {f.instance_id: f for f in features.instance_features(feat, inst)}
  # 26001 has 2 px: 2 / (256 // 32) = 0.25 <= 0.5 (the original's threshold) -> dropped
  assert sorted(got) == [7, 23, 26000]
  assert got[26000].class_id == 26 and got[7].class_id == 7
  np.testing.assert_allclose(got[26000].vector, [3 + 0.5 / 48, -3, 30], rtol=1e-6)
  assert got[26000].area == pytest.approx(48 / 256)
  assert got[26000].vector.dtype == np.float32
  everything = features.instance_features(feat, inst, min_area_fraction=0)
  assert [f.instance_id for f in everything] == [7, 23, 26000, 26001]


def test_area_threshold_matches_original_formula():
  h, w = 8, 8                      # h*w // 32 = 2 blocks: keep iff num / 2 > 0.5
  for num, kept in [(1, False), (2, True)]:
    inst = np.zeros((h, w), np.int64)
    inst.flat[:num] = 5
    ids = [f.instance_id for f in features.instance_features(np.zeros((h, w, 1)), inst)]
    assert (5 in ids) == kept


def test_label_map_overrides_id_rule():
  feat, inst = scene()
  label = np.where(inst >= 1000, inst // 1000, inst)
  label[2, 2] = 7    # one stray pixel: the majority label wins
  got = features.instance_features(feat, inst, label_map=label)
  assert {f.instance_id: f.class_id for f in got} == {7: 7, 23: 23, 26000: 26}
  relabelled = features.instance_features(feat, inst, label_map=np.full((16, 16), 4))
  assert {f.class_id for f in relabelled} == {4}


def test_kmeans_recovers_separated_colour_groups():
  rng = np.random.default_rng(1)
  truth = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
  sizes = [30, 20, 10]
  x = np.concatenate([c + 0.02 * rng.normal(size=(n, 3)) for c, n in zip(truth, sizes)])
  got = features.cluster_features({26: x, 7: x[:2], 11: np.zeros((0, 3))}, n_clusters=3)
  assert sorted(got) == [7, 26]             # empty class left out
  order = [int(np.argmin(np.linalg.norm(got[26].centers - t, axis=1))) for t in truth]
  assert sorted(order) == [0, 1, 2]
  np.testing.assert_allclose(got[26].centers[order], truth, atol=0.02)
  assert got[26].counts[order].tolist() == sizes
  assert got[7].centers.shape == (2, 3)      # capped at the number of samples
  again = features.cluster_features({26: x}, n_clusters=3)
  np.testing.assert_array_equal(again[26].centers, got[26].centers)


def test_cluster_count_capped_at_distinct_vectors():
  got = features.cluster_features({5: np.ones((4, 2))}, n_clusters=10)
  assert got[5].centers.shape == (1, 2) and got[5].counts.tolist() == [4]


def clusters3():
  return {26: features.ClassClusters(np.arange(12, dtype=np.float32).reshape(4, 3),
                                     np.array([5, 4, 3, 2])),
          7: features.ClassClusters(np.full((1, 3), -1, np.float32), np.array([9]))}


def test_cluster_file_round_trip(tmp_path, cfg):
  path = str(tmp_path / 'clusters.npz')
  h = architecture.fingerprint(cfg)
  features.save_clusters(path, clusters3(), config_hash=h, feat_num=3)
  got = features.load_clusters(path, expect_config_hash=h, expect_feat_num=3)
  assert sorted(got) == [7, 26]
  for c, v in clusters3().items():
    np.testing.assert_array_equal(got[c].centers, v.centers)
    np.testing.assert_array_equal(got[c].counts, v.counts)
  assert [p.name for p in tmp_path.iterdir()] == ['clusters.npz']   # no temp files left


def test_cluster_file_any_name_and_interrupted_write(tmp_path, cfg, monkeypatch):
  path = tmp_path / 'clusters'     # no .npz: np.savez must not write to another name
  h = architecture.fingerprint(cfg)
  features.save_clusters(str(path), clusters3(), config_hash=h, feat_num=3)
  assert sorted(features.load_clusters(str(path), expect_config_hash=h)) == [7, 26]
  before = path.read_bytes()

  def interrupted(*args, **kwargs):
    raise KeyboardInterrupt
  monkeypatch.setattr(np, 'savez', interrupted)
  with pytest.raises(KeyboardInterrupt):
    features.save_clusters(str(path), {}, config_hash=h, feat_num=3)
  assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ['clusters']


def test_cluster_file_for_another_model_is_refused(tmp_path, cfg):
  path = str(tmp_path / 'clusters.npz')
  features.save_clusters(path, clusters3(), config_hash=architecture.fingerprint(cfg), feat_num=3)
  other = tiny_model(nef=8)
  with pytest.raises(features.ClusterFileError, match='another model') as e:
    features.load_clusters(path, expect_config_hash=architecture.fingerprint(other))
  assert 'encode_features' in str(e.value)
  assert isinstance(e.value, ValueError)
  with pytest.raises(features.ClusterFileError, match='feat_num=8'):
    features.load_clusters(path, expect_feat_num=8)
  (tmp_path / 'junk.npz').write_bytes(b'not a zip')
  with pytest.raises(features.ClusterFileError, match='not an hdgan_jax cluster file'):
    features.load_clusters(str(tmp_path / 'junk.npz'))


def test_fingerprint_stable_and_sensitive(cfg):
  h = architecture.fingerprint(cfg)
  assert h == architecture.fingerprint(dict(reversed(list(cfg.to_dict().items()))))
  assert h == architecture.fingerprint(tiny_model(dtype='bfloat16'))   # dtype ignored
  assert h != architecture.fingerprint(tiny_model(feat_num=4))


def big_scene():
  inst = np.full((12, 20), 7, np.int64)
  for k in range(20):
    inst[(k // 10) * 6:(k // 10) * 6 + 5, (k % 10) * 2] = 26000 + k
  return inst


def test_sampling_is_seeded_and_covers_clusters():
  inst = big_scene()
  a = features.feature_map_from_clusters(inst, clusters3(), feat_num=3, rng=3)
  b = features.feature_map_from_clusters(inst, clusters3(), feat_num=3, rng=3)
  c = features.feature_map_from_clusters(inst, clusters3(), feat_num=3, rng=4)
  assert a.shape == (12, 20, 3) and a.dtype == np.float32
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  centers = clusters3()[26].centers
  for k in range(20):      # each instance is constant and one of its class's centres
    vals = np.unique(a[inst == 26000 + k], axis=0)
    assert len(vals) == 1 and any(np.array_equal(vals[0], r) for r in centers)
  np.testing.assert_array_equal(np.unique(a[inst == 7], axis=0), [[-1, -1, -1]])
  gen = features.feature_map_from_clusters(inst, clusters3(), feat_num=3,
                                           rng=np.random.default_rng(0))
  assert gen.shape == a.shape
  per_sample = [features.sample_choices(inst, clusters3(), rng=(3, s)) for s in (0, 1, 0)]
  assert per_sample[0] == per_sample[2] != per_sample[1]


def test_a_choice_survives_other_instances_changing():
  inst = big_scene()
  before = features.sample_choices(inst, clusters3(), rng=11)
  inst2 = inst.copy()
  inst2[inst2 == 26005] = 7
  after = features.sample_choices(inst2, clusters3(), rng=11)
  assert {k: v for k, v in before.items() if k != 26005} == after


def test_chosen_clusters_and_vectors_are_honoured():
  inst = big_scene()
  out = features.feature_map_from_clusters(
      inst, clusters3(), feat_num=3, choices={26000: 2, 26001: [0.5, 0.25, 0.125]})
  np.testing.assert_array_equal(out[inst == 26000][0], [6, 7, 8])
  np.testing.assert_array_equal(out[inst == 26001][0], [0.5, 0.25, 0.125])
  with pytest.raises(ValueError, match='out of range'):
    features.feature_map_from_clusters(inst, clusters3(), feat_num=3, choices={26000: 4})
  with pytest.raises(ValueError, match='not in the instance map'):
    features.feature_map_from_clusters(inst, clusters3(), feat_num=3, choices={33000: 0})


def test_fallback_for_classes_without_clusters():
  feat, inst = scene()   # classes 7, 23, 26: 23 has no clusters
  out = features.feature_map_from_clusters(inst, clusters3(), feat_num=3, rng=0)
  assert not out[inst == 23].any()
  assert out[inst == 7].min() == -1
  with pytest.raises(ValueError, match='class 23 has no feature clusters'):
    features.feature_map_from_clusters(inst, clusters3(), feat_num=3, fallback='error')
  with pytest.raises(ValueError, match='class 23'):
    features.feature_map_from_clusters(inst, clusters3(), feat_num=3, choices={23: 0})
  plain = {c: v.centers for c, v in clusters3().items()}   # bare centre arrays work too
  np.testing.assert_array_equal(
      features.feature_map_from_clusters(inst, plain, feat_num=3, rng=5),
      features.feature_map_from_clusters(inst, clusters3(), feat_num=3, rng=5))
  del feat


def test_encode_dataset_with_the_real_encoder(cfg):
  encoder = models.make_encoder(cfg)
  size = 2 ** cfg.n_downsample_E * 4
  variables = encoder.init(jax.random.PRNGKey(0), np.zeros((1, size, size, 3)),
                           np.zeros((1, size, size), np.int32))
  encode = jax.jit(lambda im, ins: encoder.apply(variables, im, ins))
  rng = np.random.default_rng(0)
  inst = np.full((2, size, size), 7, np.int32)
  inst[:, :8, :8] = 26000
  inst[1, 8:, 8:] = 26001
  inst[0, 0, -1] = 24000            # one pixel: below the area threshold
  label = np.where(inst >= 1000, inst // 1000, inst)
  batch = {'image': rng.uniform(-1, 1, (2, size, size, 3)).astype(np.float32),
           'inst': inst, 'label': label}
  got = features.encode_dataset(encode, [batch, batch], feat_num=cfg.feat_num, progress=False)
  assert sorted(got) == [7, 26]
  assert got[7].shape == (4, 3) and got[26].shape == (6, 3)
  pooled = np.asarray(encode(batch['image'], inst))
  np.testing.assert_allclose(got[26][0], pooled[0, 0, 0], rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match='feat_num'):
    features.encode_dataset(encode, [batch], feat_num=4, progress=False)
  clusters = features.cluster_features(got, n_clusters=2)
  assert clusters[26].centers.shape == (2, 3) and clusters[26].counts.sum() == 6
