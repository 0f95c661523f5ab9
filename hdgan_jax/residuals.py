"""What one train step keeps for its backward pass: JAX's saved residuals, traced only.

``benchmarks/memory.py`` and ``tests/test_remat.py`` count these bytes. The
residuals come from tracing the step's three VJPs (G; D on real and fake; the
VGG loss) exactly as :func:`hdgan_jax.step.compute_grads` runs them, inside
``jax.eval_shape``: nothing is computed or allocated, so the paper's 4096x2048
setup is measured in seconds on any machine, and the figures do not depend on
the backend. Arguments (parameters, the batch) are not counted; they are state
and input, not residuals.
"""

from typing import List, Tuple

import jax
# The public jax.ad_checkpoint.print_saved_residuals only prints this list; the
# shapes and dtypes come from the function it calls.
from jax._src.ad_checkpoint import saved_residuals
import jax.numpy as jnp
import numpy as np

from hdgan_jax import step


def nbytes(aval) -> int:
  return int(np.prod(aval.shape, dtype=np.int64)) * jnp.dtype(aval.dtype).itemsize


def _saved(fn, *args):
  """[(aval, description)] of what ``jax.vjp(fn, *args)`` keeps, arguments excluded."""
  return [(a, d) for a, d in saved_residuals(fn, *args) if not d.startswith('from the argument')]


def step_residuals(nets, config, state, batch) -> List[Tuple[str, Tuple]]:
  """[(net, (aval, description))] for net in 'G', 'D', 'VGG'.

  ``state``, ``batch`` and ``nets.vgg_vars`` may be ``jax.ShapeDtypeStruct``
  trees. The sum over the three nets is an upper bound on what is alive at
  once: the step frees D's residuals before the VGG loss runs.
  """
  out = []

  def trace(state, batch, vgg_vars):
    n = nets._replace(vgg_vars=vgg_vars)
    real = batch['image'].astype(jnp.float32)
    g_fn = lambda gp: step.generator_forward(n, config, gp, batch)
    out.extend(('G', r) for r in _saved(g_fn, state.g_params))
    cond, fake = g_fn(state.g_params)
    out.extend(('D', r) for r in _saved(step.discriminator_fn(n, cond, real), state.d_params, fake))
    if n.vgg is not None:
      out.extend(('VGG', r) for r in _saved(step.perceptual_fn(n, config, real), fake))
    return jnp.float32(0)
  jax.eval_shape(trace, state, batch, nets.vgg_vars)
  return out


def residual_bytes(nets, config, state, batch) -> int:
  return sum(nbytes(a) for _, (a, _) in step_residuals(nets, config, state, batch))
