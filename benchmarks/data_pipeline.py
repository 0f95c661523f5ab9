r"""Input pipeline throughput at Cityscapes' 2048x1024: images per second.

Times ``pipeline.make_train_iterator`` end to end (PNG decode of label,
instance and photo, resize/crop/flip, batch assembly, float conversion of the
photo; one-hot happens on the device, not here) with the Cityscapes experiment
(``experiments/cityscapes.py``, batch 1), for each worker count. Fixtures are
the shared Cityscapes samples when present (``../shared/data/cityscapes-samples``)
or synthetic 2048x1024 PNGs written to a temp dir (blocky label/instance maps
and a photo Paeth-filtered like libpng's, ~2.4 MB, decoding about as slowly
as a real one).

Besides wall-clock images/s (which depends on what else runs on the machine)
it reports CPU ms per image summed over the main process and the workers, and
what that cost sustains when each worker has a free core.

  .venv/bin/python benchmarks/data_pipeline.py --workers=0,1,2 --images=48
"""

import importlib.util
import json
import multiprocessing
import os
import struct
import tempfile
import time
import zlib

from absl import app, flags
import numpy as np
from PIL import Image

from hdgan_jax.data import pipeline

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'shared', 'data',
                      'cityscapes-samples')
flags.DEFINE_string('workers', '1,2', 'Comma-separated data.num_workers values to time.')
flags.DEFINE_string('modes', 'none,scale_width',
                    'resize_or_crop modes: none keeps 2048x1024 (the 1024p recipe), '
                    'scale_width makes 1024x512 (the default).')
flags.DEFINE_integer('images', 48, 'Timed images per setting (after the warm-up).')
flags.DEFINE_integer('warmup', 4, 'Untimed batches first (worker start-up, caches).')
flags.DEFINE_enum('fixtures', 'auto', ['auto', 'shared', 'synthetic'],
                  'auto: the shared Cityscapes samples if present, else synthetic PNGs.')
flags.DEFINE_integer('num_fixtures', 8, 'Synthetic examples to write.')
FLAGS = flags.FLAGS


def write_png_paeth(path, rgb):
  """An RGB PNG with the Paeth filter on every row, as libpng writes photos.

  (PIL's encoder picks cheaper filters, which decode twice as fast as real
  Cityscapes photos and would flatter the benchmark.)
  """
  h, w, c = rgb.shape
  a = rgb.reshape(h, w * c).astype(np.int16)
  left, up, upleft = np.zeros_like(a), np.zeros_like(a), np.zeros_like(a)
  left[:, c:], up[1:], upleft[1:, c:] = a[:, :-c], a[:-1], a[:-1, :-c]
  p = left + up - upleft
  pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - upleft)
  pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
  rows = np.concatenate([np.full((h, 1), 4, np.uint8), ((a - pred) % 256).astype(np.uint8)], 1)

  def chunk(kind, data):
    return (struct.pack('>I', len(data)) + kind + data
            + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff))
  with open(path, 'wb') as f:
    f.write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0))
            + chunk(b'IDAT', zlib.compress(rows.tobytes(), 6)) + chunk(b'IEND', b''))


def write_synthetic(root, n, seed=0):
  """n Cityscapes-like 2048x1024 triplets in the folder layout under root."""
  rng = np.random.default_rng(seed)
  h, w = 1024, 2048
  for sub in ('train_label', 'train_inst', 'train_img'):
    os.makedirs(os.path.join(root, sub), exist_ok=True)
  yy, xx = np.mgrid[0:h, 0:w]
  for i in range(n):
    label = np.full((h, w), 23, np.uint8)                     # sky
    label[h // 3:] = 11                                        # buildings
    label[h // 2:] = 7                                         # road
    inst = label.astype(np.uint16)
    for k in range(12):                                        # cars and persons
      cls = (26, 24)[k % 2]
      x0, y0 = rng.integers(0, w - 300), rng.integers(h // 2, h - 200)
      bw, bh = rng.integers(60, 300), rng.integers(60, 200)
      label[y0:y0 + bh, x0:x0 + bw] = cls
      inst[y0:y0 + bh, x0:x0 + bw] = cls * 1000 + k
    colors = rng.integers(0, 256, (256, 3))
    photo = colors[label] + (xx[..., None] * 40 // w) + rng.normal(0, 1, (h, w, 3))
    photo = np.clip(photo, 0, 255).astype(np.uint8)
    name = f'synth_{i:06d}_000019'
    Image.fromarray(label).save(os.path.join(root, 'train_label', f'{name}_gtFine_labelIds.png'))
    Image.fromarray(inst).save(os.path.join(root, 'train_inst', f'{name}_gtFine_instanceIds.png'))
    write_png_paeth(os.path.join(root, 'train_img', f'{name}_leftImg8bit.png'), photo)


def load_experiment():
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'experiments',
                      'cityscapes.py')
  spec = importlib.util.spec_from_file_location('cityscapes_experiment', path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config()


def cpu_seconds():
  """CPU time of this process and its live children (the grain workers)."""
  total = time.process_time()
  tick = os.sysconf('SC_CLK_TCK')
  for child in multiprocessing.active_children():
    try:
      with open(f'/proc/{child.pid}/stat', encoding='ascii') as f:
        fields = f.read().rsplit(')', 1)[1].split()
      total += (int(fields[11]) + int(fields[12])) / tick
    except OSError:
      pass
  return total


def time_setting(config, warmup, images):
  """(images/s wall, CPU ms per image over all processes, warm-up s, batch shape)."""
  it = pipeline.make_train_iterator(config)
  t0 = time.perf_counter()
  for _ in range(warmup):
    batch = next(it)
  start_s = time.perf_counter() - t0
  time.sleep(1.0)  # let the workers fill their buffers, then count from a steady state
  for _ in range(warmup):
    batch = next(it)
  c0, t0 = cpu_seconds(), time.perf_counter()
  for _ in range(images // config.batch_size):
    batch = next(it)
  elapsed, cpu = time.perf_counter() - t0, cpu_seconds() - c0
  shape = batch['image'].shape
  if hasattr(it, 'close'):
    it.close()
  return images / elapsed, 1000 * cpu / images, start_s, shape


def main(_):
  use_shared = FLAGS.fixtures == 'shared' or (FLAGS.fixtures == 'auto' and os.path.isdir(SHARED))
  with tempfile.TemporaryDirectory() as tmp:
    if use_shared:
      root, what = SHARED, 'shared Cityscapes samples'
    else:
      t0 = time.perf_counter()
      write_synthetic(tmp, FLAGS.num_fixtures)
      root = tmp
      what = f'{FLAGS.num_fixtures} synthetic triplets ({time.perf_counter() - t0:.1f} s)'
    config = load_experiment()
    config.data.source, config.data.root, config.batch_size = 'folder', root, 1
    n = pipeline.dataset_size(config)
    load = os.getloadavg()[0]
    print(f'fixtures: {what}, {n} examples of 2048x1024; {os.cpu_count()} CPU cores, '
          f'load average {load:.2f} before the run')
    res = {'fixtures': 'shared' if use_shared else 'synthetic', 'cpus': os.cpu_count(),
           'loadavg_before': round(load, 2), 'images_timed': FLAGS.images, 'settings': []}
    for mode in FLAGS.modes.split(','):
      for workers in [int(w) for w in FLAGS.workers.split(',')]:
        config.data.resize_or_crop, config.data.num_workers = mode, workers
        ips, cpu_ms, start_s, shape = time_setting(config, FLAGS.warmup, FLAGS.images)
        # What the CPU cost sustains with every worker (or the main process) on a free core.
        idle = 1000.0 * min(max(workers, 1), os.cpu_count()) / cpu_ms
        res['settings'].append({'resize_or_crop': mode, 'num_workers': workers,
                                'images_per_s': round(ips, 2), 'cpu_ms_per_image': round(cpu_ms, 1),
                                'idle_cores_images_per_s': round(idle, 1),
                                'warmup_s': round(start_s, 2), 'output_hw': list(shape[1:3])})
        print(f'  resize_or_crop={mode:12s} workers={workers}: {ips:6.1f} images/s wall, '
              f'{cpu_ms:5.1f} CPU ms/image (=> {idle:5.1f} images/s on idle cores), output '
              f'{shape[2]}x{shape[1]}, warm-up {start_s:.1f} s')
    print('RESULT ' + json.dumps(res))


if __name__ == '__main__':
  app.run(main)
