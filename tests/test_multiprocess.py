"""Multi-host training: two processes on 127.0.0.1, one CPU device each, gloo collectives.

They must train like one process with two devices and the same global batch;
when one is killed the other must stop (not hang), and restarting both must
resume exactly; a process that cannot reach its coordinator must stop at once
with one clear line. The runs are real ``python -m hdgan_jax.main`` commands.
To keep the file's time down, the one-process baseline runs beside the
two-process run and the processes share a compilation cache (the restarted
run compiles nothing).
"""

import os
import signal
import socket
import subprocess
import sys
import time
import types

import pytest

from hdgan_jax import distributed, reporting

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)
STEPS = 10

CONFIG = '''
import sys
sys.path.insert(0, {tests!r})
from conftest import tiny_run_config


def get_config():
  c = tiny_run_config(steps={steps}, checkpoint_every_steps=2, sample_every_steps=100)
  c.model.update(dict(num_D=1, n_layers_D=1, n_downsample_global=1))  # less to compile
  c.data.check = 'off'
  return c
'''


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _env(devices: int, cache: str) -> dict:
  return dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
              JAX_PLATFORMS='cpu', JAX_COMPILATION_CACHE_DIR=cache,
              JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0', PYTHONUNBUFFERED='1')


class _Run:
  """Processes of one training command (one per process id), output in files."""

  def __init__(self, tmp, name, config, workdir, cache, num_processes):
    self.procs, self.out = [], []
    port = _free_port()
    for i in range(num_processes):
      cmd = [sys.executable, '-m', 'hdgan_jax.main', f'--config={config}', f'--workdir={workdir}']
      if num_processes > 1:
        cmd += [f'--coordinator_address=127.0.0.1:{port}', f'--num_processes={num_processes}',
                f'--process_id={i}', '--distributed_timeout=120',
                '--distributed_heartbeat_timeout=20']
      out, err = (open(os.path.join(tmp, f'{name}.{i}.{k}'), 'w+') for k in ('out', 'err'))
      self.out.append((out, err))
      devices = 2 if num_processes == 1 else 1
      self.procs.append(subprocess.Popen(cmd, cwd=REPO, env=_env(devices, cache),
                                         stdout=out, stderr=err))

  def wait(self, timeout):
    deadline = time.time() + timeout
    for p in self.procs:
      try:
        p.wait(max(deadline - time.time(), 1))
      except subprocess.TimeoutExpired:
        for q in self.procs:
          q.kill()
        raise AssertionError(f'still running after {timeout} s: {self.text()}')
    return [p.returncode for p in self.procs]

  def text(self, i=None):
    parts = []
    for j, (out, err) in enumerate(self.out):
      if i is None or i == j:
        out.flush(), err.flush()
        parts.append(open(out.name).read() + open(err.name).read())
    return '\n'.join(parts)

  def stdout(self, i):
    return open(self.out[i][0].name).read()

  def stderr(self, i):
    return open(self.out[i][1].name).read()


def _finalized(workdir):
  d = os.path.join(workdir, 'checkpoints')
  return sorted(int(n) for n in os.listdir(d) if n.isdigit()) if os.path.isdir(d) else []


def _last_step(workdir):
  rows = reporting.read_metrics(workdir)
  return max((r['step'] for r in rows), default=0)


def _kill_one_after_a_checkpoint(run, workdir, timeout=900):
  """Kills process 1 at an odd logged step after a checkpoint; returns the seconds process 0 took to stop.

  Both processes are frozen (SIGSTOP) to look: at an odd step m, process 0
  is inside step m + 1, whose gradient all-reduce needs process 1, so killing
  process 1 then must make process 0 fail at once; no save of step m + 1 has
  begun, so the checkpoint the restart resumes from is older than m and step
  m was logged by the uninterrupted run.
  """
  deadline = time.time() + timeout
  while time.time() < deadline:
    if any(p.poll() is not None for p in run.procs):
      raise AssertionError(f'the run ended before it could be interrupted: {run.text()[-3000:]}')
    if _finalized(workdir) and _last_step(workdir) % 2:
      for p in run.procs:
        p.send_signal(signal.SIGSTOP)
      if _finalized(workdir) and _last_step(workdir) % 2:
        run.procs[1].kill()
        run.procs[0].send_signal(signal.SIGCONT)
        t0 = time.time()
        run.wait(120)
        return time.time() - t0
      for p in run.procs:
        p.send_signal(signal.SIGCONT)
    time.sleep(0.01)
  raise AssertionError(f'no checkpoint within {timeout} s: {run.text()[-3000:]}')


def _losses(rows):
  return {r['step']: {k: v for k, v in r.items() if k not in ('step', 'steps_per_sec')}
          for r in rows if 'G_GAN' in r}


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """The one-process baseline, a two-process run killed after a checkpoint, and its restart."""
  tmp = str(tmp_path_factory.mktemp('multiprocess'))
  config = os.path.join(tmp, 'tiny_config.py')
  with open(config, 'w') as f:
    f.write(CONFIG.format(tests=TESTS, steps=STEPS))
  cache = os.path.join(tmp, 'jax_cache')
  one_wd, two_wd = os.path.join(tmp, 'one'), os.path.join(tmp, 'two')
  one = _Run(tmp, 'one', config, one_wd, cache, 1)
  killed = _Run(tmp, 'killed', config, two_wd, cache, 2)
  survivor_s = _kill_one_after_a_checkpoint(killed, two_wd)
  killed_rc = [p.returncode for p in killed.procs]
  before_kill = _losses(reporting.read_metrics(two_wd))
  ckpt = _finalized(two_wd)[-1]
  resumed = _Run(tmp, 'resumed', config, two_wd, cache, 2)
  resumed_rc = resumed.wait(900)
  one_rc = one.wait(900)
  assert one_rc == [0], one.text()[-3000:]
  return types.SimpleNamespace(
      one=_losses(reporting.read_metrics(one_wd)), two_wd=two_wd, ckpt=ckpt,
      before_kill=before_kill, killed=killed, killed_rc=killed_rc, survivor_s=survivor_s,
      resumed=resumed, resumed_rc=resumed_rc,
      two=_losses(reporting.read_metrics(two_wd)))


def test_killed_process_stops_the_other_with_a_clear_message(runs):
  assert runs.killed_rc[1] == -signal.SIGKILL
  assert runs.killed_rc[0] == 1, runs.killed.text(0)[-3000:]
  err = runs.killed.stderr(0).strip().splitlines()[-1]
  assert err.startswith('error: process 0: lost contact with the other processes'), err
  assert 'Start all 2 processes again with the same command' in err
  assert runs.survivor_s < 60  # the heartbeat timeout is 20 s; a dead peer's collective fails at once


def test_two_processes_resume_exactly_and_match_one_process(runs):
  assert runs.resumed_rc == [0, 0], runs.resumed.text()[-3000:]
  assert f'resuming from the checkpoint at step {runs.ckpt} of {STEPS}' in runs.resumed.stdout(0)
  # the steps logged after the checkpoint, before the kill, come out again bit for bit
  redone = [s for s in runs.before_kill if s > runs.ckpt]
  assert redone and all(runs.two[s] == runs.before_kill[s] for s in redone), redone
  assert sorted(runs.two) == list(range(1, STEPS + 1)) == sorted(runs.one)
  for s in runs.two:
    for k, v in runs.one[s].items():
      assert runs.two[s][k] == pytest.approx(v, rel=1e-4, abs=1e-6), (s, k)


def test_only_process_zero_reports(runs):
  wd = runs.two_wd
  rows = [r['step'] for r in reporting.read_metrics(wd) if 'G_GAN' in r]
  assert rows == sorted(set(rows))  # one writer: no step twice
  assert f'Done: step {STEPS}' in runs.resumed.stdout(0)
  assert runs.resumed.stdout(1) == ''  # process 1 prints nothing: its lines go to its log
  assert os.path.getsize(os.path.join(wd, 'hdgan_jax.process1.log')) > 0
  assert os.path.exists(os.path.join(wd, 'index.html'))
  assert os.path.exists(os.path.join(wd, 'samples', f'step_{STEPS:07d}.png'))


def _join(tmp_path, port, process_id):
  """A process that tries to join a 2-process run; (return code, stderr lines, seconds)."""
  t0 = time.time()
  r = subprocess.run(
      [sys.executable, '-m', 'hdgan_jax.main', '--config=experiments/demo.py',
       f'--workdir={tmp_path}', f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2',
       f'--process_id={process_id}', '--distributed_timeout=3'],
      cwd=REPO, env=_env(1, str(tmp_path / 'cache')), capture_output=True, text=True, timeout=120)
  return r.returncode, r.stderr.strip().splitlines(), time.time() - t0


def test_unreachable_coordinator_fails_fast_with_one_line(tmp_path):
  port = _free_port()  # nobody listens there
  rc, lines, took = _join(tmp_path, port, 1)
  assert rc == 1 and len(lines) == 1, lines
  assert lines[0].startswith(f'error: process 1: could not reach the coordinator at '
                             f'127.0.0.1:{port} within 3 s (--distributed_timeout)'), lines
  assert took < 60, took
  assert not os.path.exists(tmp_path / 'checkpoints')


def test_taken_coordinator_port_fails_with_one_line(tmp_path):
  with socket.socket(socket.AF_INET6) as s:  # JAX's coordinator binds [::]:PORT
    s.bind(('::', 0))
    s.listen()
    port = s.getsockname()[1]
    rc, lines, _ = _join(tmp_path, port, 0)
  assert rc == 1 and len(lines) == 1, lines
  assert lines[0].startswith(f"error: process 0: the coordinator's port {port} "
                             f'(--coordinator_address=127.0.0.1:{port}) is in use'), lines


def _flags(**kw):
  base = dict(coordinator_address=None, num_processes=None, process_id=None, distributed=False,
              distributed_timeout=300, distributed_heartbeat_timeout=100)
  return types.SimpleNamespace(**{**base, **kw})


@pytest.mark.parametrize('kw, match', [
    (dict(num_processes=2, process_id=0), 'need --coordinator_address'),
    (dict(coordinator_address='10.0.0.2', num_processes=2, process_id=0), 'use HOST:PORT'),
    (dict(coordinator_address='h:99999', num_processes=2, process_id=0), 'use HOST:PORT'),
    (dict(coordinator_address='h:8476', num_processes=2), 'needs --num_processes=N and --process_id'),
    (dict(coordinator_address='h:8476', num_processes=2, process_id=2), r'--process_id=2 must be in'),
    (dict(coordinator_address='h:8476', num_processes=0, process_id=0), '--num_processes=0'),
    (dict(distributed=True, distributed_timeout=0), '--distributed_timeout=0 must be >= 1'),
])
def test_bad_multi_host_flags(kw, match):
  with pytest.raises(distributed.DistributedSetupError, match=match):
    distributed.spec_from_flags(_flags(**kw))


def test_multi_host_flags():
  assert distributed.spec_from_flags(_flags()) is None
  spec = distributed.spec_from_flags(_flags(coordinator_address='10.0.0.2:8476', num_processes=4,
                                            process_id=3, distributed_timeout=30))
  assert (spec.coordinator_address, spec.num_processes, spec.process_id, spec.auto,
          spec.timeout) == ('10.0.0.2:8476', 4, 3, False, 30)
  auto = distributed.spec_from_flags(_flags(distributed=True))
  assert auto.auto and auto.coordinator_address is None and auto.process_id is None
