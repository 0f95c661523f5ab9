"""Cityscapes' label table (hdgan_jax.data.cityscapes) against cityscapesScripts' labels.py."""

import collections

import numpy as np
import pytest

from hdgan_jax.data import cityscapes, palette

L = cityscapes.LABELS


def test_ids_names_and_label_nc():
  ids = [l.id for l in L]
  assert len(L) == 35 and ids == list(range(34)) + [-1]
  assert L[-1].name == 'license plate' and L[-1].train_id == -1
  assert len({l.name for l in L}) == len(L)
  assert cityscapes.LABEL_NC == 35 and max(ids) < cityscapes.LABEL_NC
  assert cityscapes.NAMES[0] == 'unlabeled' and cityscapes.NAMES[33] == 'bicycle'
  assert sorted(cityscapes.NAMES) == list(range(34))      # -1 never occurs in a map
  assert all(cityscapes.ID_OF[l.name] == l.id for l in L)


def test_train_ids():
  train = collections.Counter(l.train_id for l in L if l.id >= 0 and l.train_id != 255)
  assert sorted(train) == list(range(19)) and set(train.values()) == {1}
  for l in L:   # a class is ignored in evaluation exactly when it has no train id
    assert l.ignore_in_eval == (l.train_id in (255, -1))
  lut = cityscapes.TRAIN_ID_LUT
  assert lut.shape == (256,) and lut.dtype == np.uint8 and not lut.flags.writeable
  assert lut[7] == 0 and lut[26] == 13 and lut[33] == 18 and lut[0] == 255 and lut[34] == 255
  assert (lut[34:] == 255).all()
  got = cityscapes.to_train_ids(np.array([[7, 8, -1], [26, 34, 1000]]))
  assert got.dtype == np.uint8 and got.tolist() == [[0, 1, 255], [13, 255, 255]]


def test_things():
  assert cityscapes.THING_IDS == tuple(range(24, 34))
  assert [cityscapes.NAMES[i] for i in (24, 26, 33)] == ['person', 'car', 'bicycle']
  for l in L:
    assert l.has_instances == (24 <= l.id <= 33)
    assert (l.category in ('human', 'vehicle')) == (l.id >= 24 or l.id == -1)


@pytest.mark.parametrize('name,rgb', [
    ('road', (128, 64, 128)), ('sidewalk', (244, 35, 232)), ('building', (70, 70, 70)),
    ('vegetation', (107, 142, 35)), ('sky', (70, 130, 180)), ('person', (220, 20, 60)),
    ('car', (0, 0, 142)), ('bicycle', (119, 11, 32)), ('license plate', (0, 0, 142)),
    ('unlabeled', (0, 0, 0)), ('dynamic', (111, 74, 0))])
def test_colours(name, rgb):
  assert cityscapes.COLORS[cityscapes.ID_OF[name]] == rgb


def test_colorize():
  ids = np.array([[7, 8, 11, 26], [-1, 0, 34, 255]])
  rgb = cityscapes.colorize(ids)
  assert rgb.shape == (2, 4, 3) and rgb.dtype == np.uint8
  assert rgb[0].tolist() == [[128, 64, 128], [244, 35, 232], [70, 70, 70], [0, 0, 142]]
  assert rgb[1].tolist() == [[0, 0, 142], [0, 0, 0], [0, 0, 0], [0, 0, 0]]
  assert len(cityscapes.COLORS) == 35
  every = cityscapes.colorize(np.arange(34))
  assert [tuple(c) for c in every.tolist()] == [cityscapes.COLORS[i] for i in range(34)]


def test_palette_reads_colours_back_as_lowest_id():
  pal = palette.cityscapes_palette()
  rgb = np.array([[cityscapes.COLORS[i] for i in range(34)]], np.uint8)
  back = pal.to_ids(rgb)[0]
  for i, got in enumerate(back.tolist()):
    assert got == min(j for j in range(34) if cityscapes.COLORS[j] == cityscapes.COLORS[i])
  assert back[26] == 26 and back[18] == 17 and back[4] == 0


def test_tables_are_read_only():
  with pytest.raises(TypeError):
    cityscapes.NAMES[0] = 'x'
  with pytest.raises(TypeError):
    cityscapes.COLORS[7] = (0, 0, 0)
