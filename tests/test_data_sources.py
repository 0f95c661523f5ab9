"""Sources: file layouts, pairing, decoding, palettes and the errors for bad files."""

import json
import os

import numpy as np
from PIL import Image
import pytest

from hdgan_jax.data import palette, sources
from hdgan_jax.data.sources import DataError
from test_data_fixtures import SAMPLES, SUFFIX, make_config, save, write_cityscapes, write_folder


def test_folder_layout_reads_what_was_written(tmp_path):
  truth = write_folder(tmp_path, n=3, feat=True)
  src = sources.make_source(make_config(tmp_path, load_features=True))
  assert len(src) == 3
  for i, t in enumerate(truth):
    ex = src[i]
    assert ex['name'].endswith(f'aachen_{i:06d}_000019{SUFFIX["label"]}')
    for key in ('label', 'inst', 'image', 'feat'):
      np.testing.assert_array_equal(ex[key], t[key])
    assert ex['inst'].dtype == np.uint16


def test_folder_rgb_inputs_label_nc_0(tmp_path):
  truth = write_folder(tmp_path, n=2, rgb_inputs=True)
  c = make_config(tmp_path)
  c.model.label_nc = 0
  ex = sources.make_source(c)[1]
  np.testing.assert_array_equal(ex['label'], truth[1]['label'])
  np.testing.assert_array_equal(ex['image'], truth[1]['image'])


def test_cityscapes_layout_pairs_across_cities(tmp_path):
  truth = write_cityscapes(tmp_path)
  src = sources.make_source(make_config(tmp_path, source='cityscapes'))
  assert len(src) == 4
  assert 'bochum_000001' in src.name(3)
  np.testing.assert_array_equal(src[3]['inst'], truth[3]['inst'])
  np.testing.assert_array_equal(src[2]['image'], truth[2]['image'])


def test_cityscapes_colour_maps_with_builtin_palette(tmp_path):
  pal = palette.cityscapes_palette()
  truth = write_cityscapes(tmp_path, colors=pal)
  src = sources.make_source(make_config(tmp_path, source='cityscapes', palette='cityscapes'))
  assert src.examples[0].label.endswith(SUFFIX['color'])
  expected = pal.to_ids(pal.to_colors(truth[0]['label']))  # shared colours read as lowest id
  np.testing.assert_array_equal(src[0]['label'], expected)
  assert (expected[truth[0]['label'] == 7] == 7).all()   # road has its own colour
  assert (expected[truth[0]['label'] == 2] == 0).all()   # black ids 0-4 read as 0


@pytest.mark.parametrize('fmt', ['json_map', 'json_list', 'csv'])
def test_palette_files(tmp_path, fmt):
  table = {(10, 20, 30): 0, (255, 0, 0): 1, (0, 0, 255): 5}
  if fmt == 'json_map':
    path = tmp_path / 'p.json'
    path.write_text(json.dumps({'#0a141e': 0, '255,0,0': 1, '#0000ff': 5}))
  elif fmt == 'json_list':
    path = tmp_path / 'p.json'
    path.write_text(json.dumps([{'color': list(c), 'id': i} for c, i in table.items()]))
  else:
    path = tmp_path / 'p.csv'
    path.write_text('r,g,b,id\n' + ''.join(f'{c[0]},{c[1]},{c[2]},{i}\n' for c, i in table.items()))
  pal = palette.load_palette(str(path))
  rgb = np.array([[[10, 20, 30], [255, 0, 0], [0, 0, 255]]], np.uint8)
  np.testing.assert_array_equal(pal.to_ids(rgb), [[0, 1, 5]])


def test_unknown_colours_listed_with_counts_and_file(tmp_path):
  write_folder(tmp_path, n=1)
  rgb = np.zeros((32, 64, 3), np.uint8)
  rgb[:, :10] = (128, 64, 128)      # road
  rgb[:3, 10:] = (1, 2, 3)          # unknown, 162 px
  rgb[3:4, 10:15] = (9, 9, 9)       # unknown, 5 px
  path = os.path.join(tmp_path, 'train_label', 'aachen_000000_000019' + SUFFIX['label'])
  save(path, rgb)
  src = sources.make_source(make_config(tmp_path, palette='cityscapes'))
  with pytest.raises(DataError) as e:
    src[0]
  msg = str(e.value)
  assert path in msg and '(1,2,3): 162 px' in msg and '(9,9,9): 5 px' in msg
  assert 'palette' in msg and e.value.kind == 'ids'


def test_palette_errors_name_the_problem(tmp_path):
  with pytest.raises(ValueError, match='neither'):
    palette.load_palette(str(tmp_path / 'missing.json'))
  bad = tmp_path / 'bad.csv'
  bad.write_text('1,2,3,4\n300,0,0,1\n')
  with pytest.raises(ValueError, match='bad.csv'):
    palette.load_palette(str(bad))


def test_rgb_label_map_without_palette_is_an_error(tmp_path):
  write_folder(tmp_path, n=1)
  path = os.path.join(tmp_path, 'train_label', 'aachen_000000_000019' + SUFFIX['label'])
  save(path, np.zeros((32, 64, 3), np.uint8))
  with pytest.raises(DataError, match='data.palette'):
    sources.make_source(make_config(tmp_path))[0]


def test_unpaired_files_are_listed(tmp_path):
  write_folder(tmp_path, n=3)
  os.remove(os.path.join(tmp_path, 'train_img', 'aachen_000001_000019' + SUFFIX['image']))
  save(os.path.join(tmp_path, 'train_img', 'extra_000009_000019' + SUFFIX['image']),
       np.zeros((32, 64, 3), np.uint8))
  listing = sources.scan(make_config(tmp_path))
  assert len(listing.examples) == 2
  assert len(listing.unpaired) == 3   # label and inst of scene 1, the extra photo
  with pytest.raises(DataError, match='no partner') as e:
    sources.make_source(make_config(tmp_path))
  assert 'extra_000009_000019' in str(e.value) and "no image file for 'aachen_000001_000019'" \
      in str(e.value)


def test_differently_named_folders_pair_by_sorted_order(tmp_path):
  write_folder(tmp_path, n=2)
  img_dir = os.path.join(tmp_path, 'train_img')
  for i, name in enumerate(sorted(os.listdir(img_dir))):
    os.rename(os.path.join(img_dir, name), os.path.join(img_dir, f'photo{i}.jpg.png'))
  listing = sources.scan(make_config(tmp_path))
  assert len(listing.examples) == 2 and not listing.unpaired
  assert 'sorted order' in listing.notes[0]


def test_missing_folder_names_folder_and_fix(tmp_path):
  write_folder(tmp_path, n=1)
  with pytest.raises(DataError, match='train_feat.*load_features=False'):
    sources.make_source(make_config(tmp_path, load_features=True))
  with pytest.raises(DataError, match='data.root'):
    sources.make_source(make_config(tmp_path / 'nowhere'))


def test_instance_ids_beyond_16_bits(tmp_path):
  write_folder(tmp_path, n=1)
  png = os.path.join(tmp_path, 'train_inst', 'aachen_000000_000019' + SUFFIX['inst'])
  os.remove(png)
  path = png[:-4] + '.tif'  # PNG holds 16 bits at most; a 32-bit TIFF can hold more
  Image.fromarray(np.full((32, 64), 70000, np.int32)).save(path)
  with pytest.raises(DataError, match='65535') as e:
    sources.make_source(make_config(tmp_path))[0]
  assert path in str(e.value)


def test_label_ids_out_of_range(tmp_path):
  write_folder(tmp_path, n=1)
  c = make_config(tmp_path)
  c.model.label_nc = 10
  with pytest.raises(DataError, match='label_nc') as e:
    sources.make_source(c)[0]
  assert SUFFIX['label'] in str(e.value) and e.value.kind == 'ids'


def test_truncated_file(tmp_path):
  write_folder(tmp_path, n=1)
  path = os.path.join(tmp_path, 'train_img', 'aachen_000000_000019' + SUFFIX['image'])
  data = open(path, 'rb').read()
  open(path, 'wb').write(data[:len(data) // 2])
  with pytest.raises(DataError, match='truncated') as e:
    sources.make_source(make_config(tmp_path))[0]
  assert path in str(e.value) and e.value.kind == 'unreadable'


def test_size_mismatch(tmp_path):
  write_folder(tmp_path, n=1)
  save(os.path.join(tmp_path, 'train_img', 'aachen_000000_000019' + SUFFIX['image']),
       np.zeros((32, 60, 3), np.uint8))
  with pytest.raises(DataError, match='differ in size') as e:
    sources.make_source(make_config(tmp_path))[0]
  assert 'image 60x32' in str(e.value) and e.value.kind == 'size'


def test_max_dataset_size(tmp_path):
  write_folder(tmp_path, n=4)
  assert len(sources.make_source(make_config(tmp_path, max_dataset_size=2))) == 2


def test_unknown_source():
  with pytest.raises(DataError, match="'cityscapes', 'folder', 'tfds', 'demo'|cityscapes, folder"):
    sources.make_source(make_config(source='s3'))


@pytest.mark.skipif(not os.path.isdir(SAMPLES), reason='shared Cityscapes samples absent')
def test_real_cityscapes_samples():
  src = sources.make_source(make_config(SAMPLES))
  assert len(src) == 8
  ex = src[0]
  assert ex['label'].shape == (1024, 2048) and ex['label'].max() < 35
  assert ex['inst'].dtype == np.uint16 and ex['inst'].max() > 24000
  assert ex['image'].shape == (1024, 2048, 3)
  # Things carry class*1000+k: the class part agrees with the label map.
  things = ex['inst'] >= 1000
  np.testing.assert_array_equal(ex['inst'][things] // 1000, ex['label'][things])


def _jpeg_label(tmp_path, index=0, value=7):
  """Replaces example ``index``'s label PNG by a JPEG of a constant map; returns its path."""
  png = os.path.join(tmp_path, 'train_label', f'aachen_{index:06d}_000019' + SUFFIX['label'])
  os.remove(png)
  path = png[:-4] + '.jpg'
  Image.fromarray(np.full((32, 64), value, np.uint8)).save(path)
  return path


def test_jpeg_label_maps_are_refused_when_listed(tmp_path):
  write_folder(tmp_path, n=2)
  path = _jpeg_label(tmp_path)
  with pytest.raises(DataError) as e:
    sources.make_source(make_config(tmp_path))
  msg = str(e.value)
  assert path in msg and 'lossless' in msg and 'invents classes' in msg
  assert 'Export the label map as PNG' in msg and e.value.kind == 'lossy'
  inst = os.path.join(tmp_path, 'train_inst', 'aachen_000001_000019' + SUFFIX['inst'])
  os.remove(inst)
  Image.fromarray(np.full((32, 64), 7, np.uint8)).save(inst[:-4] + '.jpeg')
  with pytest.raises(DataError, match='2 label/instance maps') as e:
    sources.make_source(make_config(tmp_path))
  assert path in str(e.value) and inst[:-4] + '.jpeg (instance map)' in str(e.value)


def test_jpeg_data_under_a_png_name_is_refused_when_decoded(tmp_path):
  write_folder(tmp_path, n=1)
  path = os.path.join(tmp_path, 'train_label', 'aachen_000000_000019' + SUFFIX['label'])
  Image.fromarray(np.full((32, 64), 7, np.uint8)).save(path, format='JPEG')
  src = sources.make_source(make_config(tmp_path))
  with pytest.raises(DataError, match='lossless') as e:
    src[0]
  assert path in str(e.value) and 'JPEG' in str(e.value) and e.value.kind == 'lossy'


def test_allow_lossy_maps_opt_in_reads_them_with_a_warning(tmp_path, caplog, monkeypatch):
  write_folder(tmp_path, n=2)
  _jpeg_label(tmp_path)
  c = make_config(tmp_path)
  c.unlock()
  c.data.allow_lossy_maps = True
  monkeypatch.setattr(sources.decode, '_warned', set())
  with caplog.at_level('WARNING'):
    src = sources.make_source(c)
    ex = src[0]
  assert len(src) == 2 and (ex['label'] == 7).all()
  assert 'allow_lossy_maps' in caplog.text and 'lossy' in caplog.text


def test_photos_may_be_jpeg(tmp_path):
  write_folder(tmp_path, n=1)
  png = os.path.join(tmp_path, 'train_img', 'aachen_000000_000019' + SUFFIX['image'])
  os.remove(png)
  Image.fromarray(np.zeros((32, 64, 3), np.uint8)).save(png[:-4] + '.jpg')
  assert sources.make_source(make_config(tmp_path))[0]['image'].shape == (32, 64, 3)


@pytest.mark.parametrize('role,names', [
    ('label', ('a_labelIds.png', 'a_label.png')),
    ('inst', ('a_gtFine_instanceIds.png', 'a_inst.png'))])
def test_two_maps_of_one_scene_are_refused_naming_both(tmp_path, role, names):
  write_folder(tmp_path, n=1, names=['a'])
  folder = os.path.join(tmp_path, f'train_{role}')
  for f in os.listdir(folder):
    os.remove(os.path.join(folder, f))
  paths = [os.path.join(folder, n) for n in names]
  for p in paths:
    save(p, np.full((32, 64), 7, np.uint8 if role == 'label' else np.uint16))
  with pytest.raises(DataError) as e:
    sources.make_source(make_config(tmp_path))
  assert all(p in str(e.value) for p in paths) and e.value.kind == 'names'
  assert sources.scene_key('a_labelIds.png') == sources.scene_key('a_label.png') == 'a'


@pytest.mark.parametrize('text,where', [
    ('{"#000000": 0,\n "#ffffff": 1,,\n}', 'line 2, column'),
    ('{"#000000": "road"}', "'#000000'"),
    ('[{"color": [0, 0, 0], "id": null}]', 'entry 0'),
    ('[1, 2]', 'entry 0'),
])
def test_malformed_palette_json_names_file_and_place(tmp_path, text, where):
  bad = tmp_path / 'pal.json'
  bad.write_text(text)
  with pytest.raises(DataError) as e:
    palette.load_palette(str(bad))
  assert str(bad) in str(e.value) and where in str(e.value)


def test_malformed_palette_csv_and_binary_name_the_file(tmp_path):
  bad = tmp_path / 'pal.csv'
  bad.write_text('r,g,b,id\n0,0,0,0\n1,2,3,car\n')
  with pytest.raises(DataError, match='line 3'):
    palette.load_palette(str(bad))
  binary = tmp_path / 'bin.json'
  binary.write_bytes(b'\xff\xfe\x00garbage')
  with pytest.raises(DataError, match='bin.json'):
    palette.load_palette(str(binary))
