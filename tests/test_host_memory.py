"""host_memory: when the entry points re-execute under the huge-page malloc, and that they do."""

import os
import platform
import subprocess
import sys

import pytest

from hdgan_jax import host_memory

GLIBC = ('glibc', '2.36')


def _env(environ=None, **kw):
  args = dict(system='Linux', libc=GLIBC, thp_mode='madvise')
  args.update(kw)
  return host_memory.huge_page_env(environ or {}, **args)


def test_sets_the_tunable_and_the_guard():
  env = _env({'PATH': '/bin'})
  assert env['GLIBC_TUNABLES'] == host_memory.HUGE_PAGE_TUNABLE
  assert env[host_memory.OPT_OUT] == '0' and env['PATH'] == '/bin'
  assert _env({'GLIBC_TUNABLES': 'glibc.malloc.arena_max=2'})['GLIBC_TUNABLES'] == (
      'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1')
  assert _env(thp_mode='always') is not None


@pytest.mark.parametrize('environ, kw', [
    ({host_memory.OPT_OUT: '0'}, {}),                       # opted out, or already re-executed
    ({'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=0'}, {}),     # the user's own choice stays
    ({}, dict(thp_mode='never')),                           # no transparent huge pages
    ({}, dict(thp_mode='')),
    ({}, dict(libc=('glibc', '2.31'))),                     # no such tunable before 2.35
    ({}, dict(libc=('', ''))),                              # musl and others
    ({}, dict(system='Darwin')),
])
def test_leaves_the_process_alone(environ, kw):
  assert _env(environ, **kw) is None


def test_reexecutes_with_the_same_arguments():
  """The process is replaced (same pid) with the tunable set, once, keeping its arguments."""
  code = ('import os, sys; from hdgan_jax import host_memory; print("start", flush=True); '
          'host_memory.reexec_with_huge_pages(); '
          'print(os.getpid(), os.environ.get("GLIBC_TUNABLES"), sys.argv[1:])')
  env = {k: v for k, v in os.environ.items() if k not in ('GLIBC_TUNABLES', host_memory.OPT_OUT)}
  p = subprocess.Popen([sys.executable, '-c', code, 'a', '--b=1'], stdout=subprocess.PIPE,
                       text=True, env=env)
  out, _ = p.communicate(timeout=120)
  assert p.returncode == 0
  lines = out.splitlines()
  expected = host_memory.huge_page_env(env, system=platform.system(),
                                       libc=platform.libc_ver(),
                                       thp_mode=host_memory._thp_mode())
  pid, tunables, argv = lines[-1].split(' ', 2)
  assert int(pid) == p.pid and argv == "['a', '--b=1']"
  if expected is None:  # this machine cannot use it: nothing happens
    assert lines == ['start', f'{p.pid} None {argv}']
  else:  # started twice, the second time with the tunable
    assert lines[:2] == ['start', 'start'] and tunables == host_memory.HUGE_PAGE_TUNABLE


@pytest.mark.parametrize('script, interactive, in_kernel, want', [
    ('/repo/hdgan_jax/main.py', False, False, True),   # python -m hdgan_jax.main
    ('/venv/bin/hdgan-jax', False, False, True),       # the console script
    ('benchmarks/train_step.py', False, False, True),
    ('-c', False, False, True),                         # python -c CODE
    ('-', False, False, False),      # the script came on stdin (python [-W x ...] -), now consumed
    ('', False, False, False),       # a REPL
    ('script.py', True, False, False),                  # python -i, or a REPL calling run()
    ('/venv/lib/ipykernel_launcher.py', False, True, False),  # a notebook kernel
])
def test_only_a_command_that_can_run_again_is_restarted(script, interactive, in_kernel, want):
  assert host_memory.restartable(script, interactive=interactive, in_kernel=in_kernel) == want


@pytest.mark.parametrize('options', [[], ['-W', 'ignore'], ['-u']])
def test_a_script_from_stdin_is_not_restarted(options):
  """What ``sys.argv[0]`` really is for a script piped in, whatever options precede the ``-``."""
  code = ('import sys; from hdgan_jax import host_memory; '
          'print(host_memory.restartable(sys.argv[0], interactive=False, in_kernel=False))')
  r = subprocess.run([sys.executable, *options, '-'], input=code, capture_output=True,
                     text=True, timeout=120)
  assert r.returncode == 0, r.stderr
  assert r.stdout.strip() == 'False'


_SCHEDULER_CODE = '''
import os
import jax, numpy as np
from hdgan_jax import config as config_lib, host_memory, models, step
first = host_memory.use_memory_scheduler()
c = config_lib.get_config()  # a small G1: its forward pass, as --mode=generate compiles it
c.model.update(dict(netG='global', ngf=16, n_downsample_global=3, n_blocks_global=3))
c.no_vgg_loss = True
nets = step.build(c, steps_per_epoch=1)
module, dummies = models.make_module_and_inputs('G', c.model)
p = {'G': jax.eval_shape(module.init, jax.random.PRNGKey(0), *dummies)['params']}
b = {'label': jax.ShapeDtypeStruct((1, 128, 256), np.int32),
     'inst': jax.ShapeDtypeStruct((1, 128, 256), np.uint16),
     'image': jax.ShapeDtypeStruct((1, 128, 256, 3), np.float32)}
fn = jax.jit(lambda p, b: step.generator_forward(nets, c, p, b)[1])
temp = fn.lower(p, b).compile().memory_analysis().temp_size_in_bytes
print(first, host_memory.use_memory_scheduler(), os.environ.get('XLA_FLAGS'), temp)
'''


def _scheduler_run(xla_flags):
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  if xla_flags is not None:
    env['XLA_FLAGS'] = xla_flags
  out = subprocess.run([sys.executable, '-c', _SCHEDULER_CODE], capture_output=True, text=True,
                       env=env, timeout=120, check=True)
  first, again, *flags, temp = out.stdout.split()
  return first == 'True', again == 'True', ' '.join(flags), int(temp)


def test_memory_scheduler_is_set_before_the_backend_and_takes_effect():
  """Set before JAX starts its backend (then too late); XLA's temp is what it was for."""
  first, again, flags, temp = _scheduler_run(None)
  assert first and not again and flags == host_memory.MEMORY_SCHEDULER_FLAG
  # The user's own choice of the option wins; with XLA's default scheduler more of G's
  # full-size maps stay live together (55 against 61 MB here; 448 against 1628 MiB
  # for ngf 64 at 512x1024).
  first, _, flags, default_temp = _scheduler_run(
      '--xla_cpu_enable_concurrency_optimized_scheduler=true')
  assert first and flags == '--xla_cpu_enable_concurrency_optimized_scheduler=true'
  assert temp < default_temp, (temp, default_temp)
