"""What a run shows its user: metrics (TensorBoard, console, metrics.jsonl),
sample grids (colour-coded labels | generated | real) and ``index.html``.

The page is the original's ``web/index.html`` done better: newest first, the
losses at each sample step beside the images, rewritten atomically so a
browser never sees half a file.
"""

import html
import json
import os
from typing import Dict, List, Optional

import numpy as np
from clu import metric_writers
from PIL import Image

from hdgan_jax import fileutil, plots
from hdgan_jax.data import cityscapes


class Writer:
  """clu writers plus an append-only ``metrics.jsonl`` (one object per log step)."""

  def __init__(self, workdir: str, *, is_main: bool = True):
    self.workdir = workdir
    self.is_main = is_main
    self.clu = metric_writers.create_default_writer(workdir, just_logging=not is_main)
    self.jsonl = os.path.join(workdir, 'metrics.jsonl')

  def scalars(self, step: int, values: Dict[str, float]) -> None:
    values = {k: float(v) for k, v in values.items()}
    self.clu.write_scalars(step, values)
    if self.is_main:
      with open(self.jsonl, 'a') as f:
        f.write(json.dumps({'step': int(step), **values}) + '\n')

  def images(self, step: int, images: Dict[str, np.ndarray]) -> None:
    self.clu.write_images(step, {k: v[None] if v.ndim == 3 else v for k, v in images.items()})

  def flush(self) -> None:
    self.clu.flush()


def read_metrics(workdir: str) -> List[Dict]:
  """Rows of ``metrics.jsonl``; a torn line (a run killed mid-write) is skipped, not fatal."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return []
  rows = []
  with open(path, encoding='utf-8', errors='replace') as f:
    for line in f:
      try:
        row = json.loads(line)
      except ValueError:
        continue
      if isinstance(row, dict) and isinstance(row.get('step'), int):
        rows.append(row)
  return rows


def truncate_metrics(workdir: str, after_step: int) -> None:
  """Keeps the readable log lines up to ``after_step`` (a resumed run rewrites the rest).

  Rewritten atomically, so a torn last line from a killed run is dropped here too.
  """
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return
  keep = [r for r in read_metrics(workdir) if r['step'] <= after_step]
  fileutil.atomic_write_text(path, ''.join(json.dumps(r) + '\n' for r in keep))


def to_uint8(images: np.ndarray) -> np.ndarray:
  """[-1, 1] floats -> uint8 exactly as the original's ``util.tensor2im``.

  The original computes ``(x + 1) / 2 * 255`` in float32, clips and truncates
  (``astype(uint8)``); rounding instead would make about half of all pixels
  differ by one grey level from its test.py. Used everywhere (samples,
  generation, the editor), so images of a converted NVIDIA checkpoint are the
  original's pixels.
  """
  x = np.asarray(images, np.float32)
  return np.clip((x + np.float32(1.0)) / np.float32(2.0) * np.float32(255.0), 0, 255).astype(np.uint8)


def colorize(label: np.ndarray, label_nc: int) -> np.ndarray:
  """Label ids -> RGB: Cityscapes' colours for its 35 ids, a fixed palette otherwise."""
  label = np.asarray(label)
  if label_nc <= cityscapes.LABEL_NC:
    return cityscapes.colorize(label)
  rng = np.random.default_rng(1234)
  palette = rng.integers(0, 256, (max(label_nc, 1), 3)).astype(np.uint8)
  return palette[np.clip(label, 0, label_nc - 1)]


def grid(labels: np.ndarray, fakes: np.ndarray, reals: Optional[np.ndarray], label_nc: int) -> np.ndarray:
  """Rows of [labels | generated | real] as one uint8 image."""
  rows = []
  for i in range(len(fakes)):
    lab = labels[i]
    lab = colorize(lab, label_nc) if lab.ndim == 2 else to_uint8(lab)
    cols = [lab, to_uint8(fakes[i])] + ([to_uint8(reals[i])] if reals is not None else [])
    rows.append(np.concatenate(cols, axis=1))
  return np.concatenate(rows, axis=0)


def save_png(image: np.ndarray, path: str) -> None:
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  with fileutil.atomic_writer(path) as tmp:
    Image.fromarray(image).save(tmp)


def write_index(workdir: str, title: str) -> str:
  """Rewrites ``workdir/index.html`` from the sample PNGs and metrics.jsonl."""
  sample_dir = os.path.join(workdir, 'samples')
  files = sorted((f for f in os.listdir(sample_dir) if f.endswith('.png') and not f.startswith('.')),
                 reverse=True) if os.path.isdir(sample_dir) else []
  metrics: Dict[int, Dict] = {}
  for r in read_metrics(workdir):  # losses and eval scores of one step are separate rows
    metrics.setdefault(r['step'], {}).update(r)
  parts = [f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>',
           '<meta http-equiv="refresh" content="60">',
           '<style>body{font-family:sans-serif;margin:2em;background:#fafafa}'
           'figure{margin:0 0 2em 0}img{max-width:100%;image-rendering:pixelated;border:1px solid #ccc}'
           'td{padding:0 1em 0 0;font-size:90%}</style></head><body>',
           f'<h1>{html.escape(title)}</h1>']
  charts = plots.run_charts(read_metrics(workdir))
  if charts:
    parts.append('<div>' + ''.join(charts) + '</div>')
  parts.append('<p>Samples, columns: labels | generated | real. Newest first; the page '
               'reloads every minute.</p>')
  for f in files:
    step = int(f.split('_')[1].split('.')[0])
    near = [s for s in metrics if s <= step]
    row = metrics[max(near)] if near else {}
    cells = ''.join(f'<td>{html.escape(k)} {v:.4g}</td>' for k, v in row.items()
                    if k != 'step' and isinstance(v, (int, float)))
    parts.append(f'<figure><h3>step {step}</h3><table><tr>{cells}</tr></table>'
                 f'<img src="samples/{html.escape(f)}" alt="step {step}"></figure>')
  parts.append('</body></html>')
  path = os.path.join(workdir, 'index.html')
  fileutil.atomic_write_text(path, '\n'.join(parts))
  return path
