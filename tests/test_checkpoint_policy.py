"""How checkpoints are written per backend (``checkpoint.save_policy``)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hdgan_jax import checkpoint, config as config_lib


def test_save_policy_per_backend():
  assert checkpoint.save_policy('auto', 'cpu') == (False, 0.25)
  assert checkpoint.save_policy('auto', 'gpu') == (True, None)
  assert checkpoint.save_policy('auto', 'tpu') == (True, None)
  assert checkpoint.save_policy('async', 'cpu') == (True, None)
  assert checkpoint.save_policy('sync', 'tpu') == (False, 0.25)
  # orbax refuses a leaf larger than the bound, so the bound grows to the largest leaf
  assert checkpoint.save_policy('auto', 'cpu', 400_000_000) == (False, 0.4)
  with pytest.raises(ValueError, match="checkpoint_mode='later'"):
    checkpoint.save_policy('later', 'cpu')


def test_bad_checkpoint_mode_is_a_config_error():
  c = config_lib.get_config()
  c.checkpoint_mode = 'sometimes'
  with pytest.raises(config_lib.ConfigError, match="checkpoint_mode='sometimes' must be one of"):
    config_lib.validate(c)


def test_bounded_synchronous_save_round_trips_a_leaf_larger_than_the_floor(tmp_path):
  """A 268 MB leaf under the CPU policy: orbax's limiter would refuse it at a 0.25 GB bound."""
  repl = jax.sharding.NamedSharding(jax.make_mesh((1,), ('data',)), jax.sharding.PartitionSpec())
  state = {'big': jax.device_put(jnp.arange(67_000_000, dtype=jnp.float32), repl),
           'small': jax.device_put(jnp.ones((3, 4), jnp.float32), repl)}
  largest = max(x.nbytes for x in jax.tree_util.tree_leaves(state))
  policy = checkpoint.save_policy('auto', 'cpu', largest)
  assert policy.concurrent_gb == largest / 1e9 > 0.25
  mngr = checkpoint.manager(str(tmp_path), 2, *policy)
  checkpoint.save(mngr, 1, state, config_lib.get_config())
  mngr.wait_until_finished()
  back = checkpoint.reader(str(tmp_path)).restore(1, args=checkpoint.ocp.args.Composite(
      state=checkpoint.ocp.args.StandardRestore(state)))['state']
  for k in state:
    np.testing.assert_array_equal(back[k], state[k])
