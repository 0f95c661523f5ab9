"""``--mode=generate``: one image per label map (or several styles per map), written as PNG.

Inputs go through the run's own test-time preprocessing (``config.data`` of the
checkpoint, or of ``--config`` for weight files), so they are treated exactly
as training data were. Mismatched test-time preprocessing is the usual cause
of the original's "blurry test results" reports (NVIDIA/pix2pixHD #171, #292).
Output names follow the original's test.py: ``<label file stem>_synthesized_image.png``
(``_sample<k>.png`` for several styles), so names never collide.
"""

import logging
import os
from typing import Callable, List, Optional

from PIL import Image

from hdgan_jax import edit, reporting
from hdgan_jax.data import pipeline, user_files
from hdgan_jax.render import Renderer
from hdgan_jax.run import Run, RunError


def generate(run: Run, *, labels: str, instances: Optional[str] = None, out: str,
             num_samples: int = 1, styles: Optional[str] = None, seed: int = 0,
             progress=None, notify: Callable[[str], None] = logging.info) -> List[str]:
  """Writes one image per input (``num_samples`` per input with instance features).

  ``progress`` wraps the list of inputs (e.g. a tqdm constructor); ``notify``
  receives notes for people, such as maps resized by the preprocessing.
  """
  if not run.model.use_features and (num_samples > 1 or styles):
    raise RunError('--num_samples > 1 and --styles need a model trained with '
                   'model.use_features=True (instance feature encoder)')
  renderer = Renderer(run)
  pairs = user_files.pair_inputs(labels, instances,
                                 allow_lossy=run.config.data.get('allow_lossy_maps', False))
  choices = edit.load_styles(styles) if styles else None
  if os.path.exists(out) and not os.path.isdir(out):
    raise NotADirectoryError(f'--out={out} is a file; give a folder for the images')
  os.makedirs(out, exist_ok=True)
  written, seen = [], set()
  for label_path, inst_path in (progress(pairs) if progress else pairs):
    batch = pipeline.load_pair(label_path, inst_path, run.config)
    inst = batch['inst'][0] if 'inst' in batch else None
    _note_resize(label_path, batch['label'].shape[1:3], run.config, notify, seen)
    base = os.path.splitext(os.path.basename(label_path))[0]
    for s in range(num_samples):
      img = renderer.render(batch['label'][0], inst, choices=choices, rng=(seed, s))
      name = f'{base}_synthesized_image.png' if num_samples == 1 else f'{base}_sample{s}.png'
      path = os.path.join(out, name)
      reporting.save_png(img, path)
      written.append(path)
  return written


def _note_resize(path: str, out_hw, config, notify, seen: set) -> None:
  """Says once per size when preprocessing changes a map's size (outputs have the new one)."""
  with Image.open(path) as im:
    w, h = im.size
  key = (w, h, out_hw[1], out_hw[0])
  if (w, h) != (out_hw[1], out_hw[0]) and key not in seen:
    seen.add(key)
    d = config.data
    notify(f'note: {w}x{h} maps become {out_hw[1]}x{out_hw[0]} images (data.resize_or_crop='
           f'{d.resize_or_crop}, loadSize={d.loadSize}; this generator needs sides that are '
           f'multiples of {pipeline.make_prep(config).multiple}), e.g. '
           f'{os.path.basename(path)}')
