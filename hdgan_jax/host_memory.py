"""Host memory: how glibc's malloc serves XLA:CPU, and giving back what the compiler freed.

Three things, the first two measured on the 2-core EPYC, the third on the 2-core
Xeon (README, CPU convolutions and Memory):

* :func:`trim`: compiling the train step frees about 650 MB (256x512, ngf 32)
  that malloc keeps in its arenas, so without a trim the step's own buffers land
  on top of it. Called after compiling, after the init (or restore) has run and
  after the first step, by training and by ``benchmarks/train_step.py``, and
  after each synchronous checkpoint save.
* :func:`reexec_with_huge_pages`: each XLA:CPU execution allocates its temp
  buffers afresh (698 MiB for the 256x512 step); blocks that big are mmap'd
  and unmapped by malloc every step, so every step faults in ~180k new 4 KiB
  pages: 0.5 s of kernel time per 2.4 s step. With glibc's
  ``glibc.malloc.hugetlb=1`` tunable malloc asks for transparent huge pages
  (2 MiB), and the same step spends 0.15-0.2 s in the kernel and takes
  2.1-2.2 s, at the same peak RSS. A tunable is read only when a process
  starts, so training's command line re-executes itself with it once. Inference
  does not: at 2048x1024 (local G) it ran 5-10 % slower with it (8.8-9.3
  against 8.1-8.4 s, two runs each; why was not measured).
* :func:`use_memory_scheduler`: inference processes (``--mode=generate``,
  ``evaluate``, ``encode_features``, ``hdgan-editor``) compile with XLA:CPU's memory-minimising
  scheduler. On a forward chain the default, concurrency-optimised one gains no
  parallelism and keeps many more full-size activations live, and every byte of
  temp is faulted in afresh on each call: global G, ngf 64, 512x1024 on the
  2-core Xeon, temp 1628 -> 448 MiB, peak RSS 3517 -> 2274 MiB, 3.57 -> 2.75 s
  a call (13.7 -> 3.6 s of kernel time over the benchmark's run). Training keeps
  the default: its step's temp doubled with it at 128x256 (423 -> 851 MiB, ngf 64,
  VGG19). XLA reads this option only from ``XLA_FLAGS``, once, when JAX starts
  its backend (as ``jax.jit``'s ``compiler_options`` it is ignored: same temp).
"""

import ctypes
import ctypes.util
import os
import platform
import sys
from typing import Mapping, Optional

HUGE_PAGE_TUNABLE = 'glibc.malloc.hugetlb=1'
OPT_OUT = 'HDGAN_JAX_HUGE_PAGES'  # '0': never re-execute (also set by the re-executed process)
THP_SETTING = '/sys/kernel/mm/transparent_hugepage/enabled'


def trim() -> bool:
  """Returns freed heap pages to the OS (glibc ``malloc_trim``); False where unavailable."""
  try:
    return bool(ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6').malloc_trim(0))
  except (OSError, AttributeError):
    return False


MEMORY_SCHEDULER_FLAG = '--xla_cpu_enable_concurrency_optimized_scheduler=false'


def use_memory_scheduler() -> bool:
  """Adds :data:`MEMORY_SCHEDULER_FLAG` to ``XLA_FLAGS`` for this process; False if too late.

  Call it before JAX starts its backend (before the first array or
  ``jax.devices()``); a user's own setting of the option in ``XLA_FLAGS`` is kept.
  The option only concerns XLA:CPU.
  """
  # Not imported here: the command line calls this before JAX loads (``--help`` never does).
  bridge = sys.modules.get('jax._src.xla_bridge')
  if bridge is not None and bridge.backends_are_initialized():
    return False
  flags = os.environ.get('XLA_FLAGS', '')
  if 'xla_cpu_enable_concurrency_optimized_scheduler' not in flags:
    os.environ['XLA_FLAGS'] = f'{flags} {MEMORY_SCHEDULER_FLAG}'.strip()
  return True


def _thp_mode() -> str:
  """The kernel's transparent-huge-page mode ('always', 'madvise', 'never'), '' if unknown."""
  try:
    with open(THP_SETTING) as f:
      text = f.read()
  except OSError:
    return ''
  return text.split('[', 1)[1].split(']', 1)[0] if '[' in text else ''


def huge_page_env(environ: Mapping[str, str], *, system: str, libc: tuple,
                  thp_mode: str) -> Optional[dict]:
  """The environment to re-execute with, or None where it would not help or is already set.

  ``libc``: ``platform.libc_ver()``; the tunable exists from glibc 2.35. THP must
  be 'always' or 'madvise' (the tunable madvises its blocks).
  """
  if system != 'Linux' or environ.get(OPT_OUT) == '0' or thp_mode not in ('always', 'madvise'):
    return None
  name, version = libc
  try:
    major_minor = tuple(int(p) for p in version.split('.')[:2])
  except ValueError:
    return None
  if name != 'glibc' or major_minor < (2, 35):
    return None
  tunables = environ.get('GLIBC_TUNABLES', '')
  if 'glibc.malloc.hugetlb' in tunables:
    return None  # the user chose a value; keep it
  env = dict(environ)
  env['GLIBC_TUNABLES'] = f'{tunables}:{HUGE_PAGE_TUNABLE}' if tunables else HUGE_PAGE_TUNABLE
  env[OPT_OUT] = '0'  # the new process does not re-execute again
  return env


def reexec_with_huge_pages() -> None:
  """Re-executes this command with :data:`HUGE_PAGE_TUNABLE` set, where it helps; else returns.

  Call it early in a training command line, before JAX's backend starts (the
  process is replaced: same pid, same arguments from ``sys.orig_argv``). Set
  ``HDGAN_JAX_HUGE_PAGES=0`` to turn it off.
  """
  env = huge_page_env(os.environ, system=platform.system(), libc=platform.libc_ver(),
                      thp_mode=_thp_mode())
  argv = getattr(sys, 'orig_argv', None)
  interactive = hasattr(sys, 'ps1') or bool(sys.flags.interactive)
  if env is None or not argv or not restartable(sys.argv[0], interactive=interactive,
                                                in_kernel='ipykernel' in sys.modules):
    return
  sys.stdout.flush()
  sys.stderr.flush()
  try:
    os.execve(sys.executable, argv, env)
  except OSError:
    return  # could not re-execute (an unusual interpreter setup): run as is


def restartable(script: str, *, interactive: bool, in_kernel: bool) -> bool:
  """Whether running this command again repeats it, from ``script`` (``sys.argv[0]``).

  Not for a REPL (``''``), a script read from standard input (``'-'``, which the first
  run has consumed, whatever interpreter options came before it), ``python -i`` or a
  notebook kernel.
  """
  return not (interactive or in_kernel or script in ('', '-'))


def huge_pages_on() -> bool:
  """Whether this process runs with :data:`HUGE_PAGE_TUNABLE`."""
  return HUGE_PAGE_TUNABLE in os.environ.get('GLIBC_TUNABLES', '')
