"""The dataset check: counts, histogram, and every kind of problem named with its file."""

import hashlib
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from hdgan_jax.data import check
from hdgan_jax.data.check import DataError
from test_data_fixtures import SAMPLES, SUFFIX, make_config, save, write_folder

ROOT = os.path.join(os.path.dirname(__file__), '..')


def test_clean_dataset_report(tmp_path):
  truth = write_folder(tmp_path, n=3)
  report = check.run_checks(make_config(tmp_path), full=True)
  assert report.ok and report.num_examples == report.num_checked == 3
  assert report.sizes == {'64x32': 3}
  assert sum(report.class_histogram.values()) == 3 * 32 * 64
  expected = np.bincount(np.concatenate([t['label'].ravel() for t in truth]))
  assert all(report.class_histogram.get(i, 0) == n for i, n in enumerate(expected))
  text = report.format()
  assert 'no problems found' in text and 'examples: 3' in text


def test_every_problem_is_reported_with_its_file(tmp_path):
  write_folder(tmp_path, n=5)
  name = 'aachen_{:06d}_000019'.format
  lbl = lambda i: os.path.join(tmp_path, 'train_label', name(i) + SUFFIX['label'])
  img = lambda i: os.path.join(tmp_path, 'train_img', name(i) + SUFFIX['image'])
  os.remove(img(0))                                               # unpaired
  save(img(1), np.zeros((30, 64, 3), np.uint8))                   # size mismatch
  save(lbl(2), np.full((32, 64), 40, np.uint8))                   # id >= label_nc
  data = open(img(3), 'rb').read()
  open(img(3), 'wb').write(data[:len(data) // 3])                 # truncated
  with pytest.raises(DataError) as e:
    check.run_checks(make_config(tmp_path), full=True)
  msg, report = str(e.value), e.value.report
  assert isinstance(e.value, ValueError)
  assert len(report.unpaired) == 2 and name(0) in msg           # its label and inst
  assert len(report.size_mismatches) == 1 and img(1) in msg and lbl(1) in msg
  assert len(report.bad_ids) == 1 and lbl(2) in msg and 'label_nc' in msg
  assert len(report.unreadable) == 1 and img(3) in msg and 'truncated' in msg
  assert report.num_examples == 4 and report.num_checked == 4
  assert 'data.check' in msg                                    # how to skip it


def test_sample_mode_decodes_a_sample(tmp_path, monkeypatch):
  write_folder(tmp_path, n=6)
  monkeypatch.setattr(check, 'SAMPLE_SIZE', 3)
  c = make_config(tmp_path, check='sample')
  report = check.run_checks(c)
  assert report.num_examples == 6 and report.num_checked == 3 and not report.full
  assert check.run_checks(c, full=True).num_checked == 6
  c.data.check = 'off'
  assert check.run_checks(c).skipped
  c.data.check = 'sometimes'
  with pytest.raises(ValueError, match='data.check'):
    check.run_checks(c)


def test_generator_size_and_batch_problems(tmp_path):
  write_folder(tmp_path, n=2, h=30, w=60)
  c = make_config(tmp_path, resize_or_crop='scale_width', loadSize=60)
  c.batch_size = 3
  with pytest.raises(DataError) as e:
    check.run_checks(c, full=True)
  assert 'multiples of 4' in str(e.value) and 'fewer than batch_size=3' in str(e.value)


@pytest.mark.skipif(not os.path.isdir(SAMPLES), reason='shared Cityscapes samples absent')
def test_real_samples_cli():
  cmd = [sys.executable, '-m', 'hdgan_jax.data.check',
         f'--config={os.path.join(ROOT, "experiments", "cityscapes.py")}',
         '--config.data.source=folder', f'--config.data.root={SAMPLES}']
  run = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
  assert run.returncode == 0, run.stdout + run.stderr[-2000:]
  assert 'examples: 8' in run.stdout and '26 car' in run.stdout
  assert 'no problems found' in run.stdout


def test_cli_fails_on_bad_data(tmp_path):
  write_folder(tmp_path, n=2)
  os.remove(os.path.join(tmp_path, 'train_img', 'aachen_000001_000019' + SUFFIX['image']))
  cmd = [sys.executable, '-m', 'hdgan_jax.data.check',
         f'--config={os.path.join(ROOT, "experiments", "cityscapes.py")}',
         '--config.data.source=folder', f'--config.data.root={tmp_path}']
  run = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
  assert run.returncode == 1
  assert 'files without a partner (2)' in run.stdout and 'aachen_000001_000019' in run.stdout


def _hashes(root):
  out = {}
  for folder, _, names in os.walk(root):
    for n in names:
      p = os.path.join(folder, n)
      out[p] = hashlib.sha256(open(p, 'rb').read()).hexdigest()
  return out


def test_lossy_maps_and_scene_name_clashes_are_reported(tmp_path):
  write_folder(tmp_path, n=4)
  lbl = os.path.join(tmp_path, 'train_label', 'aachen_000000_000019' + SUFFIX['label'])
  os.remove(lbl)
  jpg = lbl[:-4] + '.jpg'
  Image.fromarray(np.full((32, 64), 7, np.uint8)).save(jpg)
  twin = os.path.join(tmp_path, 'train_label', 'aachen_000001_000019_label.png')
  save(twin, np.full((32, 64), 7, np.uint8))
  before = _hashes(tmp_path)
  with pytest.raises(DataError) as e:
    check.run_checks(make_config(tmp_path, check='sample'))
  report, msg = e.value.report, str(e.value)
  assert report.problems['lossy'] and jpg in msg and 'export it as PNG' in msg
  assert report.problems['names'] and twin in msg and 'aachen_000001_000019' + SUFFIX['label'] in msg
  assert report.num_examples == 3    # the JPEG's example is listed, not decoded
  assert _hashes(tmp_path) == before


def test_cli_user_error_is_one_line_and_verbose_shows_the_traceback(tmp_path):
  write_folder(tmp_path, n=1)
  cmd = [sys.executable, '-m', 'hdgan_jax.data.check',
         f'--config={os.path.join(ROOT, "experiments", "cityscapes.py")}',
         '--config.data.source=folder', f'--config.data.root={tmp_path}',
         '--config.data.check=sometimes']
  run = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
  assert run.returncode == 1
  lines = run.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: data.check=') and 'Traceback' not in run.stderr
  run = subprocess.run(cmd + ['--verbose'], capture_output=True, text=True, cwd=ROOT,
                       timeout=120, check=False)
  assert run.returncode == 1 and 'Traceback' in run.stderr and 'error: data.check=' in run.stderr
  run = subprocess.run(cmd[:-1] + ['--config.data.bogus=1'], capture_output=True, text=True,
                       cwd=ROOT, timeout=120, check=False)
  assert run.returncode == 1 and 'Traceback' not in run.stderr
  assert run.stderr.strip().startswith('error: bad --config override')
