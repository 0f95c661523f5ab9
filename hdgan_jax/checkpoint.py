"""Checkpoints of a run: orbax ``CheckpointManager`` under ``workdir/checkpoints``.

Each checkpoint holds the train state, the data iterator's position (so a
resumed run sees the batches an uninterrupted one would) and the config it was
made with. Saves are asynchronous on GPU and TPU and synchronous, in bounded
pieces, on CPU (:func:`save_policy`); the last ``keep`` are kept. Resuming into a
workdir whose checkpoint has another architecture is refused with the list of
differing fields, before anything is overwritten.

Multi-host: every process calls :func:`save` and :func:`restore_newest`
(orbax's saves are collective; process 0 writes the metadata and finalises
each step, each process writes the shards it owns). The data position saved
is process 0's: every process takes the same number of per-process batches,
so the position (grain's next index) is the same on all of them.
"""

import json
import os
import time
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import jax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from hdgan_jax import architecture


class ArchitectureMismatchError(ValueError):
  """The workdir's checkpoint was made for another model."""


class CheckpointRestoreError(RuntimeError):
  """A checkpoint exists but cannot be read into the current train state."""
  user_facing = True  # console.run_cli prints the message alone


class SavePolicy(NamedTuple):
  async_save: bool
  concurrent_gb: Optional[float]  # most bytes (GB) written at once; None: orbax's default (96)


def save_policy(mode: str, backend: str, largest_leaf_bytes: int = 0) -> SavePolicy:
  """How checkpoints are written: ``config.checkpoint_mode`` ('auto', 'async', 'sync') on ``backend``.

  On CPU the state lives in host memory, and saving it there cost host memory
  twice over (128x256 ngf-64 training, 2.2 GB state, steps peaking at 3432 MiB;
  VmHWM read around each phase, a scratch script): an asynchronous save, whose
  snapshot is held while the next step runs (which then cannot reuse the
  donated buffers), peaked at 7628 MiB; a synchronous one with orbax's default
  concurrency at 4935 MiB. Synchronous with at most 0.25 GB being written at
  once it stayed at the steps' peak (3444 MiB) and took 6.9 s against 8.0 s
  for the asynchronous save, whose writing competes with the steps for the
  cores anyway. GPU and TPU keep asynchronous saves: there the snapshot leaves
  the device. orbax refuses a leaf larger than the bound, so the bound is at
  least the largest leaf (``largest_leaf_bytes``).
  """
  if mode not in ('auto', 'async', 'sync'):
    raise ValueError(f"config.checkpoint_mode={mode!r}: use 'auto' (asynchronous on GPU/TPU, "
                     "synchronous in bounded pieces on CPU), 'async' or 'sync'")
  async_save = backend != 'cpu' if mode == 'auto' else mode == 'async'
  return SavePolicy(async_save, None if async_save else max(0.25, largest_leaf_bytes / 1e9))


def manager(workdir: str, keep: int = 3, async_save: bool = True,
            concurrent_gb: Optional[float] = None) -> ocp.CheckpointManager:
  """The run's checkpoint manager; ``concurrent_gb`` bounds the bytes being written at once."""
  opts = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                      enable_async_checkpointing=async_save,
                                      cleanup_tmp_directories=True)  # torn saves of a killed run
  handlers = None
  if concurrent_gb is not None:
    handlers = {'state': ocp.StandardCheckpointHandler(save_concurrent_gb=concurrent_gb),
                'meta': ocp.JsonCheckpointHandler()}
  return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, 'checkpoints')), options=opts,
                               item_handlers=handlers)


def reader(workdir: str) -> ocp.CheckpointManager:
  """A read-only manager: never creates, deletes or writes anything in ``workdir``."""
  opts = ocp.CheckpointManagerOptions(create=False, read_only=True,
                                      enable_async_checkpointing=False)
  return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, 'checkpoints')), options=opts)


def restore_params(mngr: ocp.CheckpointManager, step: int, abstract_g_params, key: str = 'g_params'):
  """Only the generator-side parameters (``state.g_params``, or ``state.g_ema``) of a checkpoint.

  ``abstract_g_params`` holds ShapeDtypeStructs with the wanted sharding; the
  discriminator and optimizer states are not read.
  """
  target = {key: abstract_g_params}
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
  return out['state'][key]


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


def data_stream(config, dataset_size: int, process_count: int = 1) -> Dict[str, Any]:
  """What fixes the order of training batches: a resumed run must see the same stream."""
  d = config.data
  return {'batch_size': int(config.batch_size), 'dataset_size': int(dataset_size),
          'seed': int(config.seed), 'process_count': int(process_count),
          'source': {k: d.get(k) for k in ('source', 'phase', 'tfds_name',
                                           'max_dataset_size', 'demo_num_images')},
          'root': os.path.abspath(d.root) if d.get('root') else ''}


def save(mngr: ocp.CheckpointManager, step: int, state, config, data_state=None,
         stream: Optional[Dict] = None) -> None:
  """Starts an asynchronous save of ``state`` with the config, data position and stream."""
  meta = {'config': json.loads(config.to_json_best_effort()),
          'data_state': _encode_data_state(data_state) if data_state is not None else None,
          'data_stream': stream}
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


class Restored(NamedTuple):
  state: Any
  data_state: Any
  step: int
  meta: Dict
  skipped: List[Tuple[int, str]]   # newer steps that did not restore: (step, reason)


def _reason(e: Exception) -> str:
  return f'{e.__class__.__name__}: {str(e).splitlines()[0][:200] if str(e) else ""}'


def restore_newest(mngr: ocp.CheckpointManager, target_state, config, workdir: str
                   ) -> Optional[Restored]:
  """The newest checkpoint that restores; None if there is none.

  Steps are tried newest first. A step whose files are torn (a crash while
  writing, a full disk) is skipped; once an older one restores, the skipped
  ones are moved to ``WORKDIR/checkpoints_unreadable/`` (never deleted) so
  training can write those steps again. A checkpoint of another architecture
  stops everything at once (it is not damage). If no step restores, nothing
  is moved and the error names every step and why.
  """
  skipped: List[Tuple[int, str]] = []
  for step in sorted(mngr.all_steps(), reverse=True):
    try:
      meta = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']
      saved_model = meta['config']['model']
    except Exception as e:  # pylint: disable=broad-except  # orbax raises many types
      skipped.append((step, _reason(e)))
      continue
    diff = architecture.diff(saved_model, config.model)
    if diff:
      raise mismatch_error(workdir, diff)
    try:
      out = mngr.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(target_state)))
    except Exception as e:  # pylint: disable=broad-except
      skipped.append((step, _reason(e)))
      continue
    if skipped:
      _move_aside(mngr, workdir, [s for s, _ in skipped])
    return Restored(out['state'], _decode_data_state(meta.get('data_state')), step, meta, skipped)
  if skipped:
    listed = '; '.join(f'step {s}: {r}' for s, r in skipped)
    raise CheckpointRestoreError(
        f'{workdir}/checkpoints: no checkpoint restores ({listed}). They are corrupt or their '
        'optimizer layout differs (e.g. niter_fix_global switched on/off for a local G). Use '
        'a new --workdir, or set the options back to the ones they were made with.')
  return None


def _move_aside(mngr: ocp.CheckpointManager, workdir: str, steps: List[int]) -> None:
  """Moves ``steps`` out of the way (process 0 moves; every process then rereads the folder)."""
  if jax.process_index() == 0:
    dest = os.path.join(workdir, 'checkpoints_unreadable')
    os.makedirs(dest, exist_ok=True)
    stamp = time.strftime('%Y%m%d-%H%M%S')
    for step in steps:
      src = os.path.join(str(mngr.directory), str(step))
      if os.path.exists(src):
        os.replace(src, os.path.join(dest, f'{step}-{stamp}'))
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices('hdgan_jax: unreadable checkpoints moved aside')
  mngr.reload()


class DataStreamMismatchError(ValueError):
  """A resumed run would not see the batches the checkpoint's run saw."""


def check_data_stream(saved: Optional[Dict], now: Dict, workdir: str, allow: bool) -> List[str]:
  """Differences between the checkpoint's data stream and this run's; raises unless ``allow``."""
  if not saved:
    return []  # checkpoints from before the stream was recorded
  diffs = [f'{k}: checkpoint {saved.get(k)!r} vs now {now.get(k)!r}'
           for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]
  if diffs and not allow:
    raise DataStreamMismatchError(
        f'{workdir}: resuming would change the training data stream ({"; ".join(diffs)}), so '
        'the run would not see the batches an uninterrupted one would. Set the options back, '
        'use a new --workdir, or pass --config.allow_data_change=True to continue anyway.')
  return diffs
