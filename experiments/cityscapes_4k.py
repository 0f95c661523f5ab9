r"""Cityscapes at 4096x2048: G1 + two local enhancers, each image split over 8 devices.

The third stage of progressive training (after experiments/cityscapes_512p.py
and experiments/cityscapes.py): a second enhancer doubles the resolution
again, as the paper's ``--n_local_enhancers 2``. Cityscapes' 2048x1024 photos
are scaled to 4096 wide. One image does not fit one 16 GB device, so every
image is split into 8 bands of rows (``mesh.space = 8``), compute runs in
bfloat16 with float32 parameters, and residual blocks are rematerialised. By
``benchmarks/memory.py`` that keeps ~11 GB per device (state 8.9 GB, the
731 M-parameter G and its Adam moments; residuals 2.2 GB).
With 8 * k devices, ``mesh.data`` becomes k: set ``--config.batch_size=k``.

  python -m hdgan_jax.main --config=experiments/cityscapes_4k.py --workdir=runs/city4k \
      --config.data.root=/data/cityscapes --config.init_from=runs/city
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cityscapes  # pylint: disable=wrong-import-position


def get_config():
  c = cityscapes.get_config()
  c.model.n_local_enhancers = 2
  c.model.dtype = 'bfloat16'
  c.model.remat = 'blocks'
  c.mesh.space = 8           # one image over 8 devices, 256 rows each
  c.mesh.data = -1           # the devices left over share the batch
  c.batch_size = 1
  c.data.resize_or_crop = 'scale_width'
  c.data.loadSize = 4096
  return c
