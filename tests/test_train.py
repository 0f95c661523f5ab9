"""End to end: the training loop on tiny demo data; resume, refusal, NaN stop, generation.

8 devices against 1: tests/test_train_devices.py (its own file, so xdist runs it beside this one).
"""

import json
import os

import jax
import numpy as np
import pytest
from PIL import Image

from conftest import tiny_run_config
from hdgan_jax import checkpoint, generate, run, train


def metrics(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return {r['step']: r for r in map(json.loads, f) if 'G_GAN' in r}


def test_run_writes_everything(full_run):
  wd = full_run
  assert sorted(metrics(wd)) == [1, 2, 3, 4]
  samples = sorted(os.listdir(os.path.join(wd, 'samples')))
  assert samples == ['step_0000000.png', 'step_0000002.png', 'step_0000004.png']
  assert Image.open(os.path.join(wd, 'samples', samples[-1])).size == (3 * 64, 2 * 32)
  with open(os.path.join(wd, 'metrics.jsonl')) as f:
    evals = [r for r in map(json.loads, f) if 'eval/semantic_pixel_acc' in r]
  assert [r['step'] for r in evals] == [0, 2, 4]
  assert all(0.0 <= r['eval/semantic_pixel_acc'] <= 1.0 for r in evals)
  page = open(os.path.join(wd, 'index.html')).read()
  assert 'samples/step_0000004.png' in page and 'G_GAN' in page
  mngr = checkpoint.manager(wd, async_save=False)
  assert mngr.all_steps() == [2, 4]
  assert checkpoint.saved_config(mngr)['model']['ngf'] == 4


def test_resume_is_exact(full_run, tmp_path):
  wd = str(tmp_path)
  train.train_and_evaluate(tiny_run_config(steps=2), wd)
  train.train_and_evaluate(tiny_run_config(steps=4), wd)  # same workdir: resumes at step 2
  a, b = metrics(full_run), metrics(wd)
  for s in (3, 4):
    for k in ('G_GAN', 'G_GAN_Feat', 'D_real', 'D_fake'):
      assert a[s][k] == pytest.approx(b[s][k], rel=1e-6), (s, k)


def test_other_architecture_is_refused(full_run):
  before = sorted(os.listdir(os.path.join(full_run, 'checkpoints')))
  c = tiny_run_config(steps=6)
  c.model.ngf = 8
  with pytest.raises(checkpoint.ArchitectureMismatchError, match='model.ngf: checkpoint 4 vs config 8'):
    train.train_and_evaluate(c, full_run)
  assert sorted(os.listdir(os.path.join(full_run, 'checkpoints'))) == before


class _PoisonAt:
  """Wraps a train iterator and puts NaN into the photo of batch ``k``."""

  def __init__(self, it, k):
    self.it, self.k, self.n = it, k, 0

  def __next__(self):
    batch = next(self.it)
    self.n += 1
    return dict(batch, image=batch['image'] * np.nan) if self.n == self.k else batch

  def get_state(self):
    return self.it.get_state()

  def set_state(self, state):
    self.it.set_state(state)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
  from hdgan_jax.data import pipeline
  real = pipeline.make_train_iterator
  monkeypatch.setattr(pipeline, 'make_train_iterator', lambda *a, **k: _PoisonAt(real(*a, **k), 3))
  with pytest.raises(train.NonFiniteLossError, match='last good checkpoint is step 2'):
    train.train_and_evaluate(tiny_run_config(steps=8), str(tmp_path))
  mngr = checkpoint.manager(str(tmp_path), async_save=False)
  assert mngr.all_steps() == [2]
  state = mngr.restore(2, args=checkpoint.ocp.args.Composite(
      state=checkpoint.ocp.args.StandardRestore()))['state']
  leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves((state['g_params'], state['d_params']))]
  assert leaves and all(np.isfinite(x).all() for x in leaves)


def test_nan_before_any_checkpoint_says_so(tmp_path):
  with pytest.raises(train.NonFiniteLossError, match='no checkpoint had been written yet'):
    train.train_and_evaluate(tiny_run_config(steps=8, lr=1e30), str(tmp_path))


def test_generate_from_label_files(full_run, tmp_path):
  from hdgan_jax.data import demo
  scene = demo.render_scene(3, height=32, width=64)
  Image.fromarray(scene['label']).save(tmp_path / 'a_labelIds.png')
  Image.fromarray(scene['inst'].astype(np.uint16)).save(tmp_path / 'a_instanceIds.png')
  r = run.from_workdir(full_run, tiny_run_config())
  out = generate.generate(r, labels=str(tmp_path / 'a_labelIds.png'),
                          instances=str(tmp_path / 'a_instanceIds.png'), out=str(tmp_path / 'out'))
  assert [os.path.basename(p) for p in out] == ['a_labelIds_synthesized_image.png']
  assert Image.open(out[0]).size == (64, 32)
  with pytest.raises(ValueError, match='use_features'):
    generate.generate(r, labels=str(tmp_path / 'a_labelIds.png'),
                      instances=str(tmp_path / 'a_instanceIds.png'), out=str(tmp_path / 'o2'),
                      num_samples=3)


def test_init_local_generator_from_trained_global_run(full_run):
  """The progressive hand-over: G1 of a local G starts from a trained global G."""
  from hdgan_jax import step
  c = tiny_run_config()
  c.model.update(dict(netG='local', ngf=2, n_local_enhancers=1))  # G1 inside runs at ngf 4
  nets = step.build(c, steps_per_epoch=4)
  fresh = step.init_state(nets, c, jax.random.PRNGKey(3), height=32, width=64).g_params
  loaded = train.init_generator_from(full_run, c, fresh)
  trained = run.from_workdir(full_run).params['G']
  for name in ('conv_in', 'down_0', 'res_0', 'up_1'):
    jax.tree_util.tree_map(np.testing.assert_array_equal, loaded['G']['global'][name], trained[name])
  jax.tree_util.tree_map(np.testing.assert_array_equal, loaded['G']['enhancer_1'],
                         fresh['G']['enhancer_1'])


def test_every_step_runs_the_executable_compiled_before_the_state(tmp_path, monkeypatch):
  """train compiles the step from abstract shapes first (its memory is freed before the
  state exists); the loop's real state, batches and keys then match it on every step."""
  made = []
  jit_train_step = train.step_lib.jit_train_step
  monkeypatch.setattr(train.step_lib, 'jit_train_step',
                      lambda *a, **k: made.append(jit_train_step(*a, **k)) or made[-1])
  train.train_and_evaluate(tiny_run_config(steps=3), str(tmp_path))
  assert len(made) == 1 and made[0].precompiled_calls == 3
