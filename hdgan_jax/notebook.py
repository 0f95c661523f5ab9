"""Small helpers for notebooks (``notebooks/quickstart.ipynb``): configs from files, image tiles.

The command line reads experiment files with ``--config=experiments/demo.py``
(absl's config flags); a notebook has no flags, so :func:`load_config` does
the same from a path. :func:`tile` lays out uint8 images (label maps in
colour, generated images, photos) as one enlarged PIL image, which Jupyter
and Colab display inline; the demo's 64x128 images are too small to judge
at their own size.
"""

import contextlib
import importlib.util
import os
import sys
from typing import Iterable, Optional, Sequence

import ml_collections
import numpy as np
from PIL import Image


@contextlib.contextmanager
def native_stderr_silenced():
  """C++ start-up lines on file descriptor 2 (TensorFlow's oneDNN note) go nowhere for the block.

  Jupyter kernels forward fd 2 into the notebook, and those lines, printed
  before any logging setting can reach them, look like errors there. The
  command line sends them to its log file (``console.setup``); here they are
  dropped. Python's own ``sys.stderr`` (tracebacks, progress bars) is untouched.
  """
  sys.stderr.flush()
  saved = os.dup(2)
  devnull = os.open(os.devnull, os.O_WRONLY)
  try:
    os.dup2(devnull, 2)
    yield
  finally:
    os.dup2(saved, 2)
    os.close(saved)
    os.close(devnull)


def load_config(path: str) -> ml_collections.ConfigDict:
  """``get_config()`` of an experiment file, as ``--config=path`` would load it."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: no such experiment file (see experiments/ in the repository)')
  name = os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(f'hdgan_experiment_{name}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, 'get_config'):
    raise ValueError(f'{path}: an experiment file must define get_config()')
  return module.get_config()


def tile(rows: Sequence[Sequence[np.ndarray]], *, scale: int = 1, gap: int = 4,
         background: int = 255) -> Image.Image:
  """Rows of (H, W, 3) uint8 images as one image, each enlarged ``scale`` times (nearest).

  Images may differ in size; each sits at the top-left of its cell, and cells
  are separated by ``gap`` pixels of ``background`` grey.
  """
  if scale < 1 or gap < 0:
    raise ValueError(f'need scale >= 1 and gap >= 0, got scale={scale}, gap={gap}')
  rows = [[_rgb(im) for im in row] for row in rows]
  if not any(rows):
    raise ValueError('tile: no images given')
  cell_h = [max((im.shape[0] for im in row), default=0) * scale for row in rows]
  cell_w = max(im.shape[1] for row in rows for im in row) * scale
  cols = max(len(row) for row in rows)
  out = np.full((sum(cell_h) + gap * (len(rows) - 1), cols * cell_w + gap * (cols - 1), 3),
                background, np.uint8)
  y = 0
  for row, h in zip(rows, cell_h):
    for j, im in enumerate(row):
      big = im.repeat(scale, axis=0).repeat(scale, axis=1)
      x = j * (cell_w + gap)
      out[y:y + big.shape[0], x:x + big.shape[1]] = big
    y += h + gap
  return Image.fromarray(out)


def _rgb(image) -> np.ndarray:
  a = np.asarray(image)
  if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] not in (3, 4):
    raise ValueError(f'tile takes (H, W, 3) uint8 images, got {a.dtype} {a.shape}; colour '
                     'label maps first (reporting.colorize)')
  return a[..., :3]


def largest_instance(inst: np.ndarray, classes: Iterable[int],
                     exclude: Iterable[int] = ()) -> Optional[int]:
  """Id of the biggest thing instance (id >= 1000) of one of ``classes``, or None."""
  classes, exclude = set(int(c) for c in classes), set(int(i) for i in exclude)
  ids, counts = np.unique(np.asarray(inst), return_counts=True)
  best = [(n, int(i)) for i, n in zip(ids, counts)
          if i >= 1000 and int(i) // 1000 in classes and int(i) not in exclude]
  return max(best)[1] if best else None
