"""Training that loses nothing: config bounds, the workdir lock, torn files, resume guards.

The command line (one-line errors, Ctrl-C): tests/test_robust_cli.py.
"""

import fcntl
import json
import os
import shutil

import pytest

from conftest import tiny_run_config
from test_train import metrics
from hdgan_jax import checkpoint, config as config_lib, train, workdir_lock


@pytest.fixture
def base_run(full_run):
  """The shared finished 4-step run (checkpoints at steps 2 and 4); tests change copies."""
  return full_run


def copy_of(base_run, tmp_path):
  wd = str(tmp_path / 'run')
  shutil.copytree(base_run, wd)
  return wd


@pytest.mark.parametrize('key,value', [('batch_size', 0), ('checkpoint_every_steps', 0),
                                       ('keep_checkpoints', 0), ('log_every_steps', -1),
                                       ('lr', 0.0), ('data.num_workers', -2),
                                       ('model.ngf', 0), ('model.netG', 'huge')])
def test_bad_numbers_are_refused_before_anything_is_written(key, value, tmp_path):
  c = tiny_run_config()
  node, leaf = (c, key) if '.' not in key else (c[key.split('.')[0]], key.split('.')[1])
  node[leaf] = value
  with pytest.raises(config_lib.ConfigError, match=key.replace('.', r'\.')):
    train.train_and_evaluate(c, str(tmp_path / 'wd'))
  assert not os.path.exists(tmp_path / 'wd')


def test_a_busy_workdir_is_refused_with_the_holders_pid(tmp_path):
  wd = str(tmp_path / 'wd')
  with workdir_lock.hold(wd):
    with pytest.raises(workdir_lock.WorkdirBusyError, match=f'PID {os.getpid()}'):
      train.train_and_evaluate(tiny_run_config(steps=2), wd)
  assert not os.path.exists(os.path.join(wd, 'checkpoints'))


def test_a_stale_lock_of_a_killed_run_is_taken_over(base_run, tmp_path):
  wd = copy_of(base_run, tmp_path)
  lock = os.path.join(wd, workdir_lock.LOCK_NAME)
  with open(lock, 'w') as f:
    f.write('{"pid": 999999, "host": "gone"}')  # left by a killed run: not flocked
  assert train.train_and_evaluate(tiny_run_config(eval_semantic=True), wd) == {}  # at step 4
  assert json.load(open(lock))['pid'] == os.getpid()   # taken over
  fd = os.open(lock, os.O_RDWR)   # and free again once the run is over
  fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  os.close(fd)


def test_torn_files_do_not_block_resume(base_run, tmp_path):
  """A torn metrics line, a truncated scorer pickle and a torn newest checkpoint."""
  wd = copy_of(base_run, tmp_path)
  with open(os.path.join(wd, 'metrics.jsonl'), 'a') as f:
    f.write('{"step": 5, "G_GA')
  scorer = os.path.join(wd, 'semantic_scorer.pkl')
  with open(scorer, 'r+b') as f:
    f.truncate(100)
  newest = os.path.join(wd, 'checkpoints', '4')
  for root, _, files in os.walk(newest):  # tear every file of step 4
    for name in files:
      with open(os.path.join(root, name), 'r+b') as f:
        f.truncate(max(os.path.getsize(os.path.join(root, name)) // 3, 1) - 1)
  c = tiny_run_config(steps=6, eval_semantic=True)
  train.train_and_evaluate(c, wd)
  assert sorted(metrics(wd)) == [1, 2, 3, 4, 5, 6]   # steps 3-4 redone from step 2
  moved = os.listdir(os.path.join(wd, 'checkpoints_unreadable'))
  assert len(moved) == 1 and moved[0].startswith('4-')  # kept, not deleted
  assert os.path.getsize(scorer) > 100                   # refitted


def test_resume_refuses_another_data_stream_unless_asked(base_run, tmp_path):
  wd = copy_of(base_run, tmp_path)
  c = tiny_run_config(steps=6, eval_semantic=True)
  c.batch_size = 4
  with pytest.raises(checkpoint.DataStreamMismatchError,
                     match='batch_size: checkpoint 2 vs now 4.*allow_data_change'):
    train.train_and_evaluate(c, wd)
  c.data.demo_num_images = 16
  c.allow_data_change = True
  train.train_and_evaluate(c, wd)
  assert max(metrics(wd)) == 6


def test_fewer_steps_than_the_checkpoint_trains_nothing(base_run, tmp_path, capsys):
  wd = copy_of(base_run, tmp_path)
  before = open(os.path.join(wd, 'metrics.jsonl')).read()
  assert train.train_and_evaluate(tiny_run_config(steps=3, eval_semantic=True), wd) == {}
  out = capsys.readouterr().out
  assert 'already at step 4' in out and 'Done' not in out
  assert open(os.path.join(wd, 'metrics.jsonl')).read() == before
