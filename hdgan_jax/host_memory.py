"""Host memory: give back what XLA's compiler freed before a run's peak.

Compiling the train step frees about 650 MB (256x512, ngf 32) that glibc's
malloc keeps in its arenas, so without a trim the step's own buffers land on
top of it (README, CPU convolutions: peak RSS of ``benchmarks/train_step.py``
at that size). :func:`trim` is called once, after the first (compiling) step,
by training and by ``benchmarks/train_step.py``.
"""

import ctypes
import ctypes.util


def trim() -> bool:
  """Returns freed heap pages to the OS (glibc ``malloc_trim``); False where unavailable."""
  try:
    return bool(ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6').malloc_trim(0))
  except (OSError, AttributeError):
    return False
