"""The training command stops cleanly: one-line config errors, and Ctrl-C keeps the checkpoints.

Real ``python -m hdgan_jax.main`` subprocesses on the demo config; split from
test_robust_training.py (which shares a finished run) so that pytest-xdist
can run the two files on different workers.
"""

import json
import os
import platform
import signal
import subprocess
import sys
import time

from hdgan_jax import checkpoint, host_memory

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _default_sigint():
  """In the child: Ctrl-C as in a terminal. A pytest-xdist worker can inherit SIGINT ignored
  (some earlier test's subprocess machinery), and Python then never raises KeyboardInterrupt."""
  signal.signal(signal.SIGINT, signal.SIG_DFL)


def _main(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE):
  return subprocess.Popen([sys.executable, '-m', 'hdgan_jax.main', '--config=experiments/demo.py',
                           *args], cwd=REPO, stdout=stdout, stderr=stderr, text=True,
                          preexec_fn=_default_sigint)


def _read(f):
  f.seek(0)
  return f.read()


def _finished_steps(wd):
  """Checkpoint steps whose directories are complete (orbax renames a finished one to its step)."""
  d = wd / 'checkpoints'
  return [n for n in os.listdir(d) if n.isdigit()] if d.exists() else []


def test_cli_errors_are_one_line(tmp_path):
  p = _main([f'--workdir={tmp_path / "wd"}', '--config.batch_size=0'])
  out, err = p.communicate(timeout=300)
  assert p.returncode == 1
  assert err.strip().startswith('error: bad config: batch_size=0 must be >= 1'), err
  assert 'Traceback' not in err and len(err.strip().splitlines()) == 1, err
  p = _main([f'--workdir={tmp_path / "wd"}', '--config.batch_size=0', '--verbose'])
  _, err = p.communicate(timeout=300)
  assert 'Traceback' in err  # --verbose shows it


def test_ctrl_c_keeps_the_checkpoints_and_says_how_to_resume(tmp_path):
  wd = tmp_path / 'wd'
  # Output to files, not pipes: the progress bar writes every step, and a pipe nobody
  # reads until the end fills and blocks the run before it is interrupted.
  out_f, err_f = open(tmp_path / 'out.txt', 'w+'), open(tmp_path / 'err.txt', 'w+')
  # Far more steps than it gets to, so only Ctrl-C can end it (the tiny model trains 400
  # steps in about 30 s).
  p = _main([f'--workdir={wd}', '--config.num_train_steps=1000000', '--config.eval_semantic=False',
             '--config.checkpoint_every_steps=2', '--config.sample_every_steps=1000',
             '--config.data.demo_num_images=8', '--config.model.ngf=4',
             '--config.model.ndf=4', '--config.data.num_workers=0', '--config.log_every_steps=1',
             '--config.data.demo_height=32', '--config.data.demo_width=64',
             '--config.no_vgg_loss=True', '--config.model.n_blocks_global=1',
             # the smallest model that trains (less to compile): Ctrl-C does not depend on it
             '--config.model.n_downsample_global=1', '--config.model.num_D=1',
             '--config.model.n_layers_D=1', '--config.batch_size=2'],
            stdout=out_f, stderr=err_f)
  try:  # a failed check below must not leave a million-step run behind
    deadline = time.time() + 400
    # Any finished checkpoint: with one every 2 steps and 3 kept, step 2's lives for a
    # fraction of a second, which a loaded machine's poll can miss.
    while not _finished_steps(wd) and time.time() < deadline:
      time.sleep(0.2)
    assert p.poll() is None, f'the run ended before Ctrl-C:\n{_read(out_f)}\n{_read(err_f)}'
    with open(f'/proc/{p.pid}/environ', 'rb') as f:
      environ = f.read().split(b'\0')
    p.send_signal(signal.SIGINT)
    p.wait(timeout=300)
  finally:
    if p.poll() is None:
      p.kill()
      p.wait()
  # Training re-executed itself under the huge-page malloc where this machine has it (same
  # pid, so the Ctrl-C above reached the run itself).
  can = host_memory.huge_page_env(os.environ, system=platform.system(), libc=platform.libc_ver(),
                                  thp_mode=host_memory._thp_mode()) is not None
  assert (b'GLIBC_TUNABLES=' + host_memory.HUGE_PAGE_TUNABLE.encode() in environ) == can
  out, err = _read(out_f), _read(err_f)
  assert p.returncode == 130, (out, err)
  assert 'run the same command to resume' in out, out
  assert 'Traceback' not in err, err
  steps = checkpoint.reader(str(wd)).all_steps()
  assert steps and not [f for f in os.listdir(wd / 'checkpoints') if 'tmp' in f]
  rows = [json.loads(line) for line in open(wd / 'metrics.jsonl')]
  assert rows and max(r['step'] for r in rows) >= max(steps)
