"""XLA:CPU flags set when hdgan_jax is imported, before JAX starts its CPU backend.

jaxlib 0.10 hands every convolution XLA:CPU can take to YNNPACK
(``--xla_cpu_experimental_ynn_fusion_type``). On the 2-core EPYC those
convolutions ran on one thread and below XLA's own (Eigen) kernels even there:
G1's residual conv (1024 channels at 32x64) 1110 ms against 331 ms, G's first
7x7 conv at 256x512 644 ms against 156 ms (``benchmarks/conv_layers.py``).
:data:`FLAGS` takes convolutions out of YNNPACK's list; its matmuls stay.

Only the CPU backend reads these flags, so GPU and TPU runs are unaffected. The
flag is known to jaxlib 0.10 (:data:`TESTED`); an unknown flag would make XLA
abort at start-up, so other versions are left alone. A flag the user already
set in ``XLA_FLAGS`` wins, and ``HDGAN_XLA_CPU_FLAGS=0`` skips this entirely.
"""

import importlib.metadata
import os

FLAGS = ('--xla_cpu_experimental_ynn_fusion_type=-individual_convolution',)
TESTED = ((0, 10),)  # jaxlib (major, minor) versions that know FLAGS
ENV = 'HDGAN_XLA_CPU_FLAGS'


def _jaxlib_version():
  try:
    return tuple(int(p) for p in importlib.metadata.version('jaxlib').split('.')[:2])
  except (importlib.metadata.PackageNotFoundError, ValueError):
    return None


def apply(environ=os.environ) -> tuple:
  """Appends :data:`FLAGS` to ``XLA_FLAGS`` where jaxlib knows them; returns those added."""
  if environ.get(ENV, '1') == '0' or _jaxlib_version() not in TESTED:
    return ()
  current = environ.get('XLA_FLAGS', '')
  added = tuple(f for f in FLAGS if f.split('=')[0] not in current)
  if added:
    environ['XLA_FLAGS'] = ' '.join((current,) + added).strip()
  return added
