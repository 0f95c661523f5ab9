"""Interop with NVIDIA's pix2pixHD checkpoints (and VGG weights).

Stable API: :func:`from_pix2pixhd`, :func:`to_pix2pixhd`; file helpers in
:mod:`hdgan_jax.convert.io`; the CLI is ``python -m hdgan_jax.convert``.
"""

from hdgan_jax.convert.pix2pixhd import (CheckpointMismatchError, Report, from_pix2pixhd,
                                         key_table, module_table, to_pix2pixhd)
