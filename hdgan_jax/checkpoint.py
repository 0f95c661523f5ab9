"""Checkpoints of a run: orbax ``CheckpointManager`` under ``workdir/checkpoints``.

Each checkpoint holds the train state, the data iterator's position (so a
resumed run sees the batches an uninterrupted one would) and the config it was
made with. Saves are asynchronous; the last ``keep`` are kept. Resuming into a
workdir whose checkpoint has another architecture is refused with the list of
differing fields, before anything is overwritten.
"""

import json
import os
from typing import Any, Dict, Optional, Tuple

import orbax.checkpoint as ocp

from hdgan_jax import architecture


class ArchitectureMismatchError(ValueError):
  """The workdir's checkpoint was made for another model."""


class CheckpointRestoreError(RuntimeError):
  """A checkpoint exists but cannot be read into the current train state."""
  user_facing = True  # console.run_cli prints the message alone


def manager(workdir: str, keep: int = 3, async_save: bool = True) -> ocp.CheckpointManager:
  opts = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                      enable_async_checkpointing=async_save)
  return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, 'checkpoints')), options=opts)


def reader(workdir: str) -> ocp.CheckpointManager:
  """A read-only manager: never creates, deletes or writes anything in ``workdir``."""
  opts = ocp.CheckpointManagerOptions(create=False, read_only=True,
                                      enable_async_checkpointing=False)
  return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, 'checkpoints')), options=opts)


def restore_params(mngr: ocp.CheckpointManager, step: int, abstract_g_params):
  """Only the generator-side parameters (``state.g_params``) of a checkpoint.

  ``abstract_g_params`` holds ShapeDtypeStructs with the wanted sharding; the
  discriminator and optimizer states are not read.
  """
  target = {'g_params': abstract_g_params}
  restore_args = ocp.checkpoint_utils.construct_restore_args(target)
  try:
    out = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
        item=target, restore_args=restore_args, partial_restore=True)))
  except Exception as e:  # orbax raises many types for corrupt or mismatched trees
    path = os.path.join(str(mngr.directory), str(step))
    raise CheckpointRestoreError(
        f'{path}: cannot read the generator parameters ({e.__class__.__name__}: '
        f'{str(e).splitlines()[0][:300] if str(e) else ""}). The checkpoint is corrupt or '
        'was made by another model; choose another step or workdir.') from e
  return out['state']['g_params']


def _encode_data_state(data_state: Any) -> Any:
  if isinstance(data_state, bytes):
    return {'bytes': data_state.decode('utf-8')}
  return {'json': data_state}


def _decode_data_state(blob: Dict) -> Any:
  if blob is None:
    return None
  if 'bytes' in blob:
    return blob['bytes'].encode('utf-8')
  return blob.get('json')


def save(mngr: ocp.CheckpointManager, step: int, state, config, data_state=None) -> None:
  """Starts an asynchronous save of ``state`` with the config and data position."""
  meta = {'config': json.loads(config.to_json_best_effort()),
          'data_state': _encode_data_state(data_state) if data_state is not None else None}
  mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                          meta=ocp.args.JsonSave(meta)))


def saved_config(mngr: ocp.CheckpointManager, step: Optional[int] = None) -> Optional[Dict]:
  step = mngr.latest_step() if step is None else step
  if step is None:
    return None
  meta = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']
  return meta['config']


def architecture_diff(saved: Dict, config) -> Dict[str, Tuple[Any, Any]]:
  """{field: (checkpoint value, config value)} for every architecture field that differs."""
  return architecture.diff(saved.get('model', {}), config.model)


def mismatch_error(workdir: str, diff) -> ArchitectureMismatchError:
  fields = ', '.join(f'model.{k}: checkpoint {a!r} vs config {b!r}' for k, (a, b) in diff.items())
  return ArchitectureMismatchError(
      f'{workdir} holds a checkpoint of another architecture ({fields}). Use a new --workdir, '
      'or set these options back to the checkpoint\'s values.')


def check_compatible(mngr: ocp.CheckpointManager, config, workdir: str) -> None:
  saved = saved_config(mngr)
  if saved is None:
    return
  diff = architecture_diff(saved, config)
  if diff:
    raise mismatch_error(workdir, diff)


def restore(mngr: ocp.CheckpointManager, target_state, step: Optional[int] = None):
  """(state, data_state, step) from the latest (or given) checkpoint; None if there is none."""
  step = mngr.latest_step() if step is None else step
  if step is None:
    return None
  try:
    out = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target_state),
                                                     meta=ocp.args.JsonRestore()))
  except Exception as e:  # orbax raises many types for corrupt or mismatched trees
    path = os.path.join(str(mngr.directory), str(step))
    raise CheckpointRestoreError(
        f'{path}: cannot restore this checkpoint ({e.__class__.__name__}: '
        f'{str(e).splitlines()[0][:300] if str(e) else ""}). It is corrupt or its optimizer '
        'layout differs (e.g. niter_fix_global switched on/off for a local G). Use a new '
        '--workdir, or move that step folder away to resume from an earlier one.') from e
  return out['state'], _decode_data_state(out['meta'].get('data_state')), step
