r"""Cityscapes at 1024x512 with the global generator G1 alone (label2city_512p).

The first stage of progressive training (see experiments/cityscapes.py). The
original's defaults: scale_width to loadSize 1024, num_D 2, 200 epochs.

  python -m hdgan_jax.main --config=experiments/cityscapes_512p.py --workdir=runs/city512 \
      --config.data.root=/data/cityscapes
"""

from hdgan_jax import config as base


def get_config():
  c = base.get_config()
  c.model.label_nc = 35
  c.model.netG = 'global'
  c.model.ngf = 64
  c.data.source = 'cityscapes'
  c.data.resize_or_crop = 'scale_width'
  c.data.loadSize = 1024
  c.perceptual_backbone = 'vgg19'
  c.log_every_steps = 100
  c.sample_every_steps = 1000
  c.checkpoint_every_steps = 2000
  return c
