r"""Times NVIDIA pix2pixHD's own train-loop iteration (or generator inference) on CPU.

The original's code stays outside this repository: point ``--pix2pixhd`` at a
checkout of github.com/NVIDIA/pix2pixHD. Same synthetic shapes and flags as
``benchmarks/train_step.py``; the iteration is train.py's (forward with all
losses, G backward + Adam step, D backward + Adam step). Its CUDA-only calls
become CPU ones by patching torch here, not its files.

Denormals: with random weights the original's backward passes produce
subnormal floats, which x86 handles ~5x slower (16.8 s instead of 3.0 s per
step at 256x512). XLA flushes them to zero; ``--flush_denormal`` (default on)
does the same for torch, so the original is timed at its best.

  .venv/bin/python benchmarks/original/step.py --pix2pixhd=/tmp/pix2pixHD \
      --netG=global --ngf=32 --height=256 --width=512
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time

import numpy as np
import torch

import stubs


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--pix2pixhd', required=True, help='checkout of NVIDIA/pix2pixHD')
  ap.add_argument('--netG', default='global')
  ap.add_argument('--ngf', type=int, default=64)
  ap.add_argument('--height', type=int, default=256)
  ap.add_argument('--width', type=int, default=512)
  ap.add_argument('--vgg', action='store_true', help='VGG19 perceptual loss (random weights)')
  ap.add_argument('--num_D', type=int, default=2)
  ap.add_argument('--infer', action='store_true')
  ap.add_argument('--steps', type=int, default=5)
  ap.add_argument('--warmup', type=int, default=1)
  ap.add_argument('--threads', type=int, default=2)
  ap.add_argument('--flush_denormal', type=int, default=1)
  a = ap.parse_args()
  torch.set_num_threads(a.threads)
  torch.set_flush_denormal(bool(a.flush_denormal))
  sys.path[:0] = [os.path.abspath(a.pix2pixhd), stubs.install()]
  torch.Tensor.cuda = lambda self, *args, **kw: self
  torch.nn.Module.cuda = lambda self, *args, **kw: self
  torch.cuda.FloatTensor = torch.FloatTensor
  torch.cuda.ByteTensor = torch.ByteTensor
  from options.train_options import TrainOptions  # pylint: disable=import-outside-toplevel
  from models.models import create_model  # pylint: disable=import-outside-toplevel
  argv = ['--name', 'bench', '--gpu_ids', '-1', '--label_nc', '35', '--ngf', str(a.ngf),
          '--netG', a.netG, '--resize_or_crop', 'none', '--num_D', str(a.num_D),
          '--checkpoints_dir', os.path.join('/tmp', 'p2phd_bench_ckpt'),
          '--loadSize', str(a.width), '--fineSize', str(a.width)]
  if not a.vgg:
    argv.append('--no_vgg_loss')
  sys.argv = ['train.py'] + argv
  opt = TrainOptions().parse(save=False)
  opt.gpu_ids = []
  model = create_model(opt)
  rng = np.random.default_rng(0)
  shape = (1, 1, a.height, a.width)
  label = torch.from_numpy(rng.integers(0, 35, shape).astype(np.float32))
  inst = torch.from_numpy(rng.integers(0, 3, shape).astype(np.float32))
  image = torch.from_numpy(np.tanh(rng.normal(size=(1, 3, a.height, a.width))).astype(np.float32))

  def step():
    if a.infer:
      with torch.no_grad():
        model.inference(label, inst, image)
      return
    losses, _ = model(label, inst, image, torch.zeros(1), infer=False)
    losses = [torch.mean(x) if not isinstance(x, int) else x for x in losses]
    d = dict(zip(model.loss_names, losses))
    loss_d = (d['D_fake'] + d['D_real']) * 0.5
    loss_g = d['G_GAN'] + d.get('G_GAN_Feat', 0) + d.get('G_VGG', 0)
    model.optimizer_G.zero_grad()
    loss_g.backward()
    model.optimizer_G.step()
    model.optimizer_D.zero_grad()
    loss_d.backward()
    model.optimizer_D.step()

  for _ in range(a.warmup):
    step()
  times = []
  for _ in range(a.steps):
    t0 = time.perf_counter()
    step()
    times.append(time.perf_counter() - t0)
  med = statistics.median(times)
  print(f"original {'infer' if a.infer else 'train'} {a.netG} ngf {a.ngf} {a.height}x{a.width}: "
        f"median {med:.3f}s, peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
  print('RESULT ' + json.dumps(dict(median_s=med, min_s=min(times), times_s=times,
                                    threads=torch.get_num_threads(), torch=torch.__version__,
                                    peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))


if __name__ == '__main__':
  main()
