"""The moving average of G's parameters (config.g_ema_decay): update rule, training, loading."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from conftest import tiny_run_config
from hdgan_jax import checkpoint, run, step, train


def test_update_moves_by_the_decay():
  cfg = ml_collections.ConfigDict({'g_ema_decay': 0.9})
  ema, params = {'w': jnp.zeros(3)}, {'w': jnp.ones(3)}
  np.testing.assert_allclose(step.ema_update(cfg, ema, params)['w'], 0.1, rtol=1e-6)
  np.testing.assert_allclose(step.ema_update(cfg, params, ema)['w'], 0.9, rtol=1e-6)


def test_training_keeps_the_average_and_runs_load_it(tmp_path):
  """Resumed runs continue the average; run.load and the samples use it, not the raw weights."""
  wd = str(tmp_path)
  train.train_and_evaluate(tiny_run_config(steps=2, g_ema_decay=0.5), wd)
  train.train_and_evaluate(tiny_run_config(steps=4, g_ema_decay=0.5), wd)  # resumes at 2
  mngr = checkpoint.reader(wd)
  abstract = run.abstract_params(tiny_run_config().model)
  raw = {s: checkpoint.restore_params(mngr, s, abstract) for s in (2, 4)}
  avg = {s: checkpoint.restore_params(mngr, s, abstract, 'g_ema') for s in (2, 4)}
  leaves = lambda t: [np.asarray(x) for x in jax.tree_util.tree_leaves(t)]
  # after step 4 the average is neither the raw weights nor the average at step 2
  assert [r.shape for r in leaves(raw[4])] == [a.shape for a in leaves(avg[4])]
  assert any(not np.allclose(r, a) for r, a in zip(leaves(raw[4]), leaves(avg[4])))
  assert any(not np.allclose(a2, a4) for a2, a4 in zip(leaves(avg[2]), leaves(avg[4])))
  loaded = run.load(workdir=wd)
  for got, want in zip(leaves(loaded.params), leaves(avg[4])):
    np.testing.assert_array_equal(got, want)
