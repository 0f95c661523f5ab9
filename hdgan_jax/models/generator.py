"""The coarse-to-fine generator G = {G1, G2, ..., Gn+1} (paper Sec. 3.2).

:class:`GlobalGenerator` is G1: a front end (7x7 conv, stride-2 convs), residual
blocks and a transposed-conv back end. :class:`LocalEnhancer` stacks
``n_local_enhancers`` enhancers on top of a G1 built at ``ngf * 2**n``; each
enhancer doubles the resolution and sums its front end with the last feature
map of the coarser level before its own residual blocks.

Submodule names are descriptive; ``hdgan_jax.convert`` maps them to the
original's ``model.*`` / ``model{n}_1.*`` / ``model{n}_2.*`` indices.

Every unit pins its output with :func:`hdgan_jax.mesh.constrain` (rows over the
mesh's 'space' axis when one image is split over devices) and is wrapped per
``model.remat`` (:mod:`hdgan_jax.models.remat`).
"""

import functools

import flax.linen as nn
import jax.numpy as jnp

from hdgan_jax import mesh
from hdgan_jax.models import layers, remat


class GlobalGenerator(nn.Module):
  """G1 (also the encoder's layout when ``n_blocks`` is 0).

  Attributes:
    output_nc: output channels of the final 7x7 conv.
    ngf: filters of the first conv; doubled at every downsampling.
    n_downsampling: number of stride-2 convs (and transposed convs).
    n_blocks: residual blocks at the bottleneck.
    with_head: False drops the final pad/conv/tanh (G1 inside a LocalEnhancer)
      and returns the last feature map instead.
    remat: ``model.remat`` (see :mod:`hdgan_jax.models.remat`).
    onehot_nc, binary_nc: the input's one-hot label and 0/1 edge channels, which
      let the CPU lowering run the first conv as a lookup (:class:`layers.InputConv`);
      0 for an input that is not :func:`inputs.encode_input`'s.
  """
  output_nc: int = 3
  ngf: int = 64
  n_downsampling: int = 3
  n_blocks: int = 9
  norm: str = 'instance'
  with_head: bool = True
  train: bool = False
  dtype: layers.Dtype = jnp.float32
  remat: str = 'none'
  onehot_nc: int = 0
  binary_nc: int = 0

  @nn.compact
  def __call__(self, x):
    norm = lambda name: layers.Norm(self.norm, self.train, name=name)
    unit = lambda fn: remat.unit(fn, self.remat)

    def conv_in(_, x):
      h = layers.InputConv(self.ngf, 7, dtype=self.dtype, onehot_nc=self.onehot_nc,
                           binary_nc=self.binary_nc, name='conv_in')(x)
      return mesh.constrain(nn.relu(norm('conv_in_norm')(h)))

    def down(_, h, *, i):
      h = layers.Conv(self.ngf * 2 ** (i + 1), 3, strides=2, padding=1,
                      dtype=self.dtype, name=f'down_{i}')(h)
      return mesh.constrain(nn.relu(norm(f'down_{i}_norm')(h)))

    def up(_, h, *, i):
      h = layers.ConvTranspose(self.ngf * 2 ** (self.n_downsampling - i - 1),
                               dtype=self.dtype, name=f'up_{i}')(h)
      return mesh.constrain(nn.relu(norm(f'up_{i}_norm')(h)))

    def head(_, h):
      h = layers.Conv(self.output_nc, 7, dtype=self.dtype, name='conv_out')(layers.reflect_pad(h, 3))
      return mesh.constrain(jnp.tanh(h))

    h = unit(conv_in)(self, mesh.constrain(x))
    for i in range(self.n_downsampling):
      h = unit(functools.partial(down, i=i))(self, h)
    dim = self.ngf * 2 ** self.n_downsampling
    block = remat.unit_module(layers.ResnetBlock, self.remat)
    for i in range(self.n_blocks):
      h = mesh.constrain(block(dim, self.norm, self.train, self.dtype, name=f'res_{i}')(h))
    for i in range(self.n_downsampling):
      h = unit(functools.partial(up, i=i))(self, h)
    if not self.with_head:
      return h
    return unit(head)(self, h)


class Enhancer(nn.Module):
  """One local enhancer G_k: front end, (sum with coarser features), back end."""
  ngf: int
  n_blocks: int
  output_nc: int
  with_head: bool
  norm: str = 'instance'
  train: bool = False
  dtype: layers.Dtype = jnp.float32
  remat: str = 'none'
  onehot_nc: int = 0
  binary_nc: int = 0

  @nn.compact
  def __call__(self, x, coarser):
    norm = lambda name: layers.Norm(self.norm, self.train, name=name)
    unit = lambda fn: remat.unit(fn, self.remat)

    def front(_, x):
      h = layers.InputConv(self.ngf, 7, dtype=self.dtype, onehot_nc=self.onehot_nc,
                           binary_nc=self.binary_nc, name='conv_in')(x)
      return mesh.constrain(nn.relu(norm('conv_in_norm')(h)))

    def down(_, h, coarser):
      h = layers.Conv(self.ngf * 2, 3, strides=2, padding=1, dtype=self.dtype, name='down')(h)
      h = nn.relu(norm('down_norm')(h))
      return mesh.constrain(h + coarser)  # the paper's element-wise sum of G_k^(F) and G_{k-1}^(B)

    def up(_, h):
      h = layers.ConvTranspose(self.ngf, dtype=self.dtype, name='up')(h)
      return mesh.constrain(nn.relu(norm('up_norm')(h)))

    def head(_, h):
      h = layers.Conv(self.output_nc, 7, dtype=self.dtype, name='conv_out')(layers.reflect_pad(h, 3))
      return mesh.constrain(jnp.tanh(h))

    h = unit(front)(self, mesh.constrain(x))
    h = unit(down)(self, h, coarser)
    block = remat.unit_module(layers.ResnetBlock, self.remat)
    for i in range(self.n_blocks):
      h = mesh.constrain(block(self.ngf * 2, self.norm, self.train, self.dtype, name=f'res_{i}')(h))
    h = unit(up)(self, h)
    if not self.with_head:
      return h
    return unit(head)(self, h)


class LocalEnhancer(nn.Module):
  """G = {G1, G2, ..., G_{n+1}} with ``n_local_enhancers`` = n.

  The input pyramid is built with :func:`layers.avg_pool_3x3_s2`; G1 sees the
  coarsest level and ``enhancer_{n}`` (n = 1 is the coarsest enhancer, as in
  the original's ``model1_*``) sees level n_local_enhancers - n.
  """
  output_nc: int = 3
  ngf: int = 32
  n_downsample_global: int = 3
  n_blocks_global: int = 9
  n_local_enhancers: int = 1
  n_blocks_local: int = 3
  norm: str = 'instance'
  train: bool = False
  dtype: layers.Dtype = jnp.float32
  remat: str = 'none'
  onehot_nc: int = 0
  binary_nc: int = 0

  @nn.compact
  def __call__(self, x):
    n = self.n_local_enhancers
    pyramid = [mesh.constrain(x)]
    for _ in range(n):
      pyramid.append(mesh.constrain(layers.avg_pool_3x3_s2(pyramid[-1])))
    g1 = remat.level_module(GlobalGenerator, self.remat)
    h = g1(self.output_nc, self.ngf * 2 ** n, self.n_downsample_global,
           self.n_blocks_global, self.norm, with_head=False,
           train=self.train, dtype=self.dtype, remat=self.remat, name='global')(pyramid[-1])
    enhancer = remat.level_module(Enhancer, self.remat)
    for k in range(1, n + 1):
      h = enhancer(self.ngf * 2 ** (n - k), self.n_blocks_local, self.output_nc,
                   with_head=(k == n), norm=self.norm, train=self.train,
                   dtype=self.dtype, remat=self.remat,
                   # only the finest level sees the one-hot input itself (the
                   # coarser ones see its average-pooled, soft, pyramid levels)
                   onehot_nc=self.onehot_nc if k == n else 0,
                   binary_nc=self.binary_nc if k == n else 0,
                   name=f'enhancer_{k}')(pyramid[n - k], h)
    return h


def required_multiple(cfg) -> int:
  """Input height and width must be divisible by this for G to keep sizes.

  Each stride-2 conv must see an even size for the transposed convs to return
  exactly the input size: 2**n_downsample_global, times 2 per local enhancer.
  """
  m = 2 ** cfg.n_downsample_global
  if cfg.netG == 'local':
    m *= 2 ** cfg.n_local_enhancers
  return m
