"""The training loop: data -> sharded step -> logs, samples, checkpoints.

``train_and_evaluate(config, workdir)`` is the main job. Everything that can
be checked is checked before the first step (data, VGG weights, batch vs
devices, checkpoint architecture), so a run fails in seconds, not hours. A
workdir with a checkpoint is resumed exactly: state, data position and log.
"""

import logging
import math
import os
import time
from typing import Dict

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from hdgan_jax import (checkpoint, config as config_lib, console, convert, eval_semantic,
                       fileutil, host_memory, mesh as mesh_lib, reporting, run as run_lib,
                       step as step_lib, workdir_lock)
from hdgan_jax.convert import io as weight_io
from hdgan_jax.data import check as data_check, demo, pipeline, sources
from hdgan_jax.fid import metrics as fid_metrics
from hdgan_jax.run_evaluation import real_to_uint8


class NonFiniteLossError(FloatingPointError):
  """A loss became NaN or infinite; the run stopped without saving that state."""
  user_facing = True  # console.run_cli prints the message alone


def init_generator_from(path: str, config, g_params) -> Dict:
  """G weights from a previous run (workdir), an original .pth/.npz or folder, loaded partially.

  This is the progressive schedule's hand-over: a trained global generator
  initialises the G1 inside a local one; whatever does not fit keeps its init.
  A workdir brings its own model config; a weight file is read with the
  state_dict's own shapes, whatever this run's options are.
  """
  cfg = config.model
  base = {'params': g_params['G']}
  if os.path.isdir(os.path.join(path, 'checkpoints')):
    src = run_lib.from_workdir(path)
    sd = convert.to_pix2pixhd({'params': src.params['G']}, 'G', src.model)
  elif os.path.isdir(path):
    sd = weight_io.load_state_dict(run_lib.original_folder(path)[0])
  else:
    sd = weight_io.load_state_dict(path)
  report = convert.Report('G')
  variables = convert.from_pix2pixhd(sd, 'G', cfg, strict=False, base=base, report=report)
  logging.info('init_from %s:\n%s', path, report)
  if not report.loaded:
    raise convert.CheckpointMismatchError(f'init_from={path}: no tensor fits this generator\n{report}')
  return {**g_params, 'G': variables['params']}


def _global_batch(local: Dict[str, np.ndarray], sharding) -> Dict[str, jax.Array]:
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local.items()}


def _compiled_step(nets, config, mesh, samples, repl, data_sharding, state):
  """The jitted train step, compiled before the state exists (``step.jit_train_step``'s precompile).

  ``state`` is the abstract state (``step.abstract_state``). The state, the
  batches and the keys the loop passes have exactly these shapes, dtypes and
  shardings, so every step runs this executable.
  """
  batch = {k: jax.ShapeDtypeStruct((config.batch_size,) + v.shape[1:], v.dtype, sharding=data_sharding)
           for k, v in samples.items()}
  key = jax.eval_shape(lambda: jax.random.fold_in(jax.random.PRNGKey(0), 0))
  train_fn = step_lib.jit_train_step(nets, config, mesh, state)
  train_fn.precompile(state, batch, jax.ShapeDtypeStruct(key.shape, key.dtype, sharding=repl))
  host_memory.trim()  # the compiler's memory, before the state takes its own
  return train_fn


def make_generate_fn(nets, config):
  """jit(g_params, batch) -> images in [-1, 1] (features from E on the real image if used)."""
  return jax.jit(lambda gp, b: step_lib.generator_forward(nets, config, gp, b)[1])


def train_and_evaluate(config, workdir: str) -> Dict[str, float]:
  """Trains per ``config`` in ``workdir`` (resuming if it holds a checkpoint).

  The workdir is locked for the run (a second run on it is refused with the
  holder's PID; in a multi-host run each process holds its own lock file).
  Ctrl-C stops after the in-flight checkpoint is written and says how to
  resume. Multi-host: every process calls this; each reads its share of the
  batches, all take part in checkpointing, only process 0 writes logs,
  samples and the page.
  """
  config_lib.validate(config)
  with workdir_lock.hold(workdir, jax.process_index()):
    return _train(config, workdir)


def _resume(mngr, state, config, workdir: str, stream: Dict):
  """(state, data_state, start step) from the newest good checkpoint, or None."""
  restored = checkpoint.restore_newest(mngr, state, config, workdir)
  if restored is None:
    return None
  for step, why in restored.skipped:
    console.say(f'  checkpoint step {step} is unreadable ({why}); moved to '
                f'{workdir}/checkpoints_unreadable/')
  diffs = checkpoint.check_data_stream(restored.meta.get('data_stream'), stream, workdir,
                                       allow=config.allow_data_change)
  for d in diffs:
    console.say(f'  data stream changed ({d}); continuing as allow_data_change=True asks')
  return restored.state, restored.data_state, restored.step


def _train(config, workdir: str) -> Dict[str, float]:
  os.makedirs(workdir, exist_ok=True)
  is_main = jax.process_index() == 0
  mesh = step_lib.make_mesh(config)  # ('data', 'space'): config.mesh
  n_dev, n_proc = mesh.shape['data'], jax.process_count()  # batch slices: devices on 'data'
  if config.batch_size % n_dev:
    raise ValueError(f'batch_size={config.batch_size} does not divide over {n_dev} devices; '
                     f'set --config.batch_size to a multiple of {n_dev}')
  if config.eval_semantic and config.data.source != 'demo':
    raise ValueError('eval_semantic scores with a classifier of the demo scenes; it only '
                     "applies to data.source='demo' (set --config.eval_semantic=False)")
  if config.data.check != 'off':
    data_check.run_checks(config, full=config.data.check == 'full')
  source = sources.make_source(config)  # scanned once, shared by everything below
  if pipeline.requires_no_instance(config, source) and not config.model.no_instance:
    raise ValueError(f'data.source={config.data.source!r} has no instance maps; set '
                     '--config.model.no_instance=True')
  n_examples = pipeline.dataset_size(config, source)
  steps_per_epoch = max(n_examples // config.batch_size, 1)
  num_steps = config.num_train_steps or (config.niter + config.niter_decay) * steps_per_epoch
  samples = pipeline.make_eval_examples(config, config.num_sample_images, source)
  height, width = samples['image'].shape[1:3]
  m = config.model
  console.say(f'  {m.netG} G (ngf {m.ngf}{f", {m.n_local_enhancers} enhancers" if m.netG == "local" else ""}'
              f'{", features" if m.use_features else ""}) at {width}x{height}, '
              f'{n_examples} examples, batch {config.batch_size}, {num_steps} steps')
  nets = step_lib.build(config, steps_per_epoch)  # fails now if VGG weights are missing
  # The shardings jit_train_step compiles with: the precompiled step only runs on exactly these.
  repl, data_sharding = mesh_lib.replicated(mesh), mesh_lib.batch_sharding(mesh)
  # The state's shapes and shardings: what the step compiles for and what a resumed run restores
  # into (global arrays every process restores into), never beside a freshly initialised state;
  # a new run's state is born on the mesh.
  abstract = step_lib.abstract_state(nets, config, mesh, height=height, width=width)
  train_fn = _compiled_step(nets, config, mesh, samples, repl, data_sharding, abstract)

  largest = max(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(abstract))
  policy = checkpoint.save_policy(config.get('checkpoint_mode', 'auto'), jax.default_backend(), largest)
  mngr = checkpoint.manager(workdir, config.keep_checkpoints, *policy)
  stream = checkpoint.data_stream(config, n_examples, n_proc)
  resumed = _resume(mngr, abstract, config, workdir, stream)
  data_state, start = None, 0
  if resumed is not None:
    state, data_state, start = resumed
    if start >= num_steps:
      console.say(f'  {workdir} is already at step {start}, at or past num_train_steps='
                  f'{num_steps}; nothing to train. Raise --config.num_train_steps to continue.')
      return {}
    console.say(f'  resuming from the checkpoint at step {start} of {num_steps}')
  else:
    state = step_lib.init_state(nets, config, jax.random.PRNGKey(config.seed), height=height,
                                width=width, mesh=mesh)
    if config.init_from:
      g_params = init_generator_from(config.init_from, config, state.g_params)
      g_ema = None if state.g_ema is None else jax.tree_util.tree_map(jnp.copy, g_params)
      state = state.replace(g_params=g_params, g_ema=g_ema)
  # What the init or the restore freed (its executables' compile and scratch: 200 MiB at
  # 256x512) goes back before the first step's temp lands on top of it; the init runs
  # asynchronously, so wait for it first.
  state = jax.block_until_ready(jax.device_put(state, repl))
  host_memory.trim()

  it = pipeline.make_train_iterator(config, process_index=jax.process_index(),
                                    process_count=n_proc, source=source)
  if data_state is not None:
    it.set_state(data_state)
  generate = make_generate_fn(nets, config)
  writer = reporting.Writer(workdir, is_main=is_main)
  if is_main:
    reporting.truncate_metrics(workdir, start)
    fileutil.atomic_write_text(os.path.join(workdir, 'config.json'),
                               config.to_json_best_effort(indent=2))
  scorer, held_out = None, None
  if config.eval_semantic:
    scorer, held_out = _semantic_scorer(config, workdir), _held_out_demo(config)
  fid_eval = _FidEval(config, source, generate) if config.eval_every_steps else None

  def sample_and_eval(step: int) -> Dict[str, float]:
    g_params = step_lib.sampling_params(state)  # the moving average when config.g_ema_decay > 0
    fakes = np.asarray(generate(g_params, {k: jnp.asarray(v) for k, v in samples.items()}))
    if is_main:
      img = reporting.grid(samples['label'], fakes, samples['image'], config.model.label_nc)
      reporting.save_png(img, os.path.join(workdir, 'samples', f'step_{step:07d}.png'))
      writer.images(step, {'samples': img})
    out = {}
    if scorer is not None:
      held_fakes = np.asarray(generate(g_params, held_out))
      res = scorer.score(reporting.to_uint8(held_fakes), held_out['label'])
      out = {'eval/semantic_pixel_acc': res['pixel_acc'], 'eval/semantic_miou': res['miou']}
      writer.scalars(step, out)
    if fid_eval is not None and (step % config.eval_every_steps == 0 or step == num_steps):
      fid_out = fid_eval(g_params)
      writer.scalars(step, fid_out)
      out.update(fid_out)
    if is_main:
      reporting.write_index(workdir, f'hdgan_jax: {os.path.basename(os.path.abspath(workdir))}')
    return out

  if start == 0:
    sample_and_eval(0)
  rng = jax.random.PRNGKey(config.seed + 1)
  step_key = jax.jit(jax.random.fold_in, out_shardings=repl)  # the sharding the step was compiled for
  last = {}
  t_log, s_log = time.time(), start
  bar = tqdm(range(start, num_steps), initial=start, total=num_steps, desc='train',
             unit='step', disable=not is_main, dynamic_ncols=True)
  done = start
  try:
    for s in bar:
      batch = _global_batch(next(it), data_sharding)
      state, metrics = train_fn(state, batch, step_key(rng, s))
      done = s + 1
      if done == start + 1:
        host_memory.trim()  # the first step's transients (and its compile, had the precompiled step not matched)
      log_now = done % config.log_every_steps == 0 or done == num_steps
      ckpt_now = done % config.checkpoint_every_steps == 0 or done == num_steps
      if log_now or ckpt_now:
        last = {k: float(v) for k, v in jax.device_get(metrics).items()}
        bad = [k for k, v in last.items() if not math.isfinite(v)]
        if bad or last.pop('params_finite') != 1.0:
          mngr.wait_until_finished()
          good = mngr.latest_step()
          where = (f'the last good checkpoint is step {good} in {workdir}' if good is not None
                   else 'no checkpoint had been written yet')
          raise NonFiniteLossError(
              f'step {done}: non-finite {", ".join(bad) or "parameters"} ({last}). Stopped '
              f'without saving this state; {where}. Lower --config.lr, check the data '
              '(label ids < label_nc), or resume from that checkpoint.')
      if log_now:
        now = time.time()
        last['steps_per_sec'] = (done - s_log) / max(now - t_log, 1e-9)
        t_log, s_log = now, done
        writer.scalars(done, last)
        bar.set_postfix({k: f'{last[k]:.3f}' for k in ('G_GAN', 'D_real', 'D_fake') if k in last})
      if (done % config.sample_every_steps == 0 or done == num_steps
          or (fid_eval is not None and done % config.eval_every_steps == 0)):
        last.update(sample_and_eval(done))
      if ckpt_now:
        with console.deferred_interrupt():
          checkpoint.save(mngr, done, state, config, it.get_state(), stream)
        if not policy.async_save:
          host_memory.trim()  # the writer's buffers, before the next step's temp
  except KeyboardInterrupt:
    bar.close()
    with console.deferred_interrupt():  # a second Ctrl-C must not tear the save either
      mngr.wait_until_finished()  # the checkpoint being written is finished, not torn
    good = mngr.latest_step()
    console.say(f'\nstopped at step {done}. ' + (
        f'The newest checkpoint is step {good} in {workdir}/checkpoints; run the same command '
        'to resume from it.' if good is not None else 'No checkpoint had been written yet.'))
    raise
  bar.close()
  mngr.wait_until_finished()
  writer.flush()
  if is_main:
    console.say(f'\nDone: step {num_steps}. Samples: {workdir}/samples, page: '
                f'{workdir}/index.html, metrics: {workdir}/metrics.jsonl, checkpoints: '
                f'{workdir}/checkpoints')
  return last


class _FidEval:
  """FID/KID of the current generator on the first ``eval_num_images`` of the split.

  The photos' Inception features are computed once; each call generates the
  images (test-time preprocessing, batches of ``batch_size``) and compares.
  """

  def __init__(self, config, source, generate):
    self.examples = pipeline.make_eval_examples(config, config.eval_num_images, source)
    self.batch, self.generate = max(int(config.batch_size), 1), generate
    self.extractor = fid_metrics.FeatureExtractor(batch_size=16)
    self.real = fid_metrics.Stats.from_features(
        self.extractor(real_to_uint8(self.examples['image'])))

  def __call__(self, g_params) -> Dict[str, float]:
    n = self.examples['image'].shape[0]
    fakes = [np.asarray(self.generate(g_params, {k: jnp.asarray(v[i:i + self.batch])
                                                  for k, v in self.examples.items()}))
             for i in range(0, n, self.batch)]
    fake = self.extractor(reporting.to_uint8(np.concatenate(fakes)))
    res = fid_metrics.fid_and_kid(self.real, fid_metrics.Stats.from_features(fake),
                                  fid_method='exact')
    return {'eval/fid': res['fid'], 'eval/kid': res['kid']}


def _held_out_demo(config, n: int = 16) -> Dict[str, jax.Array]:
  """Demo scenes never seen in training (another seed) to score generated images on."""
  d = config.data
  scenes = [demo.render_scene(i, height=d.demo_height, width=d.demo_width, seed=config.seed + 20_000)
            for i in range(n)]
  return {'label': jnp.asarray(np.stack([s['label'] for s in scenes]).astype(np.int32)),
          'inst': jnp.asarray(np.stack([s['inst'] for s in scenes])),
          'image': jnp.asarray(np.stack([s['image'] for s in scenes]).astype(np.float32) / 127.5 - 1.0)}


def _semantic_scorer(config, workdir: str):
  """The demo's colour/texture pixel classifier, fitted once per workdir and cached."""
  path = os.path.join(workdir, 'semantic_scorer.pkl')
  if os.path.exists(path):
    try:
      return eval_semantic.SemanticScorer.load(path)
    except ValueError as e:  # a torn file from a killed run: refit (it is deterministic)
      logging.warning('%s; fitting it again', e)
  scorer = eval_semantic.fit_demo_scorer(height=config.data.demo_height, width=config.data.demo_width,
                                         n=32, seed=config.seed + 10_000)
  if jax.process_index() == 0:  # the others fit the same scorer; one writer
    scorer.save(path)
  return scorer
