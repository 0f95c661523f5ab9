"""hdgan_jax: pix2pixHD (Wang et al., CVPR 2018) in JAX/Flax.

Subpackages: ``models`` (networks and input encoding), ``convert`` (NVIDIA
checkpoint interop), ``losses``, ``train`` and ``data``.
"""

__version__ = "0.1.0"
