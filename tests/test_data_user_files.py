"""A user's maps for generation: pairing by scene name, collisions and lossy maps refused."""

import logging

import numpy as np
from PIL import Image
import pytest

from hdgan_jax.data import DataError, decode, user_files


def write(path, arr=None, fmt=None):
  arr = np.full((8, 12), 7, np.uint8) if arr is None else arr
  Image.fromarray(arr).save(path, format=fmt)
  return str(path)


@pytest.fixture
def folders(tmp_path):
  (tmp_path / 'L').mkdir()
  (tmp_path / 'I').mkdir()
  return tmp_path / 'L', tmp_path / 'I'


def test_folders_pair_by_scene_name(folders):
  lab, ins = folders
  a = write(lab / 'a_labelIds.png')
  b = write(lab / 'b_gtFine_labelIds.bmp')   # BMP is lossless
  ia = write(ins / 'a_instanceIds.png', np.full((8, 12), 7, np.uint16))
  ib = write(ins / 'b_gtFine_instanceIds.tif', np.full((8, 12), 7, np.uint16))
  (lab / 'notes.txt').write_text('not a map')
  assert user_files.pair_inputs(str(lab), str(ins)) == [(a, ia), (b, ib)]
  assert user_files.pair_inputs(str(lab), None) == [(a, None), (b, None)]


@pytest.mark.parametrize('names', [('a_labelIds.png', 'a_label.png'), ('a.png', 'a.bmp'),
                                   ('x_gtFine_labelIds.png', 'x_labelIds.png')])
def test_two_label_maps_of_one_scene_are_refused_naming_both(folders, names):
  lab, ins = folders
  paths = [write(lab / n) for n in names]
  with pytest.raises(DataError) as e:
    user_files.pair_inputs(str(lab), None)
  assert all(p in str(e.value) for p in paths) and 'keep one' in str(e.value)
  assert e.value.kind == 'names'


def test_two_instance_maps_of_one_scene_are_refused_naming_both(folders):
  lab, ins = folders
  write(lab / 'a_labelIds.png')
  paths = [write(ins / n, np.zeros((8, 12), np.uint16))
           for n in ('a_instanceIds.png', 'a_inst.png')]
  with pytest.raises(DataError) as e:
    user_files.pair_inputs(str(lab), str(ins))
  assert all(p in str(e.value) for p in paths)


def test_jpeg_maps_are_refused_with_the_reason(folders):
  lab, ins = folders
  jpg = write(lab / 'a_labelIds.jpg')
  for call in (lambda: user_files.pair_inputs(jpg, None),
               lambda: user_files.pair_inputs(str(lab), None)):
    with pytest.raises(DataError) as e:
      call()
    msg = str(e.value)
    assert jpg in msg and 'lossless' in msg and 'invents classes' in msg and 'PNG' in msg
  png = write(lab / 'b_labelIds.png')
  inst_jpg = write(ins / 'b_instanceIds.jpeg')
  with pytest.raises(DataError, match='instance maps must be lossless') as e:
    user_files.pair_inputs(png, inst_jpg)
  assert inst_jpg in str(e.value)


def test_allow_lossy_pairs_with_a_warning(folders, caplog, monkeypatch):
  lab, _ = folders
  jpg = write(lab / 'a_labelIds.jpg')
  monkeypatch.setattr(decode, '_warned', set())
  with caplog.at_level(logging.WARNING):
    assert user_files.pair_inputs(jpg, None, allow_lossy=True) == [(jpg, None)]
  assert 'lossy' in caplog.text and 'allow_lossy_maps' in caplog.text


def test_missing_partner_and_empty_folder(folders):
  lab, ins = folders
  with pytest.raises(FileNotFoundError, match='no label maps'):
    user_files.pair_inputs(str(lab), None)
  write(lab / 'a_labelIds.png')
  with pytest.raises(FileNotFoundError, match='a_labelIds.png'):
    user_files.pair_inputs(str(lab), str(ins))
