"""Cityscapes' label table, the one place the project states its classes.

pix2pixHD's Cityscapes model reads ``*_gtFine_labelIds.png`` (ids 0..33),
Cityscapes' instance encoding (``id * 1000 + k`` for classes with instances)
and shows label maps in Cityscapes' colours. Names, colours, which classes are
things and the train ids all come from the table below, which follows
cityscapesScripts' ``helpers/labels.py`` (github.com/mcordts/cityscapesScripts)
field for field. Everything else is derived from it: the colour palette
(``data.palette``), the demo scenes' class names (``data.demo``), the data
check's class names, the editor's thing classes and label count, and the
colours of sample grids (``reporting``).

This is a leaf module (numpy and the standard library only), so any module,
including the grain workers' decoders, can import it.
"""

import types
from typing import NamedTuple, Tuple

import numpy as np


class Label(NamedTuple):
  """One row of cityscapesScripts' table (its fields, in its order)."""
  name: str
  id: int                # the value in *_labelIds.png; -1: never in a label map
  train_id: int          # the 19-class training id; 255 (and -1) are ignored
  category: str
  category_id: int
  has_instances: bool    # a "thing": instance ids id * 1000 + k in *_instanceIds.png
  ignore_in_eval: bool
  color: Tuple[int, int, int]


def _rows(*rows):
  return tuple(Label(*r) for r in rows)


# name, id, trainId, category, catId, hasInstances, ignoreInEval, colour
LABELS = _rows(
    ('unlabeled', 0, 255, 'void', 0, False, True, (0, 0, 0)),
    ('ego vehicle', 1, 255, 'void', 0, False, True, (0, 0, 0)),
    ('rectification border', 2, 255, 'void', 0, False, True, (0, 0, 0)),
    ('out of roi', 3, 255, 'void', 0, False, True, (0, 0, 0)),
    ('static', 4, 255, 'void', 0, False, True, (0, 0, 0)),
    ('dynamic', 5, 255, 'void', 0, False, True, (111, 74, 0)),
    ('ground', 6, 255, 'void', 0, False, True, (81, 0, 81)),
    ('road', 7, 0, 'flat', 1, False, False, (128, 64, 128)),
    ('sidewalk', 8, 1, 'flat', 1, False, False, (244, 35, 232)),
    ('parking', 9, 255, 'flat', 1, False, True, (250, 170, 160)),
    ('rail track', 10, 255, 'flat', 1, False, True, (230, 150, 140)),
    ('building', 11, 2, 'construction', 2, False, False, (70, 70, 70)),
    ('wall', 12, 3, 'construction', 2, False, False, (102, 102, 156)),
    ('fence', 13, 4, 'construction', 2, False, False, (190, 153, 153)),
    ('guard rail', 14, 255, 'construction', 2, False, True, (180, 165, 180)),
    ('bridge', 15, 255, 'construction', 2, False, True, (150, 100, 100)),
    ('tunnel', 16, 255, 'construction', 2, False, True, (150, 120, 90)),
    ('pole', 17, 5, 'object', 3, False, False, (153, 153, 153)),
    ('polegroup', 18, 255, 'object', 3, False, True, (153, 153, 153)),
    ('traffic light', 19, 6, 'object', 3, False, False, (250, 170, 30)),
    ('traffic sign', 20, 7, 'object', 3, False, False, (220, 220, 0)),
    ('vegetation', 21, 8, 'nature', 4, False, False, (107, 142, 35)),
    ('terrain', 22, 9, 'nature', 4, False, False, (152, 251, 152)),
    ('sky', 23, 10, 'sky', 5, False, False, (70, 130, 180)),
    ('person', 24, 11, 'human', 6, True, False, (220, 20, 60)),
    ('rider', 25, 12, 'human', 6, True, False, (255, 0, 0)),
    ('car', 26, 13, 'vehicle', 7, True, False, (0, 0, 142)),
    ('truck', 27, 14, 'vehicle', 7, True, False, (0, 0, 70)),
    ('bus', 28, 15, 'vehicle', 7, True, False, (0, 60, 100)),
    ('caravan', 29, 255, 'vehicle', 7, True, True, (0, 0, 90)),
    ('trailer', 30, 255, 'vehicle', 7, True, True, (0, 0, 110)),
    ('train', 31, 16, 'vehicle', 7, True, False, (0, 80, 100)),
    ('motorcycle', 32, 17, 'vehicle', 7, True, False, (0, 0, 230)),
    ('bicycle', 33, 18, 'vehicle', 7, True, False, (119, 11, 32)),
    ('license plate', -1, -1, 'vehicle', 7, False, True, (0, 0, 142)),
)

# pix2pixHD's --label_nc for Cityscapes: the one-hot input has 35 channels (ids 0..33 and
# one the label maps never use), so its checkpoints need exactly this many.
LABEL_NC = 35
IGNORE_TRAIN_ID = 255
# Classes with instances (person .. bicycle, ids 24-33): new objects of these get ids
# id * 1000 + k; every other class is "stuff" whose instance id is its label id.
THING_IDS = tuple(l.id for l in LABELS if l.has_instances)
# id -> name for the ids that occur in label maps (0..33).
NAMES = types.MappingProxyType({l.id: l.name for l in LABELS if l.id >= 0})
# name -> id (license plate: -1).
ID_OF = types.MappingProxyType({l.name: l.id for l in LABELS})
# id -> (r, g, b), including -1 (license plate). Colours are not unique: ids 0-4 are
# black and 17/18 and 26/-1 share one; a colour reads back as the lowest id >= 0.
COLORS = types.MappingProxyType({l.id: l.color for l in LABELS})


def _frozen(arr):
  arr.flags.writeable = False
  return arr


# label id (0..255) -> train id; ids without one (and values past 33) -> 255.
TRAIN_ID_LUT = np.full(256, IGNORE_TRAIN_ID, np.uint8)
for _l in LABELS:
  if 0 <= _l.id and 0 <= _l.train_id < IGNORE_TRAIN_ID:
    TRAIN_ID_LUT[_l.id] = _l.train_id
TRAIN_ID_LUT = _frozen(TRAIN_ID_LUT)
del _l

# Rows 0..33: those ids; row 34: id -1 (license plate); row 35: black, any other value.
_COLOR_LUT = _frozen(np.array([COLORS[i] for i in range(34)] + [COLORS[-1], (0, 0, 0)],
                              np.uint8))


def colorize(label) -> np.ndarray:
  """Label ids of any shape (...,) -> (..., 3) uint8 in Cityscapes' colours.

  Id -1 takes the license plate's colour; any value that is not an id is black.
  """
  lab = np.asarray(label).astype(np.int64)
  idx = np.where(lab == -1, 34, np.where((lab >= 0) & (lab <= 33), lab, 35))
  return _COLOR_LUT[idx]


def to_train_ids(label) -> np.ndarray:
  """Label ids of any shape -> uint8 train ids (0..18), 255 where a pixel is ignored."""
  lab = np.asarray(label).astype(np.int64)
  return np.where((lab >= 0) & (lab < 256), TRAIN_ID_LUT[np.clip(lab, 0, 255)],
                  IGNORE_TRAIN_ID).astype(np.uint8)
