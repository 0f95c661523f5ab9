"""Rematerialisation (``model.remat``): what the backward pass keeps and what it recomputes.

* ``'none'``: every intermediate the backward pass needs is kept.
* ``'blocks'``: every unit (a residual block; a conv + norm + activation; a
  VGG conv + ReLU; one discriminator layer) keeps only its input and
  recomputes its insides during the backward pass (about one extra forward).
* ``'full'``: ``'blocks'`` inside, and in addition each generator level (G1,
  every enhancer), each discriminator scale and the whole VGG loss keep only
  their inputs; recomputing a level then keeps its units' inputs for as long
  as that level's backward runs.

The helpers wrap a function ``fn(module, *arrays)`` with flax's lifted
``nn.checkpoint``; submodules created inside keep their names, so parameters,
checkpoints and weight conversion are the same under every policy.
"""

import flax.linen as nn
import jax

POLICIES = ('none', 'blocks', 'full')


def check(policy: str) -> str:
  if policy not in POLICIES:
    raise ValueError(f'model.remat={policy!r} is not known; use one of {POLICIES}')
  return policy


def _wrap(fn, enabled: bool):
  if not enabled:
    return fn
  return nn.checkpoint(fn, policy=jax.checkpoint_policies.nothing_saveable, prevent_cse=True)


def unit(fn, policy: str):
  """``fn(module, *arrays)``, checkpointed per unit under 'blocks' and 'full'."""
  return _wrap(fn, check(policy) != 'none')


def level(fn, policy: str):
  """``fn(module, *arrays)``, checkpointed as a whole level under 'full' only."""
  return _wrap(fn, check(policy) == 'full')


def unit_module(cls, policy: str):
  """A module class whose calls keep only their inputs under 'blocks' and 'full'."""
  if check(policy) == 'none':
    return cls
  return nn.checkpoint(cls, policy=jax.checkpoint_policies.nothing_saveable, prevent_cse=True)


def level_module(cls, policy: str):
  """A module class checkpointed as a whole under 'full' only."""
  if check(policy) != 'full':
    return cls
  return nn.checkpoint(cls, policy=jax.checkpoint_policies.nothing_saveable, prevent_cse=True)
