r"""FID feature-extraction speed: images per second through the Flax Inception at 299x299.

Times the network alone on already-preprocessed 299x299 batches (median of
``--repeats`` jitted calls after one compile), the host preprocessing
(resize to 299 from ``--src_height x --src_width`` uint8), and, when torch is
installed, the same TorchScript network in PyTorch on the same inputs and
threads, so the ratio holds across machines. Also times the FID's matrix
square root both ways (scipy ``sqrtm`` vs the exact eigen route). The last
line is ``RESULT {json}``.

  .venv/bin/python benchmarks/fid.py --batch_size=16 --repeats=3
"""

import json
import os
import time

from absl import app, flags
import jax
import numpy as np

from hdgan_jax.fid import metrics, resize, weights

flags.DEFINE_integer('batch_size', 16, 'Images per call.')
flags.DEFINE_integer('repeats', 3, 'Timed repetitions (median reported).')
flags.DEFINE_integer('src_height', 1024, 'Source image height for the preprocessing timing.')
flags.DEFINE_integer('src_width', 2048, 'Source image width for the preprocessing timing.')
flags.DEFINE_bool('torch', True, 'Also time the TorchScript original with PyTorch, if installed.')
flags.DEFINE_bool('fid_math', True, 'Also time FID on 2048-d statistics (sqrtm vs exact).')
FLAGS = flags.FLAGS


def _median_time(fn, repeats):
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


def _torch_time(x, repeats):
  try:
    import torch  # optional dependency: only for the baseline
  except ImportError:
    return None
  torch.set_num_threads(os.cpu_count() or 1)
  module = torch.jit.load(weights.find_torchscript(), map_location='cpu').eval()
  xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
  with torch.no_grad():
    module(xt)  # warm-up (TorchScript profiles the first calls)
    return _median_time(lambda: module(xt), repeats)


def _fid_math_times():
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(2, 3000, 2048))
  a, b = metrics.Stats.from_features(x), metrics.Stats.from_features(y)
  t0 = time.perf_counter()
  standard = metrics.fid_from_stats(a.mu, a.sigma, b.mu, b.sigma)
  sqrtm_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  exact = metrics.fid_from_features(x, y)
  return dict(n=3000, sqrtm_s=sqrtm_s, exact_s=time.perf_counter() - t0,
              rel_diff=abs(exact / standard - 1))


def main(_):
  bs = FLAGS.batch_size
  rng = np.random.default_rng(0)
  t0 = time.perf_counter()
  ex = metrics.FeatureExtractor(batch_size=bs)
  load_s = time.perf_counter() - t0
  src = rng.integers(0, 256, (FLAGS.src_height, FLAGS.src_width, 3), dtype=np.uint8)
  prep_s = _median_time(lambda: resize.to_model_input(src), max(3, FLAGS.repeats))
  x = np.stack([resize.to_model_input(src)] * bs)
  t0 = time.perf_counter()
  ex.features_of_batch(x)
  compile_s = time.perf_counter() - t0
  jax_s = _median_time(lambda: ex.features_of_batch(x), FLAGS.repeats)
  res = dict(device=str(jax.devices()[0]), cpu_count=os.cpu_count(), batch_size=bs,
             weights_load_s=load_s, compile_s=compile_s, jax_batch_s=jax_s,
             jax_images_per_s=bs / jax_s, preprocess_ms_per_image=prep_s * 1e3,
             preprocess_src=f'{FLAGS.src_height}x{FLAGS.src_width}')
  print(f'Flax Inception on {res["device"]}: {bs / jax_s:.1f} images/s at 299x299 '
        f'(batch {bs}; compile {compile_s:.1f} s); preprocessing {prep_s * 1e3:.1f} ms/image '
        f'from {res["preprocess_src"]}')
  torch_s = _torch_time(x, FLAGS.repeats) if FLAGS.torch else None
  if torch_s:
    res.update(torch_batch_s=torch_s, torch_images_per_s=bs / torch_s,
               jax_speed_vs_torch=torch_s / jax_s)
    print(f'TorchScript original (torch, same threads): {bs / torch_s:.1f} images/s -> ours at '
          f'{torch_s / jax_s:.2f}x its speed')
  if FLAGS.fid_math:
    res['fid_math'] = _fid_math_times()
    print('FID of 3000 vs 3000 2048-d features: sqrtm {sqrtm_s:.1f} s, exact {exact_s:.1f} s '
          '(relative difference {rel_diff:.1e})'.format(**res['fid_math']))
  print('RESULT ' + json.dumps(res))


if __name__ == '__main__':
  app.run(main)
