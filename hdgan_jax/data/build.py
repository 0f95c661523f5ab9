r"""tensorflow-datasets: packing any source into ArrayRecord files.

This file owns the ``hdgan_pairs`` dataset builder that packs a configured
source (Cityscapes tree, pix2pixHD folders, colour-coded maps converted to
ids, the demo scenes, another tfds dataset) into ArrayRecord files for fast
random access. Reading them (or tfds' own ``cityscapes``) is
:class:`~hdgan_jax.data.tfds_source.TfdsSource`'s job, re-exported here as
``build.TfdsSource``. Maps are stored as PNG: label ids
as 8-bit (16-bit when ``label_nc > 256``), instance ids as 16-bit, so nothing
is lost; photos keep their original PNG/JPEG bytes when they are RGB files.

  python -m hdgan_jax.data.build --config=experiments/cityscapes.py \
      --config.data.root=/data/cityscapes --out=/data/packed --splits=train,val

then train with ``--config.data.source=tfds --config.data.tfds_name=hdgan_pairs
--config.data.tfds_data_dir=/data/packed``. Lossy (JPEG) label or instance
maps are refused as in training (``data.allow_lossy_maps`` packs them anyway).
"""

import io
import os
import re
import shutil

from absl import flags
from absl import logging
from ml_collections import config_flags
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from hdgan_jax import console
from hdgan_jax.data import sources
from hdgan_jax.data.errors import DataError
from hdgan_jax.data.tfds_source import TfdsSource, find_prepared  # pylint: disable=unused-import

NAME = 'hdgan_pairs'
PACK_VERSION = '1.0.0'


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


def pack(config, out_dir, splits=None, overwrite=False) -> str:
  """Packs ``config``'s source (one split per phase) into ``out_dir``; returns its path."""
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
  builder = HdganPairs(spec=spec, splits=srcs, data_dir=out_dir, file_format='array_record')
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      try_download_gcs=False))
  return target


FLAGS = flags.FLAGS


def _build() -> None:
  config = FLAGS.config
  splits = [s for s in FLAGS.splits.split(',') if s] if FLAGS.splits else None
  path = pack(config, FLAGS.out, splits, FLAGS.overwrite)
  print(f'packed into {path}\ntrain on it with:\n  --config.data.source=tfds '
        f'--config.data.tfds_name={NAME} --config.data.tfds_data_dir={FLAGS.out}')


main = console.tool_main(_build)


def _define_flags() -> None:
  config_flags.DEFINE_config_file(
      'config', None, 'Experiment file (e.g. experiments/cityscapes.py); its data.* options '
      'choose what is packed, e.g. --config.data.root=/data/cityscapes.', lock_config=True)
  flags.DEFINE_string('out', None, 'tfds data_dir to write; the dataset lands in '
                      f'OUT/{NAME}/{PACK_VERSION}/.')
  flags.DEFINE_string('splits', '', 'Comma-separated phases to pack as splits (e.g. '
                      'train,val); default: data.phase.')
  flags.DEFINE_bool('overwrite', False, 'Replace an existing packed dataset in --out.')
  flags.DEFINE_bool('verbose', False, 'Library logs and tracebacks on the terminal.')
  flags.mark_flags_as_required(['config', 'out'])


def run() -> None:
  """Console script ``hdgan-data-build`` (flags are defined here, not on import)."""
  console.run_tool(main, _define_flags)


if __name__ == '__main__':
  run()
