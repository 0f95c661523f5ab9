"""The grain pipeline: batches, epochs, seeds, resume, multi-process shards, eval and demo."""

import json
import os

import numpy as np
import pytest

from hdgan_jax.data import pipeline, preprocess, sources
from hdgan_jax.data.sources import DataError
from test_data_fixtures import SAMPLES, SUFFIX, make_config, write_folder


def take(it, k):
  return [next(it) for _ in range(k)]


def assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert sorted(x) == sorted(y)
    for key in x:
      np.testing.assert_array_equal(x[key], y[key], err_msg=key)


@pytest.fixture
def folder(tmp_path):
  write_folder(tmp_path, n=5, feat=True)
  return tmp_path


def test_batch_contents_and_dtypes(folder):
  c = make_config(folder, load_features=True, resize_or_crop='scale_width_and_crop',
                  loadSize=48, fineSize=16)
  c.batch_size = 2
  b = next(pipeline.make_train_iterator(c))
  assert sorted(b) == ['feat', 'image', 'inst', 'label']
  assert b['label'].shape == (2, 16, 16) and b['label'].dtype == np.int32
  assert b['inst'].dtype == np.uint16 and b['image'].dtype == np.float32
  assert b['image'].shape == (2, 16, 16, 3) and b['feat'].shape == (2, 16, 16, 3)
  assert -1 <= b['image'].min() and b['image'].max() <= 1
  assert b['label'].max() < 35


def test_no_instance_omits_inst(folder):
  c = make_config(folder)
  c.model.no_instance = True
  assert 'inst' not in next(pipeline.make_train_iterator(c))
  assert not pipeline.requires_no_instance(c)


def test_rgb_inputs(tmp_path):
  write_folder(tmp_path, n=2, rgb_inputs=True)
  c = make_config(tmp_path)
  c.model.label_nc = 0
  b = next(pipeline.make_train_iterator(c))
  assert b['label'].shape == (1, 32, 64, 3) and b['label'].dtype == np.float32


def test_epochs_cover_the_data_and_reshuffle(folder):
  c = make_config(folder, no_flip=True)
  c.batch_size = 2                                  # 5 examples: 2 steps per epoch, 1 dropped
  truth = sources.make_source(c)
  ids = {int(truth[i]['inst'].sum()): i for i in range(5)}
  seq = [ids[int(x.sum())] for b in take(pipeline.make_train_iterator(c), 8) for x in b['inst']]
  epochs = [seq[i:i + 4] for i in range(0, 16, 4)]
  assert all(len(set(e)) == 4 for e in epochs)      # no repeats inside an epoch
  assert len({tuple(e) for e in epochs}) > 1        # a new order each epoch


def test_seed_decides_order_and_augmentation(folder):
  c = make_config(folder, resize_or_crop='crop', fineSize=16)
  a = take(pipeline.make_train_iterator(c), 4)
  assert_batches_equal(a, take(pipeline.make_train_iterator(c), 4))
  c.seed = 1
  b = take(pipeline.make_train_iterator(c), 4)
  assert any(not np.array_equal(x['image'], y['image']) for x, y in zip(a, b))


def test_resume_in_process(folder):
  c = make_config(folder, resize_or_crop='crop', fineSize=16)
  c.batch_size = 2
  it = pipeline.make_train_iterator(c)
  take(it, 3)
  state = json.loads(json.dumps(it.get_state()))
  rest = take(it, 5)
  fresh = pipeline.make_train_iterator(c)
  fresh.set_state(state)
  assert_batches_equal(rest, take(fresh, 5))


def test_resume_with_worker_processes(folder):
  c = make_config(folder, resize_or_crop='crop', fineSize=16, num_workers=2)
  it = pipeline.make_train_iterator(c)
  first = take(it, 3)
  state = json.loads(json.dumps(it.get_state()))
  rest = take(it, 4)
  it.close()
  fresh = pipeline.make_train_iterator(c)
  fresh.set_state(state)
  resumed = take(fresh, 4)
  fresh.close()
  assert_batches_equal(rest, resumed)
  c.data.num_workers = 0   # workers change nothing but speed
  assert_batches_equal(first + rest, take(pipeline.make_train_iterator(c), 7))


def test_processes_split_each_global_batch(folder):
  c = make_config(folder, resize_or_crop='crop', fineSize=16)
  c.batch_size = 4
  whole = take(pipeline.make_train_iterator(c), 3)
  parts = [take(pipeline.make_train_iterator(c, process_index=p, process_count=2), 3)
           for p in range(2)]
  for step in range(3):
    for key in whole[step]:
      joined = np.concatenate([parts[0][step][key], parts[1][step][key]])
      np.testing.assert_array_equal(joined, whole[step][key])
  with pytest.raises(ValueError, match='multiple'):
    pipeline.make_train_iterator(c, process_index=0, process_count=3)


def test_batch_larger_than_dataset(folder):
  c = make_config(folder)
  c.batch_size = 6
  with pytest.raises(DataError, match='fewer than batch_size'):
    pipeline.make_train_iterator(c)


def test_size_not_a_multiple_of_the_generator(folder):
  c = make_config(folder, resize_or_crop='scale_width', loadSize=40)  # 40x20, multiple 4 -> ok
  c.model.netG, c.model.n_local_enhancers = 'local', 1                # multiple 8 -> 40x20 fails
  with pytest.raises(DataError, match='multiples of 8'):
    pipeline.make_train_iterator(c)


def test_eval_examples_are_the_first_in_order_unflipped(folder):
  c = make_config(folder)
  src = sources.make_source(c)
  ev = pipeline.make_eval_examples(c, 3)
  assert ev['label'].shape == (3, 32, 64)
  for i in range(3):
    np.testing.assert_array_equal(ev['label'][i], src[i]['label'])
    np.testing.assert_array_equal(ev['image'][i], preprocess.to_unit_range(src[i]['image']))
  assert pipeline.make_eval_examples(c, 99)['label'].shape[0] == pipeline.dataset_size(c) == 5


def test_load_pair_matches_eval(folder):
  c = make_config(folder, resize_or_crop='scale_width', loadSize=32)
  name = 'aachen_000001_000019'
  pair = pipeline.load_pair(os.path.join(folder, 'train_label', name + SUFFIX['label']),
                            os.path.join(folder, 'train_inst', name + SUFFIX['inst']), c)
  ev = pipeline.make_eval_examples(c, 2)
  assert pair['label'].shape == (1, 16, 32)
  np.testing.assert_array_equal(pair['label'][0], ev['label'][1])
  np.testing.assert_array_equal(pair['inst'][0], ev['inst'][1])
  with pytest.raises(DataError, match='no_instance'):
    pipeline.load_pair(os.path.join(folder, 'train_label', name + SUFFIX['label']), None, c)


@pytest.mark.skipif(not os.path.isdir(SAMPLES), reason='shared Cityscapes samples absent')
def test_real_samples_default_preprocessing():
  c = make_config(SAMPLES, resize_or_crop='scale_width', loadSize=1024)
  c.model.netG = 'local'
  b = next(pipeline.make_train_iterator(c))
  assert b['label'].shape == (1, 512, 1024) and b['image'].shape == (1, 512, 1024, 3)
  assert b['inst'].max() > 1000
  # Nearest resizing keeps the Cityscapes encoding: thing ids still agree with the labels.
  things = b['inst'] >= 1000
  np.testing.assert_array_equal(b['inst'][things] // 1000, b['label'][things])


def test_demo_source():
  demo = pytest.importorskip('hdgan_jax.data.demo')
  c = make_config(source='demo', demo_num_images=3, demo_height=32, demo_width=64)
  c.seed = 3
  assert pipeline.dataset_size(c) == 3
  ev = pipeline.make_eval_examples(c, 2)
  scene = demo.render_scene(1, height=32, width=64, seed=3)
  np.testing.assert_array_equal(ev['label'][1], scene['label'])
  np.testing.assert_array_equal(ev['inst'][1], scene['inst'])
  np.testing.assert_array_equal(ev['image'][1], preprocess.to_unit_range(scene['image']))
  b = next(pipeline.make_train_iterator(c))
  assert b['label'].shape == (1, 32, 64) and b['inst'].dtype == np.uint16


def test_iterate_eval_batches_covers_everything_in_order(folder):
  c = make_config(folder)
  batches = list(pipeline.iterate_eval_batches(c, batch_size=2))
  assert [b['label'].shape[0] for b in batches] == [2, 2, 1]
  ev = pipeline.make_eval_examples(c, 5)
  for key in ev:
    np.testing.assert_array_equal(np.concatenate([b[key] for b in batches]), ev[key])
