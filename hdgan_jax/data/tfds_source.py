"""Reading prepared tensorflow-datasets datasets by random access, for the pipeline.

:class:`TfdsSource` is the ``data.source='tfds'`` source: it opens a dataset
packed by ``python -m hdgan_jax.data.build`` (ArrayRecord files) or tfds' own
``cityscapes`` and decodes its PNG/JPEG bytes with the same decoders as files
(``data.decode``). It lives apart from the packer so that the source registry
(``data.sources``) can import it at the top without importing the packer, which
itself builds on the registry.
"""

import os
import re

from absl import logging
import tensorflow_datasets as tfds

from hdgan_jax.data.decode import check_sizes, read_inst, read_label, read_rgb
from hdgan_jax.data.errors import DataError


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
      logging.warning('tfds dataset %s has no instance maps: instance input must be turned off '
                      '(--config.model.no_instance=True; pipeline.requires_no_instance() says '
                      'so to the trainer).', self.tfds_name)
    if config.data.load_features and 'feat' not in self.keys:
      raise DataError(f'{self.path} has no feature maps; set --config.data.load_features=False '
                      'or pack the dataset with them')

  def _open(self):
    if self._ds is None:
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
