r"""Segment-mean (instance-wise average pooling) speed against a per-id loop.

The baseline is the original's strategy in numpy: for every unique id, mask,
mean, write back. Both run in this process on the same map; the result is a
ratio, so it holds across machines.

  .venv/bin/python benchmarks/segment_mean.py --height=1024 --width=2048 --instances=60
"""

import json
import time

from absl import app, flags
import jax
import numpy as np

from hdgan_jax import models

flags.DEFINE_integer('height', 512, 'Map height.')
flags.DEFINE_integer('width', 1024, 'Map width.')
flags.DEFINE_integer('channels', 3, 'Feature channels (feat_num).')
flags.DEFINE_integer('instances', 60, 'Distinct ids in the map (Cityscapes averages ~40-80).')
flags.DEFINE_integer('repeats', 5, 'Timed repetitions (median reported).')
FLAGS = flags.FLAGS


def per_id_loop(feat, seg):
  out = np.empty_like(feat)
  for b in range(feat.shape[0]):
    for i in np.unique(seg[b]):
      m = seg[b] == i
      out[b][m] = feat[b][m].mean(0)
  return out


def main(_):
  rng = np.random.default_rng(0)
  h, w = FLAGS.height, FLAGS.width
  # blocky instance map in Cityscapes encoding: class*1000 + k
  cells = rng.choice(np.arange(FLAGS.instances) % 8 + 24, FLAGS.instances) * 1000 + np.arange(FLAGS.instances)
  grid = rng.integers(0, FLAGS.instances, (1, h // 32 + 1, w // 32 + 1))
  seg = np.kron(cells[grid], np.ones((1, 32, 32), np.int64))[:, :h, :w].astype(np.int32)
  feat = rng.normal(size=(1, h, w, FLAGS.channels)).astype(np.float32)
  fn = jax.jit(models.segment_mean)
  base = []
  for _ in range(FLAGS.repeats):
    t0 = time.perf_counter(); ref = per_id_loop(feat, seg); base.append(time.perf_counter() - t0)
  res = dict(height=h, width=w, instances=int(len(np.unique(seg))), device=str(jax.devices()[0]),
             loop_median_s=float(np.median(base)))
  print(f"segment_mean {h}x{w}, {res['instances']} ids; per-id numpy loop {res['loop_median_s']*1e3:.1f} ms")
  # uint16 maps (Cityscapes' PNG format) take the table path, int32 the sort path.
  for name, ids in (('table_uint16', seg.astype(np.uint16)), ('sort_int32', seg)):
    t0 = time.perf_counter()
    fn(feat, ids).block_until_ready()
    compile_s = time.perf_counter() - t0
    ours = []
    for _ in range(FLAGS.repeats):
      t0 = time.perf_counter(); y = fn(feat, ids).block_until_ready(); ours.append(time.perf_counter() - t0)
    med = float(np.median(ours))
    res[name] = dict(median_s=med, speedup_vs_loop=res['loop_median_s'] / med, compile_s=compile_s,
                     max_abs_err=float(np.abs(np.asarray(y) - ref).max()))
    print(f'  {name}: {med*1e3:.1f} ms -> {res["loop_median_s"] / med:.1f}x the loop')
  print('RESULT ' + json.dumps(res))


if __name__ == '__main__':
  app.run(main)
