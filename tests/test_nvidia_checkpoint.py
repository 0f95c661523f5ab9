"""NVIDIA's released-model workflow in one command, checked against the original's test.py.

An original-format ``latest_net_G.pth`` (weights from the recipe in
tests/data/nvidia_test_py/README.md, keys and shapes those of the original's
``define_G``) goes through

  python -m hdgan_jax.main --config=experiments/cityscapes.py --mode=generate \
      --checkpoint=latest_net_G.pth --labels=... --instances=... --out=...

on real Cityscapes label maps, for the released 1024p shape (local G, ngf 32)
and the 512p shape (global G, ngf 64, by overrides). The images must be the
ones the original test.py wrote for the same file: at most 1 grey level apart
and at most 0.5 % of pixels different. Inputs run at 256x128
(``scale_width``, ``loadSize 256``) to keep the test short; the weights are the
full 182 M-parameter generators.
"""

import os
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from conftest import DATA, SHARED
from hdgan_jax import config as config_lib
from hdgan_jax.convert import io as weight_io
from hdgan_jax.convert.pix2pixhd import state_dict_shapes

pytest.importorskip('torch')
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = os.path.join(SHARED, 'data', 'cityscapes-samples')
REFS = os.path.join(DATA, 'nvidia_test_py')
SCENES = ['aachen_000000_000019', 'aachen_000001_000019', 'aachen_000002_000019']
SHAPES = {'1024p': dict(netG='local', ngf=32), '512p': dict(netG='global', ngf=64)}


def recipe_state_dict(netG: str, ngf: int):
  """The README's deterministic weights for every key of the original G."""
  m = config_lib.model_config()
  m.update(dict(label_nc=35, netG=netG, ngf=ngf, n_local_enhancers=1))
  sd = {}
  for k, shape in state_dict_shapes('G', m).items():
    rng = np.random.default_rng(zlib.crc32(k.encode()))
    sd[k] = (rng.standard_normal(shape) * 0.02).astype(np.float32)
  return sd


@pytest.fixture(scope='module')
def inputs(tmp_path_factory):
  if not os.path.isdir(SAMPLES):
    pytest.skip(f'{SAMPLES} (the shared Cityscapes samples) is not here')
  root = tmp_path_factory.mktemp('city')
  for role, folder, suffix in (('label', 'test_label', 'labelIds'),
                               ('inst', 'test_inst', 'instanceIds')):
    os.makedirs(root / folder)
    for s in SCENES:  # symlinks: the shared samples are read in place, never copied
      name = f'{s}_gtFine_{suffix}.png'
      os.symlink(os.path.join(SAMPLES, f'train_{role}', name), root / folder / name)
  return root


@pytest.mark.parametrize('shape', sorted(SHAPES))
def test_generate_from_original_pth_matches_original_test_py(shape, inputs, tmp_path):
  opts = SHAPES[shape]
  pth = str(tmp_path / 'latest_net_G.pth')
  weight_io.save_state_dict(recipe_state_dict(**opts), pth)
  out = tmp_path / 'results'
  cmd = [sys.executable, '-m', 'hdgan_jax.main', '--config=experiments/cityscapes.py',
         '--mode=generate', f'--checkpoint={pth}', f'--labels={inputs / "test_label"}',
         f'--instances={inputs / "test_inst"}', f'--out={out}',
         '--config.data.resize_or_crop=scale_width', '--config.data.loadSize=256']
  if shape == '512p':
    cmd += [f'--config.model.{k}={v}' for k, v in opts.items()]
  r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
  assert 'wrote 3 images' in r.stdout, r.stdout
  for s in SCENES:
    name = f'{s}_gtFine_labelIds_synthesized_image.png'
    ours = np.asarray(Image.open(out / name), np.int16)
    ref = np.asarray(Image.open(os.path.join(REFS, shape, name)), np.int16)
    assert ours.shape == ref.shape == (128, 256, 3)
    diff = np.abs(ours - ref)
    frac = (diff.max(-1) > 0).mean()
    print(f'{shape} {s}: max diff {diff.max()}, {frac:.4%} of pixels differ')
    assert diff.max() <= 1 and frac <= 0.005, (diff.max(), frac)
    assert ref.std() > 5  # the reference is a real image, not a constant


def test_a_mismatched_checkpoint_names_the_options_it_looks_like(tmp_path):
  """The 512p weights with the 1024p config: one error line that says which options fit."""
  sd = recipe_state_dict(netG='global', ngf=8)  # same layout as 512p, small
  pth = str(tmp_path / 'latest_net_G.pth')
  weight_io.save_state_dict(sd, pth)
  os.makedirs(tmp_path / 'l')
  Image.fromarray(np.zeros((64, 128), np.uint8)).save(tmp_path / 'l' / 'x.png')
  r = subprocess.run([sys.executable, '-m', 'hdgan_jax.main', '--config=experiments/cityscapes.py',
                      '--mode=generate', f'--checkpoint={pth}', f'--labels={tmp_path / "l"}',
                      '--config.model.no_instance=True', f'--out={tmp_path / "o"}'],
                     cwd=REPO, capture_output=True, text=True, timeout=300)
  assert r.returncode != 0
  assert 'Traceback' not in r.stderr, r.stderr[-2000:]
  assert 'netG=global, ngf=8, 36 input channels' in r.stderr, r.stderr[-2000:]
