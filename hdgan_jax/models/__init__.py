"""pix2pixHD's networks as flax.linen modules, built from a model ConfigDict.

Stable API: :func:`make_generator`, :func:`make_discriminator`,
:func:`make_encoder`, :func:`instance_edges`, :func:`encode_input`,
:func:`segment_mean`.
"""

import jax.numpy as jnp

from hdgan_jax.models.discriminator import MultiscaleDiscriminator, NLayerDiscriminator
from hdgan_jax.models.encoder import Encoder
from hdgan_jax.models.generator import GlobalGenerator, LocalEnhancer, required_multiple
from hdgan_jax.models.inputs import (check_label_ids, discriminator_input_nc,
                                     encode_input, generator_input_nc, instance_edges)
from hdgan_jax.models import lowering, remat
from hdgan_jax.models.layers import resolve_dtype
from hdgan_jax.models.segment import segment_mean


def remat_policy(cfg) -> str:
  """``cfg.remat`` ('none' when absent, as in configs saved before it existed)."""
  return remat.check(cfg.get('remat', 'none'))


def use_lowering(cfg) -> None:
  """Makes ``cfg.conv_lowering`` the process's conv lowering (models/lowering.py).

  Read when a function is traced, like a ``jax.config`` flag; every ``make_*``
  below applies it, so building a network from a config selects its lowering.
  """
  lowering.set_default(cfg.get('conv_lowering', 'auto'))


def _categorical(cfg) -> dict:
  """encode_input's channel layout (one-hot labels, then the edge map), which lets the
  convs that see it (G's first, D's condition) run as lookups on CPU; {} for RGB maps."""
  if cfg.label_nc == 0:
    return {}
  return dict(onehot_nc=cfg.label_nc, binary_nc=0 if cfg.no_instance else 1)


def make_generator(cfg, *, train: bool = False):
  """G from ``cfg.netG``: 'global' (G1) or 'local' (G1 + n local enhancers)."""
  use_lowering(cfg)
  dtype = resolve_dtype(cfg.get('dtype', 'float32'))
  if cfg.netG == 'global':
    return GlobalGenerator(cfg.output_nc, cfg.ngf, cfg.n_downsample_global,
                           cfg.n_blocks_global, cfg.norm, train=train, dtype=dtype,
                           remat=remat_policy(cfg), **_categorical(cfg))
  if cfg.netG == 'local':
    if cfg.n_local_enhancers < 1:
      raise ValueError('model.n_local_enhancers must be >= 1 for netG=local, '
                       f'got {cfg.n_local_enhancers}')
    return LocalEnhancer(cfg.output_nc, cfg.ngf, cfg.n_downsample_global,
                         cfg.n_blocks_global, cfg.n_local_enhancers,
                         cfg.n_blocks_local, cfg.norm, train=train, dtype=dtype,
                         remat=remat_policy(cfg), **_categorical(cfg))
  raise ValueError(f"model.netG={cfg.netG!r} is not known; use 'global' or 'local'")


def make_discriminator(cfg, *, train: bool = False):
  """The multi-scale D: ``num_D`` PatchGANs with ``n_layers_D`` layers."""
  use_lowering(cfg)
  return MultiscaleDiscriminator(cfg.ndf, cfg.n_layers_D, cfg.num_D, cfg.norm,
                                 train=train, dtype=resolve_dtype(cfg.get('dtype', 'float32')),
                                 remat=remat_policy(cfg), **_categorical(cfg))


def make_encoder(cfg, *, train: bool = False):
  """The feature encoder E with instance-wise average pooling."""
  use_lowering(cfg)
  return Encoder(cfg.feat_num, cfg.nef, cfg.n_downsample_E, cfg.norm,
                 train=train, dtype=resolve_dtype(cfg.get('dtype', 'float32')),
                 remat=remat_policy(cfg))


def make_module_and_inputs(net: str, cfg, *, batch: int = 1, size=None, train: bool = False):
  """A network by name ('G', 'D', 'E') and zero inputs of a valid shape for ``init``.

  ``size`` (H, W) defaults to the smallest size the network accepts.
  """
  if net == 'G':
    h, w = size or (required_multiple(cfg),) * 2
    return make_generator(cfg, train=train), (jnp.zeros((batch, h, w, generator_input_nc(cfg))),)
  if net == 'D':
    h, w = size or (64, 64)
    return (make_discriminator(cfg, train=train),
            (jnp.zeros((batch, h, w, discriminator_input_nc(cfg))),))
  if net == 'E':
    h, w = size or (2 ** cfg.n_downsample_E,) * 2
    return (make_encoder(cfg, train=train),
            (jnp.zeros((batch, h, w, cfg.output_nc)), jnp.zeros((batch, h, w), jnp.int32)))
  raise ValueError(f"net must be 'G', 'D' or 'E', got {net!r}")


def init_variables(net: str, cfg, rng):
  """Freshly initialised variables of network ``net`` for ``cfg``."""
  module, args = make_module_and_inputs(net, cfg)
  return module.init(rng, *args)
