r"""Cityscapes at 2048x1024, the paper's recipe: G1 + one local enhancer.

Model options match NVIDIA's released label2city_1024p checkpoint
(``--netG local --ngf 32``, 35 labels + instance edges) and its training script
(``--num_D 3 --niter 50 --niter_decay 50 --niter_fix_global 10
--resize_or_crop none``, VGG19 loss). Progressive training as the paper: first
train experiments/cityscapes_512p.py, then start this one from it.

  python -m hdgan_jax.main --config=experiments/cityscapes_512p.py --workdir=runs/city512 \
      --config.data.root=/data/cityscapes
  python -m hdgan_jax.main --config=experiments/cityscapes.py --workdir=runs/city \
      --config.data.root=/data/cityscapes --config.init_from=runs/city512
"""

from hdgan_jax import config as base


def get_config():
  c = base.get_config()
  m = c.model
  m.label_nc = 35
  m.netG = 'local'
  m.ngf = 32
  m.n_local_enhancers = 1
  m.num_D = 3
  c.data.source = 'cityscapes'
  c.data.resize_or_crop = 'none'   # full 2048x1024
  c.niter = 50
  c.niter_decay = 50
  c.niter_fix_global = 10
  c.perceptual_backbone = 'vgg19'
  c.log_every_steps = 100
  c.sample_every_steps = 1000
  c.checkpoint_every_steps = 2000
  return c
