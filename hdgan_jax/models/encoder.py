"""The instance feature encoder E (paper Sec. 3.4).

E has the global generator's layout without residual blocks (so its
parameters line up with the original's ``model.*`` indices) and ends in an
instance-wise average pooling: every pixel gets the mean feature of its
instance, giving one low-dimensional style code per object.
"""

import flax.linen as nn
import jax.numpy as jnp

from hdgan_jax.models import generator, layers, segment


class Encoder(nn.Module):
  """E(x, inst) -> (N, H, W, feat_num) features, constant on each instance."""
  feat_num: int = 3
  nef: int = 16
  n_downsampling: int = 4
  norm: str = 'instance'
  train: bool = False
  dtype: layers.Dtype = jnp.float32
  remat: str = 'none'

  @nn.compact
  def __call__(self, image, inst):
    feats = generator.GlobalGenerator(
        self.feat_num, self.nef, self.n_downsampling, 0, self.norm,
        train=self.train, dtype=self.dtype, remat=self.remat, name='net')(image)
    return segment.segment_mean(feats, inst)
