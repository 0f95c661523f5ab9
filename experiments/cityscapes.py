r"""Cityscapes at 2048x1024, the paper's recipe: G1 + one local enhancer.

Model options match NVIDIA's released label2city_1024p checkpoint
(``--netG local --ngf 32``, 35 labels + instance edges) and its training script
(``--num_D 3``, VGG loss).

  python -m hdgan_jax.main --config=experiments/cityscapes.py \
      --workdir=runs/city --config.data.root=/data/cityscapes
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
  return c
