r"""Cityscapes at 1024x512 with the global generator G1 alone (label2city_512p).

  python -m hdgan_jax.main --config=experiments/cityscapes_512p.py --workdir=runs/city512
"""

from hdgan_jax import config as base


def get_config():
  c = base.get_config()
  c.model.label_nc = 35
  c.model.netG = 'global'
  c.model.ngf = 64
  return c
