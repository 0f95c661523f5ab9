r"""tensorflow-datasets: packing any source into ArrayRecord files, and reading them.

This file owns everything tfds: the ``hdgan_pairs`` dataset builder that packs
a configured source (Cityscapes tree, pix2pixHD folders, colour-coded maps
converted to ids, the demo scenes, another tfds dataset) into ArrayRecord
files for fast random access, and :class:`TfdsSource`, which reads those or
tfds' own ``cityscapes`` for the pipeline. Maps are stored as PNG: label ids
as 8-bit (16-bit when ``label_nc > 256``), instance ids as 16-bit, so nothing
is lost; photos keep their original PNG/JPEG bytes when they are RGB files.

  python -m hdgan_jax.data.build --config=experiments/cityscapes.py \
      --config.data.root=/data/cityscapes --out=/data/packed --splits=train,val

then train with ``--config.data.source=tfds --config.data.tfds_name=hdgan_pairs
--config.data.tfds_data_dir=/data/packed``.
"""

import io
import os
import re
import shutil

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags
import numpy as np
from PIL import Image

from hdgan_jax.data import sources
from hdgan_jax.data.sources import DataError, check_sizes, read_inst, read_label, read_rgb

NAME = 'hdgan_pairs'
PACK_VERSION = '1.0.0'


def _version_dirs(folder):
  if not os.path.isdir(folder):
    return []
  return sorted((v for v in os.listdir(folder) if re.fullmatch(r'\d+\.\d+\.\d+', v)
                 and os.path.isfile(os.path.join(folder, v, 'dataset_info.json'))),
                key=lambda v: tuple(int(x) for x in v.split('.')))


def find_prepared(data_dir, name):
  """Directory of a prepared tfds dataset ``name`` ('ds', 'ds/config', 'ds:1.0.0'), or None."""
  name, _, version = name.partition(':')
  base = os.path.join(data_dir, *name.split('/'))
  versions = _version_dirs(base)
  if not versions and os.path.isdir(base):  # a dataset with configs: pick one
    configs = [c for c in sorted(os.listdir(base)) if _version_dirs(os.path.join(base, c))]
    if configs:
      base = os.path.join(base, 'semantic_segmentation' if 'semantic_segmentation' in configs
                          else configs[0])
      versions = _version_dirs(base)
  if version and version in versions:
    return os.path.join(base, version)
  return os.path.join(base, versions[-1]) if versions and not version else None


class TfdsSource:
  """A prepared tfds dataset read by random access (ArrayRecord files).

  Two feature layouts are understood: the one written by ``hdgan_jax.data.build``
  (``label``, ``inst``, ``image``, ``feat``, ``key``) and tfds' ``cityscapes``
  (``segmentation_label``, ``image_left``, ``image_id``; it has no instance maps).
  Images are decoded here with PIL, exactly as files are.
  """

  def __init__(self, config):
    d = config.data
    self.config, self.tfds_name = config, d.tfds_name
    self.data_dir = d.tfds_data_dir or os.environ.get(
        'TFDS_DATA_DIR', os.path.join(os.path.expanduser('~'), 'tensorflow_datasets'))
    self.path = find_prepared(self.data_dir, self.tfds_name)
    if self.path is None:
      raise DataError(
          f'no prepared tfds dataset {self.tfds_name!r} under {self.data_dir} (data.tfds_name, '
          'data.tfds_data_dir). Pack one with `python -m hdgan_jax.data.build --config=... '
          '--out=DIR` and set --config.data.tfds_name=hdgan_pairs --config.data.tfds_data_dir=DIR,'
          " or prepare tfds' cityscapes with file_format='array_record'.")
    self._ds = None
    ds = self._open()
    self._len = len(ds)
    feats = set(self._features)
    if {'segmentation_label', 'image_left'} <= feats:
      self.keys = {'label': 'segmentation_label', 'image': 'image_left', 'key': 'image_id'}
    elif {'label', 'image'} <= feats:
      self.keys = {k: k for k in ('label', 'image', 'inst', 'feat', 'key') if k in feats}
    else:
      raise DataError(f'{self.path}: features {sorted(feats)} are neither those of '
                      "hdgan_jax.data.build (label, image, inst) nor of tfds' cityscapes")
    self.has_inst = 'inst' in self.keys
    if not self.has_inst and not config.model.no_instance:
      from absl import logging  # pylint: disable=import-outside-toplevel
      logging.warning('tfds dataset %s has no instance maps: instance input must be turned off '
                      '(--config.model.no_instance=True; pipeline.requires_no_instance() says '
                      'so to the trainer).', self.tfds_name)
    if config.data.load_features and 'feat' not in self.keys:
      raise DataError(f'{self.path} has no feature maps; set --config.data.load_features=False '
                      'or pack the dataset with them')

  def _open(self):
    if self._ds is None:
      import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
      builder = tfds.builder_from_directory(self.path)
      splits = list(builder.info.splits)
      split = self.config.data.phase
      if split not in splits and split == 'val' and 'validation' in splits:
        split = 'validation'
      if split not in splits:
        raise DataError(f'{self.path} has splits {splits}, not data.phase={split!r}; set '
                        '--config.data.phase to one of them')
      features = dict(builder.info.features)
      self._features = list(features)
      skip = {k: tfds.decode.SkipDecoding() for k, f in features.items()
              if isinstance(f, tfds.features.Image)}
      try:
        self._ds = builder.as_data_source(split=split, decoders=skip)
      except (NotImplementedError, ValueError) as e:
        raise DataError(f'{self.path} cannot be read by random access ({e}); prepare it '
                        "with file_format='array_record' (python -m hdgan_jax.data.build "
                        'does)') from None
    return self._ds

  def __getstate__(self):
    return {k: v for k, v in self.__dict__.items() if k != '_ds'} | {'_ds': None}

  def __len__(self):
    return self._len

  def name(self, index):
    return f'{self.path} [{self.config.data.phase}] example {index}'

  def __getitem__(self, index):
    rec = self._open()[int(index)]
    where = self.name(index)
    if 'key' in self.keys:
      key = rec[self.keys['key']]
      where += f' ({key.decode() if isinstance(key, bytes) else key})'
    out = {'name': where, 'label': read_label(rec[self.keys['label']], self.config, where)}
    if out['label'].ndim == 3 and out['label'].shape[-1] == 1 and self.config.model.label_nc:
      out['label'] = out['label'][..., 0]
    if self.has_inst and not self.config.model.no_instance:
      out['inst'] = read_inst(rec['inst'], where)
    out['image'] = read_rgb(rec[self.keys['image']], where)
    if self.config.data.load_features:
      out['feat'] = read_rgb(rec['feat'], where)
    check_sizes(out, where)
    return out


# ---------------------------------------------------------------- packing

def spec_of(config, source) -> dict:
  """What a packed dataset holds, from the model options and the source."""
  m = config.model
  if m.label_nc > 65536:
    raise DataError(f'model.label_nc={m.label_nc}: label ids are stored as 16-bit PNG')
  return {'label_nc': int(m.label_nc),
          'label_channels': int(m.input_nc) if m.label_nc == 0 else 1,
          'label_dtype': 'uint8' if m.label_nc <= 256 else 'uint16',
          'inst': bool(source.has_inst and not m.no_instance),
          'feat': bool(config.data.load_features)}


def _png(arr, level):
  buf = io.BytesIO()
  Image.fromarray(arr[..., 0] if arr.ndim == 3 and arr.shape[-1] == 1 else arr).save(
      buf, format='PNG', compress_level=level)
  return buf.getvalue()


def _file_source(source):
  while isinstance(source, sources.LimitedSource):
    source = source.source
  return source if isinstance(source, sources.FileSource) else None


def _photo_bytes(source, index, arr):
  """The photo file's own bytes when it is an RGB PNG/JPEG, else ``arr`` as PNG."""
  source = _file_source(source)
  if source is not None:
    path = source.examples[index].image
    with Image.open(path) as img:
      if img.mode == 'RGB' and img.format in ('PNG', 'JPEG'):
        with open(path, 'rb') as f:
          return f.read()
  return _png(arr, 1)


def encode_example(source, index, spec) -> dict:
  """One example of ``source`` as the packed features (PNG bytes)."""
  raw = source[index]
  label = raw['label'].astype(spec['label_dtype']) if spec['label_nc'] else raw['label']
  files = _file_source(source)
  out = {'key': files.examples[index].key if files else raw['name'], 'label': _png(label, 6),
         'image': _photo_bytes(source, index, raw['image'])}
  if spec['inst']:
    out['inst'] = _png(raw['inst'], 6)
  if spec['feat']:
    out['feat'] = _png(raw['feat'], 6)
  return out


_BUILDER = []


def builder_class():
  """The tfds builder class (created on first use: importing this file stays light)."""
  if _BUILDER:
    return _BUILDER[0]
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

  class HdganPairs(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Paired label / instance / photo (/ feature) maps packed by hdgan_jax."""

    __module__ = __name__.replace('__main__', 'hdgan_jax.data.build')  # tfds reads the package

    VERSION = tfds.core.Version(PACK_VERSION)
    RELEASE_NOTES = {PACK_VERSION: 'Packed by python -m hdgan_jax.data.build.'}
    # No checksums or metadata files live next to this code; None also keeps tfds 4.9
    # from needing the (undeclared) importlib_resources package to look for them.
    code_path = None

    def __init__(self, *, spec, splits, **kwargs):
      self._spec, self._splits = spec, splits
      super().__init__(**kwargs)

    def _info(self):
      s = self._spec
      image = tfds.features.Image
      features = {
          'key': tfds.features.Text(),
          'label': image(shape=(None, None, s['label_channels']),
                         dtype=np.dtype(s['label_dtype'] if s['label_nc'] else 'uint8'),
                         encoding_format='png'),
          # No fixed encoding: RGB PNG and JPEG photos are stored as they are.
          'image': image(shape=(None, None, 3), dtype=np.uint8),
      }
      if s['inst']:
        features['inst'] = image(shape=(None, None, 1), dtype=np.uint16, encoding_format='png')
      if s['feat']:
        features['feat'] = image(shape=(None, None, 3), dtype=np.uint8, encoding_format='png')
      return self.dataset_info_from_configs(
          description='Label maps, instance maps and photos for pix2pixHD (hdgan_jax).',
          features=tfds.features.FeaturesDict(features), disable_shuffling=True,
          metadata=tfds.core.MetadataDict(s))

    def _split_generators(self, dl_manager):
      del dl_manager
      return {split: self._generate_examples(src) for split, src in self._splits.items()}

    def _generate_examples(self, source):
      for i in range(len(source)):
        yield i, encode_example(source, i, self._spec)

  _BUILDER.append(HdganPairs)
  return HdganPairs


def pack(config, out_dir, splits=None, overwrite=False) -> str:
  """Packs ``config``'s source (one split per phase) into ``out_dir``; returns its path."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  phases = list(splits or [config.data.phase])
  srcs = {}
  for phase in phases:
    if not re.fullmatch(r'[A-Za-z0-9_]+', phase):
      raise ValueError(f'split name {phase!r}: use letters, digits and _')
    cfg = config.copy_and_resolve_references()
    cfg.data.phase = phase
    srcs[phase] = sources.make_source(cfg)
    logging.info('split %s: %d examples from data.source=%s', phase, len(srcs[phase]),
                 config.data.source)
  spec = spec_of(config, next(iter(srcs.values())))
  if not spec['inst'] and not config.model.no_instance:
    logging.warning('the source has no instance maps; the packed dataset has none either')
  target = os.path.join(out_dir, NAME, PACK_VERSION)
  if os.path.exists(target):
    if not overwrite:
      raise DataError(f'{target} already exists; pass --overwrite to replace it or choose '
                      'another --out')
    shutil.rmtree(target)
  builder = builder_class()(spec=spec, splits=srcs, data_dir=out_dir, file_format='array_record')
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      try_download_gcs=False))
  return target


FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  config = FLAGS.config
  splits = [s for s in FLAGS.splits.split(',') if s] if FLAGS.splits else None
  path = pack(config, FLAGS.out, splits, FLAGS.overwrite)
  print(f'packed into {path}\ntrain on it with:\n  --config.data.source=tfds '
        f'--config.data.tfds_name={NAME} --config.data.tfds_data_dir={FLAGS.out}')


if __name__ == '__main__':
  config_flags.DEFINE_config_file(
      'config', None, 'Experiment file (e.g. experiments/cityscapes.py); its data.* options '
      'choose what is packed, e.g. --config.data.root=/data/cityscapes.', lock_config=True)
  flags.DEFINE_string('out', None, 'tfds data_dir to write; the dataset lands in '
                      f'OUT/{NAME}/{PACK_VERSION}/.')
  flags.DEFINE_string('splits', '', 'Comma-separated phases to pack as splits (e.g. '
                      'train,val); default: data.phase.')
  flags.DEFINE_bool('overwrite', False, 'Replace an existing packed dataset in --out.')
  flags.mark_flags_as_required(['config', 'out'])
  app.run(main)
