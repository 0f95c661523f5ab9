"""Small generated datasets in every layout the data pipeline reads (helpers, plus self-tests).

The writers return the arrays they stored so tests can compare what the
pipeline reads with the truth. Maps are tiny (default 32x64) so every test
runs in milliseconds.
"""

import os

import numpy as np
from PIL import Image

from hdgan_jax import config

SAMPLES = os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'data',
                       'cityscapes-samples')
SUFFIX = {'label': '_gtFine_labelIds.png', 'inst': '_gtFine_instanceIds.png',
          'color': '_gtFine_color.png', 'image': '_leftImg8bit.png'}


def make_config(root='', source='folder', **data):
  """A config with a tiny global generator (multiple 4) reading ``root``."""
  c = config.get_config()
  c.model.update(dict(label_nc=35, netG='global', n_downsample_global=2))
  c.data.update(dict(source=source, root=str(root), num_workers=0, prefetch=1,
                     resize_or_crop='none', check='full'))
  c.data.update(data)
  return c


def scene(rng, h, w, label_nc=35):
  """Random blocky label ids, Cityscapes-style instance ids, photo and feature map."""
  label = rng.integers(0, label_nc, (h // 8 + 1, w // 8 + 1)).repeat(8, 0).repeat(8, 1)[:h, :w]
  label = label.astype(np.uint8)
  inst = label.astype(np.uint16)
  things = label >= 24
  inst[things] = label[things].astype(np.uint16) * 1000 + rng.integers(0, 3, things.sum())
  image = rng.integers(0, 256, (h, w, 3), np.uint8)
  feat = rng.integers(0, 256, (h, w, 3), np.uint8)
  return {'label': label, 'inst': inst, 'image': image, 'feat': feat}


def save(path, arr):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(arr).save(path)


def write_folder(root, n=4, h=32, w=64, seed=0, phase='train', feat=False, rgb_inputs=False,
                 names=None):
  """pix2pixHD's layout: {phase}_label/_inst/_img[/_feat], or _A/_B when rgb_inputs."""
  rng = np.random.default_rng(seed)
  out = []
  for i in range(n):
    s = scene(rng, h, w)
    name = names[i] if names else f'aachen_{i:06d}_000019'
    if rgb_inputs:
      s['label'] = rng.integers(0, 256, (h, w, 3), np.uint8)
      save(os.path.join(root, f'{phase}_A', f'{name}.png'), s['label'])
      save(os.path.join(root, f'{phase}_B', f'{name}.png'), s['image'])
      save(os.path.join(root, f'{phase}_inst', f'{name}.png'), s['inst'])
    else:
      save(os.path.join(root, f'{phase}_label', f'{name}{SUFFIX["label"]}'), s['label'])
      save(os.path.join(root, f'{phase}_inst', f'{name}{SUFFIX["inst"]}'), s['inst'])
      save(os.path.join(root, f'{phase}_img', f'{name}{SUFFIX["image"]}'), s['image'])
    if feat:
      save(os.path.join(root, f'{phase}_feat', f'{name}.png'), s['feat'])
    out.append(s)
  return out


def write_cityscapes(root, per_city=2, cities=('aachen', 'bochum'), h=32, w=64, seed=0,
                     phase='train', colors=None):
  """Cityscapes' tree; ``colors`` (a Palette) also writes *_gtFine_color.png (RGBA)."""
  rng = np.random.default_rng(seed)
  out = []
  for city in cities:
    for i in range(per_city):
      s = scene(rng, h, w)
      name = f'{city}_{i:06d}_000019'
      gt = os.path.join(root, 'gtFine', phase, city, name)
      save(gt + SUFFIX['label'], s['label'])
      save(gt + SUFFIX['inst'], s['inst'])
      if colors is not None:
        rgb = colors.to_colors(s['label'])
        save(gt + SUFFIX['color'], np.dstack([rgb, np.full((h, w), 255, np.uint8)]))
      save(os.path.join(root, 'leftImg8bit', phase, city, name + SUFFIX['image']), s['image'])
      out.append(s)
  return out


def test_writers_make_readable_files(tmp_path):
  truth = write_folder(tmp_path, n=1)
  path = os.path.join(tmp_path, 'train_inst', 'aachen_000000_000019' + SUFFIX['inst'])
  with Image.open(path) as img:
    assert img.mode == 'I;16'
    np.testing.assert_array_equal(np.asarray(img), truth[0]['inst'])
