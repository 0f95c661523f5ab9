"""tensorflow-datasets: packing sources into ArrayRecord, reading them and tfds' cityscapes."""

import importlib
import logging
import os
import subprocess
import sys
import zipfile

import numpy as np
from PIL import Image
import pytest

from hdgan_jax.data import build, palette, pipeline, sources
from hdgan_jax.data.sources import DataError
from test_data_fixtures import make_config, write_cityscapes, write_folder

ROOT = os.path.join(os.path.dirname(__file__), '..')


def tfds_config(data_dir, name=build.NAME, **data):
  return make_config(source='tfds', tfds_name=name, tfds_data_dir=str(data_dir), **data)


def test_pack_folder_keeps_every_map_exactly(tmp_path):
  truth = write_folder(tmp_path / 'src', n=3, feat=True)
  assert max(t['inst'].max() for t in truth) > 255   # 16-bit ids must survive
  c = make_config(tmp_path / 'src', load_features=True)
  path = build.pack(c, str(tmp_path / 'out'))
  assert path.endswith(os.path.join(build.NAME, build.PACK_VERSION))
  packed = tfds_config(tmp_path / 'out', load_features=True)
  src = sources.make_source(packed)
  assert len(src) == 3 and src.has_inst
  for i, t in enumerate(truth):
    ex = src[i]
    assert f'aachen_{i:06d}_000019' in ex['name']
    for key in ('label', 'inst', 'image', 'feat'):
      np.testing.assert_array_equal(ex[key], t[key], err_msg=key)
  assert ex['inst'].dtype == np.uint16
  # Same example order, so the same batches as reading the files.
  c.data.resize_or_crop, c.data.fineSize = 'crop', 16
  packed.data.resize_or_crop, packed.data.fineSize = 'crop', 16
  a, b = pipeline.make_train_iterator(c), pipeline.make_train_iterator(packed)
  for _ in range(3):
    x, y = next(a), next(b)
    for key in x:
      np.testing.assert_array_equal(x[key], y[key])
  with pytest.raises(DataError, match='--overwrite'):
    build.pack(c, str(tmp_path / 'out'))


def test_pack_converts_colour_maps_to_ids(tmp_path):
  pal = palette.cityscapes_palette()
  truth = write_cityscapes(tmp_path / 'src', per_city=1, colors=pal)
  c = make_config(tmp_path / 'src', source='cityscapes', palette='cityscapes')
  build.pack(c, str(tmp_path / 'out'), splits=['train'])
  src = sources.make_source(tfds_config(tmp_path / 'out', palette='cityscapes'))
  np.testing.assert_array_equal(src[1]['label'], pal.to_ids(pal.to_colors(truth[1]['label'])))


def test_missing_tfds_dataset_says_how_to_build(tmp_path):
  with pytest.raises(DataError, match='hdgan_jax.data.build'):
    sources.make_source(tfds_config(tmp_path))


def _write_cityscapes_zips(manual, n=2):
  """Tiny stand-ins for Cityscapes' two archives (tfds' builder wants 2048x1024)."""
  rng = np.random.default_rng(0)
  truth = []
  with zipfile.ZipFile(manual / 'leftImg8bit_trainvaltest.zip', 'w') as zl, \
      zipfile.ZipFile(manual / 'gtFine_trainvaltest.zip', 'w') as zg:
    for split in ('train', 'val', 'test'):
      for i in range(n if split == 'train' else 1):
        name = f'aachen_{i:06d}_000019'
        label = np.full((1024, 2048), 7, np.uint8)
        label[:300] = 23
        label[600:700, 100 + 50 * i:400] = 26
        photo = np.zeros((1024, 2048, 3), np.uint8)
        photo[..., 0] = 40 * i
        photo[:300] = (70, 130, 180)
        for arr, zf, path in ((photo, zl, f'leftImg8bit/{split}/aachen/{name}_leftImg8bit.png'),
                              (label, zg, f'gtFine/{split}/aachen/{name}_gtFine_labelIds.png')):
          buf = manual / 'tmp.png'
          Image.fromarray(arr).save(buf, compress_level=1)
          zf.write(buf, path)
        if split == 'train':
          truth.append((label, photo))
  return truth


def test_tfds_cityscapes_builder_as_source(tmp_path, monkeypatch, caplog):
  tfds = pytest.importorskip('tensorflow_datasets')
  # tfds 4.9 imports `importlib_resources` (not installed) when locating builder code;
  # the standard library module has what it needs.
  monkeypatch.setitem(sys.modules, 'importlib_resources', importlib.import_module(
      'importlib.resources'))
  manual = tmp_path / 'manual'
  manual.mkdir()
  truth = _write_cityscapes_zips(manual)
  data_dir = tmp_path / 'tfds'
  builder = tfds.builder('cityscapes', data_dir=str(data_dir))
  builder.download_and_prepare(
      download_dir=str(tmp_path / 'dl'), file_format='array_record',
      download_config=tfds.download.DownloadConfig(manual_dir=str(manual), try_download_gcs=False))
  c = tfds_config(data_dir, name='cityscapes')
  with caplog.at_level(logging.WARNING):
    assert pipeline.requires_no_instance(c)
  assert 'no_instance=True' in caplog.text
  c.model.no_instance = True
  src = sources.make_source(c)
  assert len(src) == 2 and not src.has_inst
  got = sorted((src[i] for i in range(2)), key=lambda e: e['name'].rsplit('(', 1)[1])
  for ex, (label, photo) in zip(got, truth):
    np.testing.assert_array_equal(ex['label'], label)
    np.testing.assert_array_equal(ex['image'], photo)
  c.data.phase = 'val'    # tfds calls it 'validation'
  assert pipeline.dataset_size(c) == 1
  c.data.phase = 'train'
  c.data.resize_or_crop, c.data.loadSize = 'scale_width', 256
  b = next(pipeline.make_train_iterator(c))
  assert sorted(b) == ['image', 'label'] and b['label'].shape == (1, 128, 256)


def test_build_cli(tmp_path):
  write_folder(tmp_path / 'src', n=2)
  cmd = [sys.executable, '-m', 'hdgan_jax.data.build',
         f'--config={os.path.join(ROOT, "experiments", "cityscapes.py")}',
         '--config.data.source=folder', f'--config.data.root={tmp_path / "src"}',
         f'--out={tmp_path / "out"}']
  run = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
  assert run.returncode == 0, run.stderr[-2000:]
  assert '--config.data.tfds_name=hdgan_pairs' in run.stdout
  assert pipeline.dataset_size(tfds_config(tmp_path / 'out')) == 2
  help_text = subprocess.run([sys.executable, '-m', 'hdgan_jax.data.build', '--helpshort'],
                             capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)
  assert '--out' in help_text.stdout + help_text.stderr
