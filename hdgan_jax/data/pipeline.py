"""The training input pipeline (grain), evaluation examples and generation input.

This file owns the order in which examples are seen and how batches are cut:

* Every epoch is a permutation of the dataset from grain's index shuffle with
  a seed derived from ``config.seed`` and the epoch; as in the original, the
  last partial global batch of an epoch is dropped, so a global batch never
  spans two epochs.
* Crop and flip come from grain's ``random_map``: a per-example RNG keyed by
  the seed and the example's position in the global stream, so a crop is
  reproducible and differs between epochs.
* The global stream is cut into per-process chunks of ``batch_size /
  process_count`` examples; process ``p`` takes chunks ``p, p + P, ...``, so
  the global batch of step ``s`` is the same for any number of processes and
  each process decodes only its own share.
* ``data.num_workers`` processes decode in parallel (``mp_prefetch``), each
  buffering ``data.prefetch`` batches. Maps stay uint8/uint16 until the batch
  is assembled.

The iterator is grain's ``DatasetIterator``: ``get_state()`` returns a
JSON-serialisable dict and ``set_state(state)`` resumes at exactly the next
batch an uninterrupted run would have produced.
"""

import dataclasses

from absl import flags
import grain
import numpy as np

from hdgan_jax import models
from hdgan_jax.data import palette as palette_lib
from hdgan_jax.data import preprocess, sources
from hdgan_jax.data.errors import DataError


@dataclasses.dataclass(frozen=True)
class Prep:
  """The preprocessing options a worker needs (a small picklable copy of data.*)."""
  resize_or_crop: str
  loadSize: int
  fineSize: int
  no_flip: bool
  multiple: int
  rgb_labels: bool

  def __getitem__(self, key):
    return getattr(self, key)


def _multiple(config) -> int:
  return int(models.required_multiple(config.model))


def make_prep(config) -> Prep:
  """Validated preprocessing options; also checks options that the data must fit."""
  d = config.data
  preprocess.validate(d)
  if d.load_features and config.model.feat_num != 3:
    raise DataError(f'data.load_features reads RGB feature maps (3 channels) but '
                    f'model.feat_num={config.model.feat_num}; set --config.model.feat_num=3')
  return Prep(d.resize_or_crop, int(d.loadSize), int(d.fineSize), bool(d.no_flip),
              _multiple(config), config.model.label_nc == 0)


def _seed(seed, stream: int) -> int:
  """A 32-bit seed for one random stream (0: shuffle, 1: augmentation)."""
  return int(np.random.SeedSequence([int(seed) % 2**63, stream]).generate_state(1)[0])


def check_output_size(prep: Prep, size, where) -> tuple:
  """Size (W, H) after preprocessing; it must divide by the generator's multiple."""
  w, h = preprocess.output_size(prep, size, prep.multiple)
  if w % prep.multiple or h % prep.multiple or min(w, h) <= 0:
    raise DataError(
        f'{where}: a {size[0]}x{size[1]} example becomes {w}x{h} with data.resize_or_crop='
        f'{prep.resize_or_crop!r} (loadSize={prep.loadSize}, fineSize={prep.fineSize}), but '
        f'the generator needs multiples of {prep.multiple} (models.required_multiple). Use '
        "--config.data.resize_or_crop=none (rounds sizes) or choose loadSize/fineSize "
        f'so the result divides by {prep.multiple}.')
  return w, h


class _Load:
  """Dataset index -> raw example (runs in the worker processes)."""

  def __init__(self, source):
    self.source = source

  def __call__(self, index):
    return self.source[int(index)]


class _Augment:
  """Raw example + per-example RNG -> cropped/flipped maps (still integer)."""

  def __init__(self, prep: Prep, train: bool = True):
    self.prep, self.train = prep, train

  def __call__(self, example, rng=None):
    h, w = example['label'].shape[:2]
    if self.train:
      params = preprocess.sample_params(self.prep, (w, h), rng)
    else:
      params = preprocess.eval_params(self.prep, (w, h))
    out = preprocess.apply(example, params, self.prep, self.prep.multiple,
                           rgb_labels=self.prep.rgb_labels)
    oh, ow = out['label'].shape[:2]
    if oh % self.prep.multiple or ow % self.prep.multiple:
      check_output_size(self.prep, (w, h), example['name'])  # raises, naming the file
    return out


class _Collate:
  """A list of examples -> one dict of stacked maps, still uint8 / uint16.

  Workers send these (a quarter of the bytes of float32 photos) and
  :class:`_Finalize` converts them in the consuming process.
  """

  def __init__(self, prep: Prep):
    self.prep = prep

  def __call__(self, examples):
    shapes = {e['name']: e['label'].shape[:2] for e in examples}
    if len(set(shapes.values())) > 1:
      listed = ', '.join(f'{n}: {w}x{h}' for n, (h, w) in shapes.items())
      raise DataError(f'examples of one batch have different sizes after preprocessing '
                      f'({listed}); use a crop mode (data.resize_or_crop=scale_width_and_crop '
                      'or resize_and_crop) or batch_size 1 for datasets of mixed sizes')
    return preprocess.stack(examples, sorted(k for k in examples[0] if k != 'name'))


class _Finalize:
  """Stacked integer maps -> model-ready dtypes (label int32, photos float32 in [-1, 1])."""

  def __init__(self, prep: Prep):
    self.rgb_labels = prep.rgb_labels

  def __call__(self, batch):
    return preprocess.finalize(batch, rgb_labels=self.rgb_labels)


def _output_keys(config, source):
  keys = {'label', 'image'}
  if not config.model.no_instance and source.has_inst:
    keys.add('inst')
  if config.data.load_features:
    keys.add('feat')
  return keys


class _Select:
  def __init__(self, keys):
    self.keys = frozenset(keys)

  def __call__(self, example):
    return {k: v for k, v in example.items() if k in self.keys or k == 'name'}


def dataset_size(config, source=None) -> int:
  """Number of examples of the configured source (after ``data.max_dataset_size``).

  Every function here takes an optional ``source`` (``sources.make_source``)
  so a caller that needs several of them scans the data once.
  """
  return len(source if source is not None else sources.make_source(config))


def requires_no_instance(config, source=None) -> bool:
  """True when the source has no instance maps (tfds' cityscapes): set model.no_instance.

  The trainer calls this before building the model; the source logs a warning too.
  """
  return not (source if source is not None else sources.make_source(config)).has_inst


def make_dataset(config, *, process_index=0, process_count=1, source=None):
  """The per-process grain ``MapDataset`` of integer batches (infinite), and its Prep."""
  if process_count < 1 or not 0 <= process_index < process_count:
    raise ValueError(f'process_index={process_index} must be in [0, process_count='
                     f'{process_count})')
  global_batch = int(config.batch_size)
  if global_batch < 1 or global_batch % process_count:
    raise ValueError(f'batch_size={global_batch} must be a positive multiple of the '
                     f'{process_count} processes; set --config.batch_size accordingly')
  source = source if source is not None else sources.make_source(config)
  n = len(source)
  if n < global_batch:
    raise DataError(f'the dataset has {n} examples, fewer than batch_size={global_batch}; '
                    'lower --config.batch_size or add data')
  prep = make_prep(config)
  first = source[0]
  check_output_size(prep, first['label'].shape[1::-1], first['name'])
  steps_per_epoch = n // global_batch
  order = grain.MapDataset.range(n).shuffle(seed=_seed(config.seed, 0))
  order = order[:steps_per_epoch * global_batch].repeat()
  ds = order.map(_Load(source)).map(_Select(_output_keys(config, source)))
  ds = ds.random_map(_Augment(prep, train=True), seed=_seed(config.seed, 1))
  per_process = global_batch // process_count
  ds = ds.batch(per_process, drop_remainder=True, batch_fn=_Collate(prep))
  return ds[process_index::process_count], prep


def _parse_absl_flags():
  """grain's worker processes read its absl flags; outside absl.app use their defaults."""
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


def make_train_iterator(config, *, process_index=0, process_count=1, source=None):
  """Iterator over this process's share of each global batch, forever.

  ``next(it)`` gives ``label`` (B, H, W) int32 (or (B, H, W, input_nc) float32
  in [-1, 1] when ``label_nc == 0``), ``inst`` (B, H, W) uint16 (unless
  ``model.no_instance`` or the source has none), ``image`` (B, H, W, 3) float32
  in [-1, 1], and ``feat`` (B, H, W, 3) float32 with ``data.load_features``;
  B = batch_size / process_count. ``it.get_state()`` (a JSON-serialisable
  dict) / ``it.set_state(s)`` checkpoint the position; ``it.close()`` stops
  the worker processes.
  """
  d = config.data
  if d.num_workers < 0 or d.prefetch < 0:
    raise ValueError(f'data.num_workers={d.num_workers} and data.prefetch={d.prefetch} must '
                     'be >= 0')
  ds, prep = make_dataset(config, process_index=process_index, process_count=process_count,
                          source=source)
  read = grain.ReadOptions(num_threads=1 if d.prefetch else 0,
                           prefetch_buffer_size=max(int(d.prefetch), 1))
  it = ds.to_iter_dataset(read)
  if d.num_workers > 0:
    _parse_absl_flags()
    it = it.mp_prefetch(grain.MultiprocessingOptions(
        num_workers=int(d.num_workers), per_worker_buffer_size=max(int(d.prefetch), 1)))
  return iter(it.map(_Finalize(prep)))


def make_eval_examples(config, n: int, source=None) -> dict:
  """The first ``n`` examples in dataset order, test-time preprocessing, stacked.

  No flip, and the centre crop in the crop modes. ``n`` larger than the
  dataset gives the whole dataset.
  """
  source = source if source is not None else sources.make_source(config)
  n = min(int(n), len(source))
  if n < 1:
    raise ValueError(f'make_eval_examples needs n >= 1, got {n}')
  prep = make_prep(config)
  select, augment = _Select(_output_keys(config, source)), _Augment(prep, train=False)
  examples = []
  for i in range(n):
    raw = select(source[i])
    check_output_size(prep, raw['label'].shape[1::-1], raw['name'])
    examples.append(augment(raw))
  return _Finalize(prep)(_Collate(prep)(examples))


def iterate_eval_batches(config, batch_size: int = 1, source=None):
  """Every example once, in dataset order, test-time preprocessing, in batches.

  The last batch may be smaller. Decoding uses ``data.num_workers`` processes
  like training. Yields the same dicts as :func:`make_train_iterator`.
  """
  source = source if source is not None else sources.make_source(config)
  prep = make_prep(config)
  first = source[0]
  check_output_size(prep, first['label'].shape[1::-1], first['name'])
  ds = grain.MapDataset.range(len(source)).map(_Load(source))
  ds = ds.map(_Select(_output_keys(config, source))).map(_Augment(prep, train=False))
  ds = ds.batch(int(batch_size), batch_fn=_Collate(prep))
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=2))
  if config.data.num_workers > 0:
    _parse_absl_flags()
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=int(config.data.num_workers)))
  yield from it.map(_Finalize(prep))


def load_pair(label_path, inst_path, config, *, image_path=None, feat_path=None) -> dict:
  """A user's label (+ instance) map preprocessed as at test time, batch of 1.

  Reads ids (or colours with ``data.palette``), checks them against
  ``model.label_nc``, and applies the test-time resize/round of the original
  (no random crop, no flip). ``inst_path`` may be None with
  ``model.no_instance``; ``image_path`` and ``feat_path`` add those maps.
  Lossy (JPEG) label/instance maps raise DataError unless ``data.allow_lossy_maps``.
  """
  raw = {'name': label_path, 'label': sources.read_label(
      label_path, config, label_path, palette_lib.load_palette(config.data.palette))}
  if not config.model.no_instance:
    if inst_path is None:
      raise DataError(f'{label_path}: no instance map given; pass its *_instanceIds.png or '
                      'set --config.model.no_instance=True')
    raw['inst'] = sources.read_inst(inst_path, inst_path,
                                    allow_lossy=config.data.get('allow_lossy_maps', False))
  if image_path is not None:
    raw['image'] = sources.read_rgb(image_path, image_path)
  if feat_path is not None:
    raw['feat'] = sources.read_rgb(feat_path, feat_path)
  sources.check_sizes(raw, ' / '.join(str(p) for p in (label_path, inst_path, image_path,
                                                       feat_path) if p is not None))
  prep = make_prep(config)
  check_output_size(prep, raw['label'].shape[1::-1], label_path)
  return _Finalize(prep)(_Collate(prep)([_Augment(prep, train=False)(raw)]))
