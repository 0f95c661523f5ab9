"""Built-in demo scenes: determinism, map encodings, palettes and speed."""


import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from hdgan_jax.data import cityscapes, demo


def scene(i, h=64, w=128, seed=0):
  return demo.render_scene(i, height=h, width=w, seed=seed)


def check_scene(s, h, w):
  """Shapes, dtypes and the Cityscapes instance encoding of one scene."""
  label, inst, image, styles = s['label'], s['inst'], s['image'], s['styles']
  assert label.shape == inst.shape == (h, w) and image.shape == (h, w, 3)
  assert label.dtype == np.uint8 and inst.dtype == np.uint16 and image.dtype == np.uint8
  assert set(np.unique(label).tolist()) <= set(demo.CLASSES)
  thing = inst >= 1000
  np.testing.assert_array_equal(inst[thing] // 1000, label[thing])
  np.testing.assert_array_equal(inst[~thing], label[~thing])
  assert set(np.unique(label[thing]).tolist()) <= set(demo.THING_CLASSES)
  assert not np.isin(label[~thing], demo.THING_CLASSES).any()
  ids = np.unique(inst[thing]).tolist()
  assert sorted(styles) == ids
  for c in demo.THING_CLASSES:   # k runs 0, 1, 2, ... per class
    ks = sorted(i % 1000 for i in ids if i // 1000 == c)
    assert ks == list(range(len(ks)))
  for iid, (name, colour, rgb) in styles.items():
    assert name == demo.CLASSES[iid // 1000]
    assert demo.PALETTES[iid // 1000][colour] == rgb


@pytest.mark.parametrize('h,w', [(32, 64), (64, 128), (96, 80)])
def test_shapes_dtypes_encoding(h, w):
  for i in range(3):
    check_scene(scene(i, h, w), h, w)


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 72), w=st.integers(1, 144), index=st.integers(0, 10_000),
       seed=st.integers(0, 2**20))
def test_random_sizes_and_seeds_render_valid_maps(h, w, index, seed):
  check_scene(demo.render_scene(index, height=h, width=w, seed=seed), h, w)


def test_deterministic_and_distinct():
  a, b = scene(3), scene(3)
  for k in ('label', 'inst', 'image'):
    np.testing.assert_array_equal(a[k], b[k])
  assert a['styles'] == b['styles']
  assert not np.array_equal(a['image'], scene(4)['image'])
  assert not np.array_equal(a['label'], scene(4)['label'])
  assert not np.array_equal(a['label'], scene(3, seed=1)['label'])
  listed = list(demo.render_dataset(3, height=32, width=64, seed=2))
  assert len(listed) == 3
  np.testing.assert_array_equal(listed[2]['image'], scene(2, 32, 64, seed=2)['image'])


def test_same_street_at_every_size():
  """The layout is drawn in metres, not pixels: a larger render is the same scene."""
  small, large = scene(5, 64, 128)['label'], scene(5, 256, 512)['label']
  assert np.mean(large[1::4, 1::4] == small) > 0.9


def test_scenes_have_the_street_classes():
  seen = set()
  for i in range(12):
    seen |= set(np.unique(scene(i)['label']).tolist())
  assert {demo.SKY, demo.BUILDING, demo.ROAD, demo.SIDEWALK, demo.VEGETATION, demo.POLE,
          demo.CAR, demo.PERSON} <= seen


def test_instances_touch():
  """Some cars are adjacent or occlude each other: instance edges are needed."""
  touching = 0
  for i in range(20):
    inst = scene(i)['inst'].astype(np.int64)
    for a, b in ((inst[:, 1:], inst[:, :-1]), (inst[1:], inst[:-1])):
      touching += np.sum((a // 1000 == demo.CAR) & (b // 1000 == demo.CAR) & (a != b))
  assert touching > 0


def test_palettes_used_and_multimodal():
  """A vehicle's median colour is nearest its palette entry; colours vary across scenes."""
  hits, total, used = 0, 0, {c: set() for c in demo.THING_CLASSES}
  for i in range(30):
    s = scene(i)
    for iid, (_, colour, _) in s['styles'].items():
      c = iid // 1000
      used[c].add(colour)
      mask = s['inst'] == iid
      if c == demo.PERSON or mask.sum() < 30:
        continue
      names = list(demo.PALETTES[c])
      med = np.median(s['image'][mask].astype(float), axis=0)
      dist = [np.linalg.norm(med - demo.PALETTES[c][n]) for n in names]
      hits += names[int(np.argmin(dist))] == colour
      total += 1
  assert total >= 30 and hits / total > 0.8
  assert len(used[demo.CAR]) >= 3 and len(used[demo.PERSON]) >= 3


def test_classes_are_cityscapes_ids():
  """The demo's classes and things are Cityscapes' (names and colours from data.cityscapes)."""
  for c, name in demo.CLASSES.items():
    assert cityscapes.NAMES[c] == name
    assert tuple(cityscapes.colorize(np.uint8(c))) == cityscapes.COLORS[c]
  assert set(demo.THING_CLASSES) <= set(cityscapes.THING_IDS)
  assert not (set(demo.CLASSES) - set(demo.THING_CLASSES)) & set(cityscapes.THING_IDS)


def test_bad_arguments():
  with pytest.raises(ValueError):
    demo.render_scene(0, height=0, width=8)
  with pytest.raises(ValueError):
    demo.render_scene(-1, height=8, width=8)
