"""pix2pixHD's objective (paper Eq. 5 and 6), as pure functions of arrays.

* :func:`gan_loss` - the adversarial term summed over discriminator scales, on
  each scale's last feature (the prediction map). 'lsgan' (the original's
  default, MSE to 1/0), 'vanilla' (BCE on logits; the original's ``no_lsgan``)
  and 'hinge'.
* :func:`feature_matching` - L1 between D's intermediate features on real and
  fake, weighted (1/num_D)(4/(n_layers_D+1)) lambda_feat as the original.
* :func:`perceptual` - VGG feature L1 with weights 1/32 .. 1 (times lambda).

Means are over all elements, like PyTorch's default reductions.
"""

from typing import Sequence

import jax
import jax.numpy as jnp

VGG_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)
GAN_MODES = ('lsgan', 'vanilla', 'hinge')


def gan_mode(model_cfg, override: str = '') -> str:
  """The adversarial loss: ``config.gan_mode`` if set, else from ``no_lsgan``."""
  mode = override or ('vanilla' if model_cfg.no_lsgan else 'lsgan')
  if mode not in GAN_MODES:
    raise ValueError(f'gan_mode={mode!r} is not known; use one of {GAN_MODES}')
  return mode


def _one_scale(pred, target_is_real: bool, mode: str, for_discriminator: bool):
  pred = pred.astype(jnp.float32)
  if mode == 'lsgan':
    return jnp.mean(jnp.square(pred - (1.0 if target_is_real else 0.0)))
  if mode == 'vanilla':
    # BCE(sigmoid(pred), t) computed stably from logits.
    return jnp.mean(jax.nn.softplus(-pred) if target_is_real else jax.nn.softplus(pred))
  if for_discriminator:  # hinge
    return jnp.mean(jax.nn.relu(1.0 - pred) if target_is_real else jax.nn.relu(1.0 + pred))
  return -jnp.mean(pred)


def gan_loss(outputs: Sequence[Sequence[jax.Array]], target_is_real: bool, mode: str = 'lsgan',
             *, for_discriminator: bool = True) -> jax.Array:
  """Adversarial loss summed over scales (each scale: list of D features).

  ``for_discriminator`` only matters for hinge, whose generator term is -D(fake).
  """
  return sum(_one_scale(scale[-1], target_is_real, mode, for_discriminator) for scale in outputs)


def feature_matching(fake_outputs, real_outputs, *, num_D: int, n_layers_D: int,
                     lambda_feat: float = 10.0) -> jax.Array:
  """Discriminator feature matching (Eq. 4), real features held constant."""
  w = (1.0 / num_D) * (4.0 / (n_layers_D + 1)) * lambda_feat
  total = jnp.float32(0.0)
  for fake_scale, real_scale in zip(fake_outputs, real_outputs):
    for f, r in zip(fake_scale[:-1], real_scale[:-1]):
      total += w * jnp.mean(jnp.abs(f.astype(jnp.float32) -
                                    jax.lax.stop_gradient(r).astype(jnp.float32)))
  return total


def perceptual(fake_feats: Sequence[jax.Array], real_feats: Sequence[jax.Array], *,
               lambda_vgg: float = 10.0) -> jax.Array:
  """VGG loss: sum_i w_i L1(phi_i(fake), phi_i(real)), real held constant, times lambda."""
  total = jnp.float32(0.0)
  for w, f, r in zip(VGG_WEIGHTS, fake_feats, real_feats):
    total += w * jnp.mean(jnp.abs(f.astype(jnp.float32) -
                                  jax.lax.stop_gradient(r).astype(jnp.float32)))
  return lambda_vgg * total
