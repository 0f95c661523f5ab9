"""Multi-scale PatchGAN discriminators D1..Dk (paper Sec. 3.2).

Every discriminator returns all of its intermediate features (for the feature
matching loss, Eq. 4) with the prediction map last. Scale modules keep the
original's names, ``scale{i}``, and its quirk that the full-resolution output
(index 0) comes from ``scale{num_D-1}``, so checkpoints map one to one.

Every layer's output is pinned with :func:`hdgan_jax.mesh.constrain` (rows over
'space') and wrapped per ``model.remat``: a layer under 'blocks', a whole scale
under 'full' (:mod:`hdgan_jax.models.remat`).
"""

import functools

import flax.linen as nn
import jax.numpy as jnp

from hdgan_jax import mesh
from hdgan_jax.models import layers, remat

_KW = 4
_PADW = 2  # int(ceil((4 - 1) / 2)): sizes go 64 -> 33 -> 17 -> 9 -> 10 -> 11


class NLayerDiscriminator(nn.Module):
  """PatchGAN with ``n_layers`` stride-2 layers, then two stride-1 layers.

  Returns a list of ``n_layers + 2`` NHWC feature maps; the last is the
  one-channel prediction (raw scores: LSGAN targets or vanilla GAN logits).
  """
  ndf: int = 64
  n_layers: int = 3
  norm: str = 'instance'
  train: bool = False
  dtype: layers.Dtype = jnp.float32
  remat: str = 'none'
  onehot_nc: int = 0   # ``cond``'s layout, as G's input (inputs.encode_input); 0: not one-hot
  binary_nc: int = 0

  @nn.compact
  def __call__(self, x, cond=None):
    """``x``: the conditioned input, or just the image when ``cond`` is given (see below)."""
    def first(_, h, c):
      if c is None:
        h = layers.Conv(self.ndf, _KW, 2, _PADW, self.dtype, name='layer0')(h)
      else:
        h = layers.ConditionedConv(self.ndf, _KW, 2, _PADW, self.dtype, self.onehot_nc,
                                   self.binary_nc, name='layer0')(h, c)
      return mesh.constrain(nn.leaky_relu(h, 0.2))

    def layer(_, h, *, j, nf, stride):
      h = layers.Conv(nf, _KW, stride, _PADW, self.dtype, name=f'layer{j}')(h)
      h = layers.Norm(self.norm, self.train, name=f'layer{j}_norm')(h)
      return mesh.constrain(nn.leaky_relu(h, 0.2))

    def last(_, h, *, j):
      return mesh.constrain(layers.Conv(1, _KW, 1, _PADW, self.dtype, name=f'layer{j}')(h))

    unit = lambda fn, **static: remat.unit(functools.partial(fn, **static), self.remat)
    cond = None if cond is None else mesh.constrain(cond)
    feats = [unit(first)(self, mesh.constrain(x), cond)]
    nf = self.ndf
    for j in range(1, self.n_layers + 1):
      nf = min(nf * 2, 512)
      feats.append(unit(layer, j=j, nf=nf, stride=2 if j < self.n_layers else 1)(self, feats[-1]))
    feats.append(unit(last, j=self.n_layers + 1)(self, feats[-1]))
    return feats


class MultiscaleDiscriminator(nn.Module):
  """``num_D`` identical PatchGANs on an average-pooled image pyramid.

  Returns a list over scales, full resolution first; each entry is the list of
  that discriminator's features.
  """
  ndf: int = 64
  n_layers: int = 3
  num_D: int = 3
  norm: str = 'instance'
  train: bool = False
  dtype: layers.Dtype = jnp.float32
  remat: str = 'none'
  onehot_nc: int = 0   # ``cond``'s one-hot label channels (G's input layout); 0: none
  binary_nc: int = 0   # and 0/1 edge channels after them

  @nn.compact
  def __call__(self, x, cond=None):
    """D on ``concat(cond, x)``: pass the condition as ``cond`` (the step does) or inside ``x``.

    Both give the same numbers. With ``cond`` separate, the condition's pyramid
    and its part of every first conv are values of their own, which the CPU
    lowering shares between D's real and fake passes (:class:`layers.ConditionedConv`).
    Only the full-resolution D sees one-hot labels; the pooled pyramid is soft.
    """
    scale = remat.level_module(NLayerDiscriminator, self.remat)
    full = self.num_D - 1  # scale{num_D-1} runs on the full-resolution input
    nets = [scale(self.ndf, self.n_layers, self.norm, self.train, self.dtype, self.remat,
                  self.onehot_nc if i == full else 0, self.binary_nc if i == full else 0,
                  name=f'scale{i}') for i in range(self.num_D)]
    result = []
    x = mesh.constrain(x)
    cond = None if cond is None else mesh.constrain(cond)
    for k in range(self.num_D):
      result.append(nets[self.num_D - 1 - k](x, cond))
      if k != self.num_D - 1:
        x = mesh.constrain(layers.avg_pool_3x3_s2(x))
        cond = None if cond is None else mesh.constrain(layers.avg_pool_3x3_s2(cond))
    return result
