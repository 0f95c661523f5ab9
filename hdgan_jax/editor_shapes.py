"""Pure geometry for the editor's drawing tools: brush strokes and object silhouettes.

Masks only (boolean numpy arrays, no state): ``hdgan_jax.edit`` turns them
into edits (``paint``, ``stamp``) that keep the Cityscapes id encoding. The
silhouettes are procedural side views drawn from rectangles and ellipses, like
the objects of the demo scenes (``hdgan_jax.data.demo``), so stamping needs no
asset files and works at any size.
"""

from typing import Sequence, Tuple

import numpy as np

MAX_STROKE_POINTS = 10000
SHAPES = ('car', 'person')
# Width over height of each silhouette (a car seen from the side, a standing person).
ASPECT = {'car': 2.3, 'person': 0.42}


def stroke_mask(shape: Tuple[int, int], points: Sequence[Sequence[int]],
                radius: float) -> np.ndarray:
  """(H, W) bool: pixels within ``radius`` of the polyline through ``points`` ([y, x] each).

  A single point paints a disc. Points may lie outside the image (the stroke
  is clipped). Raises ValueError for no points, too many, or radius < 0.5.
  """
  h, w = shape
  pts = np.asarray(points, np.float64).reshape(-1, 2)
  if not len(pts) or len(pts) > MAX_STROKE_POINTS:
    raise ValueError(f'a stroke needs 1..{MAX_STROKE_POINTS} points, got {len(pts)}')
  if not radius >= 0.5:
    raise ValueError(f'brush radius must be >= 0.5 pixels, got {radius}')
  out = np.zeros((h, w), bool)
  segments = list(zip(pts[:-1], pts[1:])) if len(pts) > 1 else [(pts[0], pts[0])]
  for a, b in segments:
    y0 = int(max(np.floor(min(a[0], b[0]) - radius), 0))
    y1 = int(min(np.ceil(max(a[0], b[0]) + radius) + 1, h))
    x0 = int(max(np.floor(min(a[1], b[1]) - radius), 0))
    x1 = int(min(np.ceil(max(a[1], b[1]) + radius) + 1, w))
    if y0 >= y1 or x0 >= x1:
      continue
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    d = b - a
    n = float(d @ d)
    t = np.zeros_like(yy) if n == 0 else np.clip(((yy - a[0]) * d[0] + (xx - a[1]) * d[1]) / n,
                                                 0, 1)
    dist2 = (yy - a[0] - t * d[0]) ** 2 + (xx - a[1] - t * d[1]) ** 2
    out[y0:y1, x0:x1] |= dist2 <= radius * radius
  return out


def _ellipse(m, cy, cx, ry, rx):
  h, w = m.shape
  yy, xx = np.mgrid[0:h, 0:w]
  m |= ((yy + 0.5 - cy) / max(ry, 0.5)) ** 2 + ((xx + 0.5 - cx) / max(rx, 0.5)) ** 2 <= 1


def _rect(m, y0, y1, x0, x1):
  m[int(round(y0)):max(int(round(y1)), int(round(y0)) + 1),
    int(round(x0)):max(int(round(x1)), int(round(x0)) + 1)] = True


def silhouette(kind: str, height: int) -> np.ndarray:
  """A (height, round(height * ASPECT[kind])) bool mask of a car or a person, feet/wheels down."""
  if kind not in SHAPES:
    raise ValueError(f'unknown shape {kind!r}; one of {list(SHAPES)}')
  if not 4 <= height <= 4096:
    raise ValueError(f'object size must be 4..4096 pixels, got {height}')
  h = int(height)
  w = max(int(round(h * ASPECT[kind])), 2)
  m = np.zeros((h, w), bool)
  if kind == 'car':
    _rect(m, 0.38 * h, 0.84 * h, 0.02 * w, 0.98 * w)          # body
    _ellipse(m, 0.61 * h, 0.05 * w, 0.22 * h, 0.05 * w)        # rounded front and back
    _ellipse(m, 0.61 * h, 0.95 * w, 0.22 * h, 0.05 * w)
    for dy in range(int(0.40 * h)):                            # cabin, narrowing upwards
      f = dy / max(0.40 * h, 1)
      _rect(m, 0.40 * h - dy - 1, 0.40 * h - dy, (0.22 + 0.08 * f) * w, (0.74 - 0.08 * f) * w)
    for cx in (0.2, 0.8):                                      # wheels
      _ellipse(m, 0.82 * h, cx * w, 0.18 * h, 0.18 * h)
  else:
    _ellipse(m, 0.075 * h, 0.5 * w, 0.075 * h, 0.2 * w)        # head
    _rect(m, 0.15 * h, 0.55 * h, 0.18 * w, 0.82 * w)           # torso
    _rect(m, 0.17 * h, 0.5 * h, 0.0, 0.16 * w)                 # arms
    _rect(m, 0.17 * h, 0.5 * h, 0.84 * w, w)
    _rect(m, 0.55 * h, h, 0.22 * w, 0.46 * w)                  # legs
    _rect(m, 0.55 * h, h, 0.54 * w, 0.78 * w)
  return m
