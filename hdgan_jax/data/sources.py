"""Where examples come from: file layouts, the demo scenes and tfds datasets.

This file owns finding and pairing the files of a dataset and decoding one
example into raw numpy maps at their stored size, so that the pipeline, the
packer (``build.py``) and the data check (``check.py``) read data the same way:

* ``'cityscapes'``: Cityscapes' own tree, ``leftImg8bit/{phase}/{city}/*_leftImg8bit.png``
  with ``gtFine/{phase}/{city}/*_gtFine_labelIds.png`` / ``*_instanceIds.png``
  (``*_gtFine_color.png`` when ``data.palette`` is set).
* ``'folder'``: pix2pixHD's ``{phase}_label``, ``{phase}_inst``, ``{phase}_img``,
  ``{phase}_feat`` folders, or ``{phase}_A`` / ``{phase}_B`` when ``label_nc == 0``.
* ``'tfds'``: a dataset packed by ``python -m hdgan_jax.data.build``, or tfds'
  own ``cityscapes`` (no instance maps), read by ``tfds_source.TfdsSource``.
* ``'demo'``: scenes rendered by ``hdgan_jax.data.demo.render_scene``.

Files are paired by scene name (:func:`scene_key`: the path without extension,
role suffix and generic suffix such as ``_labelIds``). Two files of one role
with the same scene name (``a_labelIds.png`` and ``a_label.png``) are refused:
which one is meant cannot be guessed. Label and instance maps with a lossy
extension (``.jpg``, ``.webp``) are refused when the layout is listed, so a
sampled data check still sees every one of them (see ``decode``;
``data.allow_lossy_maps`` reads them with a warning).

A raw example is a dict: ``label`` (H, W) integer ids or (H, W, C) uint8 when
``label_nc == 0``, ``inst`` (H, W) uint16, ``image`` (H, W, 3) uint8, ``feat``
(H, W, 3) uint8, and ``name`` (a string for messages). Problems raise
:class:`DataError` (``data.errors``; re-exported here) naming the file and the fix.
"""

import dataclasses
import os
import re

import numpy as np

from hdgan_jax.data import cityscapes, decode, demo
from hdgan_jax.data import palette as palette_lib
from hdgan_jax.data.decode import (check_ids, check_sizes,  # pylint: disable=unused-import
                                   lossy_paths, read_inst, read_label, read_label_ids, read_rgb)
from hdgan_jax.data.errors import DataError
from hdgan_jax.data.tfds_source import TfdsSource

IMG_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.ppm', '.bmp', '.tif', '.tiff')
# File-name endings that name the role of a file rather than the scene.
_ROLE_SUFFIX = re.compile(r'_(leftImg8bit|gtFine_labelIds|gtFine_instanceIds|gtFine_color|'
                          r'gtCoarse_labelIds|gtCoarse_instanceIds|gtCoarse_color)$')
# Generic role endings of user-named maps, removed after the Cityscapes ones.
_GENERIC_SUFFIX = re.compile(r'_(labelIds|instanceIds|label|inst)$')
MAX_LISTED = 20       # files listed per problem in an error message
_ROLE_NAMES = {'label': 'label map', 'inst': 'instance map', 'image': 'photo',
               'feat': 'feature map'}


@dataclasses.dataclass(frozen=True)
class Example:
  """Paths of one example (None where that map is not used)."""
  key: str
  label: str
  image: str = None
  inst: str = None
  feat: str = None


@dataclasses.dataclass
class Listing:
  """Result of scanning a file layout: paired examples and the files left over."""
  examples: list
  unpaired: list = dataclasses.field(default_factory=list)
  notes: list = dataclasses.field(default_factory=list)
  duplicates: list = dataclasses.field(default_factory=list)  # messages naming both files
  lossy: list = dataclasses.field(default_factory=list)       # (path, 'label map'/...) pairs


def list_images(folder):
  """All image files under ``folder`` (recursively), sorted by path."""
  out = []
  for root, _, names in os.walk(folder):
    out.extend(os.path.join(root, n) for n in names if n.lower().endswith(IMG_EXTENSIONS))
  return sorted(out)


def scene_name(path: str) -> str:
  """A file's path without extension and role suffix (``_leftImg8bit``, ``_gtFine_labelIds``, ...)."""
  return _ROLE_SUFFIX.sub('', os.path.splitext(path)[0])


def scene_key(path: str) -> str:
  """Scene name used for pairing: :func:`scene_name`, then ``_labelIds``/``_instanceIds``/
  ``_label``/``_inst`` removed, so ``x_labelIds.png`` pairs with ``x_instanceIds.png``."""
  return _GENERIC_SUFFIX.sub('', scene_name(path))


def _key(path, folder):
  return scene_key(os.path.relpath(path, folder))


def duplicate_message(role, key, first, second) -> str:
  """Two files of one role that name the same scene: refused, naming both."""
  role = _ROLE_NAMES.get(role, role)
  return (f'{first} and {second}: two {role}s of scene {key!r} (names that differ only '
          'in a suffix such as _labelIds/_label or in the extension); keep one of them')


def pair_files(columns: dict, folders: dict) -> Listing:
  """Pairs files of several roles by scene name (path without role suffix/extension).

  Falls back to the original's pairing by sorted position when no name matches
  across roles but every role has the same number of files.
  """
  keyed, duplicates = {}, []
  for role, paths in columns.items():
    keyed[role] = {}
    for p in paths:
      k = _key(p, folders[role])
      if k in keyed[role]:
        duplicates.append(duplicate_message(role, k, keyed[role][k], p))
        continue
      keyed[role][k] = p
  roles = list(columns)
  common = set.intersection(*(set(k) for k in keyed.values()))
  counts = {len(p) for p in columns.values()}
  if not common and len(counts) == 1 and counts != {0}:
    examples = [Example(key=_key(ps[0], folders[roles[0]]),
                        **{r: p for r, p in zip(roles, ps)})
                for ps in zip(*(columns[r] for r in roles))]
    return Listing(examples, notes=[
        'file names differ between ' + ', '.join(folders[r] for r in roles) +
        '; paired by sorted order as pix2pixHD does'], duplicates=duplicates)
  order = [k for k in sorted(keyed[roles[0]], key=lambda k: keyed[roles[0]][k]) if k in common]
  examples = [Example(key=k, **{r: keyed[r][k] for r in roles}) for k in order]
  unpaired = []
  for role in roles:
    for k, p in sorted(keyed[role].items(), key=lambda kv: kv[1]):
      if k not in common:
        missing = [r for r in roles if k not in keyed[r]]
        unpaired.append(f'{p} (no {"/".join(missing)} file for {k!r})')
  return Listing(examples, unpaired, duplicates=duplicates)


def wants(config) -> dict:
  """Which maps this config reads: {'inst': bool, 'feat': bool}."""
  return {'inst': not config.model.no_instance, 'feat': bool(config.data.load_features)}


def _require_dir(path, what, fix):
  if not os.path.isdir(path):
    raise DataError(f'{what} folder {path} does not exist; {fix}')


def _require_root(root):
  if not root:
    raise DataError('data.root is empty; set --config.data.root=/path/to/the/dataset')
  _require_dir(root, 'data.root', 'set --config.data.root to the dataset directory')


def list_folder(config) -> Listing:
  """pix2pixHD's folder layout under ``data.root``."""
  d, m = config.data, config.model
  root, phase = d.root, d.phase
  _require_root(root)
  rgb = m.label_nc == 0
  folders = {'label': os.path.join(root, f'{phase}_{"A" if rgb else "label"}'),
             'image': os.path.join(root, f'{phase}_{"B" if rgb else "img"}')}
  fixes = {'label': f'put the {"input maps" if rgb else "label maps"} there or check '
                    '--config.data.root / --config.data.phase' +
                    ('' if rgb else ' (or set --config.model.label_nc=0 for RGB inputs in '
                     f'{phase}_A)'),
           'image': 'put the photos there or check --config.data.root / --config.data.phase',
           'inst': 'add the instance maps or set --config.model.no_instance=True',
           'feat': 'precompute features (the original\'s precompute_feature_maps.py) or set '
                   '--config.data.load_features=False'}
  want = wants(config)
  for role in ('inst', 'feat'):
    if want[role]:
      folders[role] = os.path.join(root, f'{phase}_{role}')
  for role, folder in folders.items():
    _require_dir(folder, f'the {role}', fixes[role])
  columns = {r: list_images(f) for r, f in folders.items()}
  if not columns['label']:
    raise DataError(f'no image files ({", ".join(IMG_EXTENSIONS)}) in {folders["label"]}; '
                    + fixes['label'])
  return pair_files(columns, folders)


def list_cityscapes(config) -> Listing:
  """Cityscapes' own tree under ``data.root`` (leftImg8bit/ and gtFine/)."""
  d, m = config.data, config.model
  if m.label_nc == 0:
    raise DataError('data.source=cityscapes has label maps; set '
                    f'--config.model.label_nc={cityscapes.LABEL_NC}')
  if d.load_features:
    raise DataError('Cityscapes has no precomputed feature maps; use data.source=folder with '
                    'a {phase}_feat folder or set --config.data.load_features=False')
  root, phase = d.root, d.phase
  _require_root(root)
  img_dir = os.path.join(root, 'leftImg8bit', phase)
  gt_dir = os.path.join(root, 'gtFine', phase)
  fix = ('set --config.data.root to the folder holding leftImg8bit/ and gtFine/ and '
         '--config.data.phase to train, val or test')
  _require_dir(img_dir, 'the photo', fix)
  _require_dir(gt_dir, 'the annotation', fix)
  label_suffix = '_gtFine_color.png' if d.palette else '_gtFine_labelIds.png'
  columns = {'image': [p for p in list_images(img_dir) if p.endswith('_leftImg8bit.png')]}
  gt = list_images(gt_dir)
  columns['label'] = [p for p in gt if p.endswith(label_suffix)]
  folders = {'image': img_dir, 'label': gt_dir}
  if not m.no_instance:
    columns['inst'] = [p for p in gt if p.endswith('_gtFine_instanceIds.png')]
    folders['inst'] = gt_dir
  if not columns['image']:
    raise DataError(f'no *_leftImg8bit.png files under {img_dir}; {fix}')
  order = {'label': 0, 'image': 1, 'inst': 2}
  columns = dict(sorted(columns.items(), key=lambda kv: order[kv[0]]))
  return pair_files(columns, folders)


# ---------------------------------------------------------------- decoding

class FileSource:
  """Random access to examples of a file layout (picklable, for grain workers)."""

  has_inst = True  # the layouts have instance maps (read unless model.no_instance)

  def __init__(self, examples, config, unpaired=(), notes=(), duplicates=(), lossy=()):
    self.examples, self.config = list(examples), config
    self.unpaired, self.notes = list(unpaired), list(notes)  # see make_source
    self.duplicates, self.lossy = list(duplicates), list(lossy)
    self.want = wants(config)
    self._allow_lossy = bool(config.data.get('allow_lossy_maps', False))
    self._palette = None

  def __len__(self):
    return len(self.examples)

  def __getstate__(self):
    return {k: v for k, v in self.__dict__.items() if k != '_palette'} | {'_palette': None}

  def palette(self):
    if self._palette is None and self.config.data.palette:
      self._palette = palette_lib.load_palette(self.config.data.palette)
    return self._palette

  def name(self, index):
    return self.examples[index].label

  def __getitem__(self, index):
    ex = self.examples[index]
    out = {'name': ex.label,
           'label': read_label(ex.label, self.config, ex.label, self.palette())}
    if self.want['inst']:
      out['inst'] = read_inst(ex.inst, ex.inst, allow_lossy=self._allow_lossy)
    if ex.image is not None:
      out['image'] = read_rgb(ex.image, ex.image)
    if self.want['feat']:
      out['feat'] = read_rgb(ex.feat, ex.feat)
    check_sizes(out, ' / '.join(p for p in (ex.label, ex.inst, ex.image, ex.feat) if p))
    return out


class DemoSource:
  """The built-in synthetic scenes of ``hdgan_jax.data.demo``."""

  has_inst = True

  def __init__(self, config):
    d = config.data
    self.n, self.h, self.w, self.seed = d.demo_num_images, d.demo_height, d.demo_width, config.seed
    self.config = config
    if self.n <= 0:
      raise DataError(f'data.demo_num_images must be positive, got {self.n}')
    if config.model.label_nc == 0:
      raise DataError('the demo scenes have label maps; set '
                      f'--config.model.label_nc={cityscapes.LABEL_NC}')

  def __len__(self):
    return self.n

  def name(self, index):
    return f'demo scene {index}'

  def __getitem__(self, index):
    scene = demo.render_scene(int(index), height=self.h, width=self.w, seed=self.seed)
    out = {'name': self.name(index), 'label': np.asarray(scene['label']),
           'image': np.asarray(scene['image'], np.uint8)}
    if not self.config.model.no_instance:
      out['inst'] = np.asarray(scene['inst'], np.uint16)
    check_ids(out['label'], self.config.model.label_nc, self.name(index))
    return out


class LimitedSource:
  """The first ``n`` examples of another source (``data.max_dataset_size``)."""

  def __init__(self, source, n):
    self.source, self.n = source, min(n, len(source))
    self.has_inst = source.has_inst
    self.unpaired, self.notes = getattr(source, 'unpaired', []), getattr(source, 'notes', [])
    self.duplicates, self.lossy = getattr(source, 'duplicates', []), getattr(source, 'lossy', [])

  def __len__(self):
    return self.n

  def name(self, index):
    return self.source.name(index)

  def __getitem__(self, index):
    if not 0 <= index < self.n:
      raise IndexError(index)
    return self.source[index]


def scan(config) -> Listing:
  """Lists a file layout (sources 'cityscapes' and 'folder'), noting lossy maps."""
  if config.data.source == 'cityscapes':
    listing = list_cityscapes(config)
  elif config.data.source == 'folder':
    listing = list_folder(config)
  else:
    raise ValueError(f'data.source={config.data.source!r} is not a file layout')
  labels = [ex.label for ex in listing.examples] if config.model.label_nc else []
  insts = [ex.inst for ex in listing.examples if ex.inst]
  listing.lossy = ([(p, 'label map') for p in lossy_paths(labels)]
                   + [(p, 'instance map') for p in lossy_paths(insts)])
  return listing


def _listed(lines) -> str:
  more = f'\n  ... and {len(lines) - MAX_LISTED} more' if len(lines) > MAX_LISTED else ''
  return '\n  '.join(lines[:MAX_LISTED]) + more


def _check_listing(listing, config, allow_unpaired):
  """Refuses duplicate scene names and lossy maps (the data check gets them listed)."""
  d = config.data
  if listing.duplicates and not allow_unpaired:
    raise DataError(f'{len(listing.duplicates)} scene name(s) under {d.root} have two files '
                    f'of one role:\n  {_listed(listing.duplicates)}', kind='names')
  if not listing.lossy:
    return listing
  if d.get('allow_lossy_maps', False):
    decode.warn_lossy('label/instance map', f' ({len(listing.lossy)} files, e.g. {listing.lossy[0][0]})')
    return listing
  if not allow_unpaired:
    raise decode.lossy_error(listing.lossy, d.root)
  bad = {p for p, _ in listing.lossy}   # the data check lists them; decode the others
  listing.examples = [ex for ex in listing.examples if ex.label not in bad and ex.inst not in bad]
  return listing


SOURCES = ('cityscapes', 'folder', 'tfds', 'demo')


def make_source(config, *, allow_unpaired=False):
  """The configured source, limited to ``data.max_dataset_size`` examples.

  Files without a partner, two files of one scene and role, and lossy label or
  instance maps raise DataError; ``allow_unpaired`` (the data check) skips them
  instead and lists them in the source's ``unpaired``, ``duplicates`` and
  ``lossy`` (pairing notes: ``notes``), and allows no examples.
  """
  d = config.data
  if d.source not in SOURCES:
    raise DataError(f'data.source={d.source!r} is not known; use one of {", ".join(SOURCES)}')
  if d.source in ('cityscapes', 'folder'):
    listing = _check_listing(scan(config), config, allow_unpaired)
    if listing.unpaired and not allow_unpaired:
      raise DataError(f'{len(listing.unpaired)} file(s) under {d.root} have no partner:\n  '
                      f'{_listed(listing.unpaired)}\nAdd the missing files or remove these (run '
                      'python -m hdgan_jax.data.check for a full report).', kind='unpaired')
    if not listing.examples and not allow_unpaired:
      raise DataError(f'no examples found under {d.root} (data.source={d.source}, '
                      f'data.phase={d.phase})')
    source = FileSource(listing.examples, config, listing.unpaired, listing.notes,
                        listing.duplicates, listing.lossy)
  elif d.source == 'demo':
    source = DemoSource(config)
  else:
    source = TfdsSource(config)
  if d.max_dataset_size and d.max_dataset_size > 0:
    source = LimitedSource(source, d.max_dataset_size)
  return source
