"""Host memory: give back what XLA's compiler freed before a run's peak.

Compiling the train step frees about 650 MB (256x512, ngf 32) that glibc's
malloc keeps in its arenas, so the step's own buffers land on top of it: peak
RSS 3131 MiB without a trim after compiling, 2419 MiB with one (the original's
iteration: 1726 MiB). :func:`trim` is called once, after the first (compiling)
step, by training and by ``benchmarks/train_step.py``.
"""

import ctypes
import ctypes.util


def trim() -> bool:
  """Returns freed heap pages to the OS (glibc ``malloc_trim``); False where unavailable."""
  try:
    return bool(ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6').malloc_trim(0))
  except (OSError, AttributeError):
    return False
