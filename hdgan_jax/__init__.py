"""hdgan_jax: pix2pixHD (Wang et al., CVPR 2018) in JAX/Flax.

Subpackages: ``models`` (networks and input encoding), ``convert`` (NVIDIA
checkpoint interop), ``losses``, ``train`` and ``data``. Importing the package
first sets XLA:CPU's flags (:mod:`hdgan_jax.xla_cpu`), before JAX starts its
CPU backend.
"""

from hdgan_jax import xla_cpu

xla_cpu.apply()

__version__ = "0.1.0"
