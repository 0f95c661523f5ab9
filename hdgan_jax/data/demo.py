"""Built-in demo data: procedural street scenes, deterministic from a seed, no download.

``make demo`` and the tests need paired (label map, instance map, photo) data
that exists offline, renders at any size in milliseconds and still has
something to learn. A scene is laid out in metres under a pinhole camera
(horizon, vanishing point, camera height), so one (index, seed) is the same
street at every image size: sky with clouds, a skyline of buildings with
window grids, road and sidewalks in perspective with lane marks and tiles,
trees, poles with signs, cars and trucks on the road (side by side and one
behind another, so instance boundaries matter) and persons on the sidewalks,
painted far to near so nearer objects occlude farther ones.

Labels are real Cityscapes labelIds (``hdgan_jax.data.cityscapes``; colour
them with ``cityscapes.colorize``) and instance maps use Cityscapes'
encoding (``class * 1000 + k`` for things, the label id for stuff), so the
demo runs through the same code paths as Cityscapes. Each thing instance
takes one colour from a per-class palette (``PALETTES``): the photo given the
label map is multi-modal, which is what pix2pixHD's instance feature encoder
and its feature clustering are for. The palette pick is returned in
``styles`` so tests and evaluations can check it.
"""

from typing import Dict, Iterator

import numpy as np

from hdgan_jax.data import cityscapes

ROAD, SIDEWALK, BUILDING, POLE, SIGN, VEGETATION, TERRAIN, SKY = (cityscapes.ID_OF[n] for n in (
    'road', 'sidewalk', 'building', 'pole', 'traffic sign', 'vegetation', 'terrain', 'sky'))
PERSON, CAR, TRUCK = (cityscapes.ID_OF[n] for n in ('person', 'car', 'truck'))
# The classes a scene can hold, id -> Cityscapes' name.
CLASSES = {c: cityscapes.NAMES[c] for c in (ROAD, SIDEWALK, BUILDING, POLE, SIGN, VEGETATION,
                                            TERRAIN, SKY, PERSON, CAR, TRUCK)}
THING_CLASSES = (PERSON, CAR, TRUCK)   # the demo's things (all in cityscapes.THING_IDS)
PALETTES = {
    CAR: {'red': (172, 28, 34), 'blue': (36, 66, 152), 'white': (228, 228, 224),
          'black': (26, 26, 30), 'silver': (150, 156, 166)},
    PERSON: {'red': (190, 40, 42), 'blue': (40, 72, 165), 'green': (48, 122, 62),
             'yellow': (222, 190, 48), 'black': (34, 34, 38), 'white': (226, 226, 220)},
    TRUCK: {'white': (232, 232, 226), 'yellow': (226, 180, 40), 'blue': (40, 82, 162),
            'green': (40, 112, 72)},
}

_FACADES = [(196, 178, 150), (135, 135, 140), (150, 82, 62), (222, 212, 188), (98, 92, 86),
            (172, 150, 118)]
_GREENS = [(52, 94, 34), (70, 110, 40), (44, 84, 46)]
_SKINS = [(232, 192, 160), (200, 150, 112), (140, 96, 66), (92, 62, 42)]
_PANTS = [(40, 46, 72), (30, 30, 34), (150, 130, 96), (92, 92, 98)]
_SIGNS = [(38, 80, 180), (200, 44, 44), (230, 190, 40)]
# Fixed colours of parts 3-5: glass, tyres/undercarriage, road paint.
_FIXED_PARTS = ((42, 50, 62), (20, 20, 22), (226, 226, 216))
_NPART = 6
# Per-class texture: grey per-pixel noise (in 0..255 units) and low-frequency modulation.
_NOISE_AMP = np.zeros(256, np.float32)
_BLOTCH_AMP = np.zeros(256, np.float32)
for _c, _n, _b in [(ROAD, 7, .12), (SIDEWALK, 5, .08), (BUILDING, 4, .14), (POLE, 3, 0),
                   (SIGN, 3, 0), (VEGETATION, 16, .75), (TERRAIN, 14, .35), (SKY, 1.5, 0),
                   (PERSON, 5, 0), (CAR, 3, 0), (TRUCK, 3, .05)]:
  _NOISE_AMP[_c], _BLOTCH_AMP[_c] = _n, _b


def _smooth_field(rng, cells_y, cells_x, h, w):
  """A smooth random field in [0, 1]: a coarse grid bilinearly upsampled to (h, w)."""
  g = rng.random((cells_y + 1, cells_x + 1), dtype=np.float32)

  def axis(n, c):
    p = (np.arange(n, dtype=np.float32) + 0.5) * np.float32(c / n)
    i = np.minimum(p.astype(np.int64), c - 1)
    return i, p - i

  iy, fy = axis(h, cells_y)
  ix, fx = axis(w, cells_x)
  rows = g[iy] * (1 - fy)[:, None] + g[iy + 1] * fy[:, None]
  return rows[:, ix] * (1 - fx) + rows[:, ix + 1] * fx


class _Canvas:
  """Object-id and part maps painted with rectangles and ellipses (later paints occlude)."""

  def __init__(self, h, w):
    self.h, self.w = h, w
    self.obj = np.zeros((h, w), np.int32)
    self.part = np.zeros((h, w), np.uint8)
    self.shade = np.ones((h, w), np.float32)
    self.cls, self.colors, self.style = [], [], []

  def new(self, cls, c0, c1=(0, 0, 0), c2=(0, 0, 0), style=None):
    self.cls.append(cls)
    self.colors.append([c0, c1, c2, *_FIXED_PARTS])
    self.style.append(style)
    return len(self.cls) - 1

  def _box(self, y0, y1, x0, x1):
    """Float pixel box -> clipped slices (at least one pixel before clipping), or None."""
    a, c = int(round(y0)), int(round(x0))
    b, d = max(int(round(y1)), a + 1), max(int(round(x1)), c + 1)
    a, b, c, d = max(a, 0), min(b, self.h), max(c, 0), min(d, self.w)
    return (slice(a, b), slice(c, d)) if a < b and c < d else None

  def rect(self, oid, part, y0, y1, x0, x1):
    sl = self._box(y0, y1, x0, x1)
    if sl:
      self.obj[sl], self.part[sl] = oid, part

  def ellipse(self, oid, part, cy, cx, ry, rx):
    sl = self._box(cy - ry, cy + ry, cx - rx, cx + rx)
    if sl:
      yy = (np.arange(sl[0].start, sl[0].stop) + 0.5 - cy) / max(ry, 0.5)
      xx = (np.arange(sl[1].start, sl[1].stop) + 0.5 - cx) / max(rx, 0.5)
      m = yy[:, None] ** 2 + xx[None, :] ** 2 <= 1.0
      m[m.shape[0] // 2, m.shape[1] // 2] = True  # never vanishes at tiny sizes
      self.obj[sl][m], self.part[sl][m] = oid, part

  def shade_box(self, oid, y0, y1, x0, x1, top, bottom, across=0.0, mult=False):
    """Shading over the object's pixels in a box: vertical ramp, optional cylinder profile."""
    sl = self._box(y0, y1, x0, x1)
    if not sl:
      return
    ry = np.clip((np.arange(sl[0].start, sl[0].stop) + 0.5 - y0) / max(y1 - y0, 1e-3), 0, 1)
    rx = np.clip((np.arange(sl[1].start, sl[1].stop) + 0.5 - x0) / max(x1 - x0, 1e-3), 0, 1)
    s = (top + (bottom - top) * ry)[:, None] + across * (np.sin(np.pi * rx) - 0.7)[None, :]
    view = self.shade[sl]
    if mult:
      view *= s.astype(np.float32)
    else:
      m = self.obj[sl] == oid
      view[m] = np.broadcast_to(s, m.shape)[m]


def _pick(rng, names):
  return names[int(rng.integers(len(names)))]


def _layout_ground(cv, rng, vh, uv, cam, road_m, walk_m):
  """Sky, skyline, road, sidewalks and what lies beyond them; returns the ground objects."""
  h, w = cv.h, cv.w
  clear = rng.random() < 0.7
  top = np.array((56, 106, 182) if clear else (136, 150, 172)) * rng.uniform(0.9, 1.08)
  hor = (172, 200, 232) if clear else (206, 208, 215)
  cv.new(SKY, tuple(top), hor, style=dict(cloudy=rng.uniform(0.0, 0.9)))  # object 0
  road = cv.new(ROAD, tuple(np.array((84, 84, 90)) * rng.uniform(0.8, 1.15)))
  walk = cv.new(SIDEWALK, (166, 156, 150), (118, 110, 106), (200, 196, 190))
  terrain = cv.new(TERRAIN, tuple(np.array((132, 150, 74)) * rng.uniform(0.85, 1.1)))
  us, vs = (np.arange(w) + 0.5) / w, (np.arange(h) + 0.5) / h
  col_obj, col_top, u = np.full(w, -1), np.ones(w), 0.0
  while u < 1.0:
    bw = rng.uniform(0.06, 0.2)
    if rng.random() > 0.12:
      tp = max(vh - rng.uniform(0.08, 0.42), 0.0)
      win = tuple(np.array((58, 68, 88)) * rng.uniform(0.8, 1.2))
      oid = cv.new(BUILDING, tuple(np.array(_FACADES[rng.integers(len(_FACADES))])
                                   * rng.uniform(0.88, 1.1)), win,
                   style=(u, tp, rng.uniform(0.018, 0.035), rng.uniform(0.035, 0.07)))
      sel = (us >= u) & (us < u + bw)
      col_obj[sel], col_top[sel] = oid, tp
    u += bw
  sky_side = (vs[:, None] >= col_top[None, :]) & (vs[:, None] < vh) & (col_obj >= 0)
  cv.obj[...] = np.where(sky_side, col_obj[None, :], 0)
  # Ground: lateral position X in metres from the road centre, depth Z in metres.
  t = np.maximum((vs - vh) / (1 - vh), 1e-4)
  ppm = t * (1 - vh) * h / cam
  z = cam / (t * (1 - vh))
  ax = (us[None, :] - uv) * w / ppm[:, None]
  beyond = [np.where((col_obj >= 0) & (rng.random() < 0.65), col_obj, terrain) for _ in (0, 1)]
  out = np.where(ax < 0, beyond[0][None, :], beyond[1][None, :])
  ax = np.abs(ax)
  ground = np.where(ax < road_m, road, np.where(ax < road_m + walk_m, walk, out))
  below = (vs >= vh)[:, None]
  cv.obj[...] = np.where(below, ground, cv.obj)
  near = (t > 0.07)[:, None] & below
  dash = (np.modf(z / 6.0)[0] < 0.5)[:, None]
  paint = ((ax < 0.08) & dash) | (np.abs(ax - road_m + 0.35) < 0.08)
  cv.part[near & (ground == road) & paint] = 5
  tile = (np.modf(z / 1.2)[0] < 0.08)[:, None] | (np.modf(ax / 1.2)[0] < 0.06)
  cv.part[near & (ground == walk) & tile] = 1
  cv.part[near & (ground == walk) & (ax - road_m < 0.2)] = 2  # kerb
  return road, walk, terrain


def render_scene(index: int, *, height: int, width: int, seed: int = 0) -> dict:
  """One scene: {'label', 'inst', 'image', 'styles'} (see the module docstring).

  label (H, W) uint8 Cityscapes labelIds; inst (H, W) uint16 (class*1000+k for
  things, the label id for stuff); image (H, W, 3) uint8; styles maps each
  thing instance id present in ``inst`` to (class name, palette colour name,
  palette RGB). Same (index, seed, size) -> identical arrays.
  """
  h, w, index, seed = int(height), int(width), int(index), int(seed)
  if h < 1 or w < 1 or index < 0 or seed < 0:
    raise ValueError(f'need height, width >= 1 and index, seed >= 0; got {h}, {w}, {index}, {seed}')
  rng = np.random.default_rng([seed, index, 0])     # layout: independent of the size
  trng = np.random.default_rng([seed, index, 1])    # texture noise
  cv = _Canvas(h, w)
  vh, uv, cam = rng.uniform(0.36, 0.5), rng.uniform(0.4, 0.6), 1.6
  road_m, walk_m = rng.uniform(3.5, 6.5), rng.uniform(2.0, 4.0)
  _layout_ground(cv, rng, vh, uv, cam, road_m, walk_m)

  # Standing objects: (depth t in (0, 1.15], lateral metres X, kind, size); t=1 is the bottom row.
  items = []
  for _ in range(rng.integers(2, 7)):
    t = 0.08 + 1.0 * rng.random() ** 1.4           # more far cars than near ones
    x, cw = rng.uniform(-road_m + 1.2, road_m - 1.2), rng.uniform(1.8, 3.4)
    items.append((t, x, 'car', cw))
    r = rng.random()
    if r < 0.3:  # side by side, touching or slightly overlapping
      cw2 = rng.uniform(1.8, 3.4)
      items.append((t * rng.uniform(0.97, 1.03), x + rng.choice([-1, 1]) * (cw + cw2) / 2
                    * rng.uniform(0.9, 1.05), 'car', cw2))
    elif r < 0.55:  # one behind the other
      items.append((t * rng.uniform(0.72, 0.9), x + rng.uniform(-0.8, 0.8), 'car',
                    rng.uniform(1.8, 3.4)))
  if rng.random() < 0.35:
    items.append((rng.uniform(0.1, 0.9), rng.uniform(-road_m + 1.5, road_m - 1.5), 'truck', 2.5))
  for _ in range(rng.integers(1, 6)):
    side, t = rng.choice([-1, 1]), rng.uniform(0.1, 1.05)
    x = side * (road_m + rng.uniform(0.4, walk_m - 0.3))
    items.append((t, x, 'person', rng.uniform(1.55, 1.9)))
    if rng.random() < 0.35:
      items.append((t * rng.uniform(0.96, 1.04), x + rng.uniform(-0.6, 0.6), 'person',
                    rng.uniform(1.55, 1.9)))
  for _ in range(rng.integers(1, 4)):
    items.append((rng.uniform(0.1, 1.0), rng.choice([-1, 1]) * (road_m + 0.35), 'pole',
                  rng.uniform(5.0, 8.0)))
  for _ in range(rng.integers(0, 4)):
    items.append((rng.uniform(0.1, 1.0), rng.choice([-1, 1]) * (road_m + walk_m - 0.4), 'tree',
                  rng.uniform(1.5, 3.0)))
  items.sort(key=lambda it: it[0])

  # Car shadows first (on whatever is below them), then everything far to near.
  for t, x, kind, size in items:
    if kind in ('car', 'truck'):
      s = t * (1 - vh) * h / cam
      cv.shade_box(-1, (vh + t * (1 - vh)) * h - 0.25 * s, (vh + t * (1 - vh)) * h + 0.12 * s,
                   uv * w + (x - 0.6 * size) * s, uv * w + (x + 0.6 * size) * s, 0.55, 0.8,
                   mult=True)
  things = []
  for t, x, kind, size in items:
    s = t * (1 - vh) * h / cam                       # pixels per metre at this depth
    yb, xc = (vh + t * (1 - vh)) * h, uv * w + x * s
    if kind in ('car', 'truck'):
      cls = CAR if kind == 'car' else TRUCK
      names = list(PALETTES[cls])
      name = names[rng.choice(len(names), p=[.22, .22, .22, .17, .17] if cls == CAR else None)]
      c0 = PALETTES[cls][name]
      oid = cv.new(cls, c0, tuple(0.72 * np.array(c0)), style=name)
      ww, hh = size * s, (rng.uniform(1.4, 1.6) if cls == CAR else 3.4) * s
      x0, x1 = xc - ww / 2, xc + ww / 2
      if cls == CAR:
        cv.rect(oid, 0, yb - 0.62 * hh, yb - 0.12 * hh, x0, x1)
        cv.rect(oid, 0, yb - hh, yb - 0.6 * hh, x0 + 0.12 * ww, x1 - 0.12 * ww)
        cv.rect(oid, 3, yb - 0.93 * hh, yb - 0.64 * hh, x0 + 0.18 * ww, x1 - 0.18 * ww)
      else:
        cv.rect(oid, 0, yb - hh, yb - 0.14 * hh, x0, x1)
        for k in range(3):
          cv.rect(oid, 1, yb - (0.42 + 0.2 * k) * hh, yb - (0.39 + 0.2 * k) * hh, x0, x1)
      cv.rect(oid, 4, yb - 0.22 * hh, yb, x0 + 0.04 * ww, x0 + 0.2 * ww)
      cv.rect(oid, 4, yb - 0.22 * hh, yb, x1 - 0.2 * ww, x1 - 0.04 * ww)
      cv.rect(oid, 4, yb - 0.2 * hh, yb - 0.12 * hh, x0 + 0.2 * ww, x1 - 0.2 * ww)
      cv.shade_box(oid, yb - hh, yb, x0, x1, 1.12, 0.8, across=0.08)
      things.append(oid)
    elif kind == 'person':
      names = list(PALETTES[PERSON])
      name = _pick(rng, names)
      oid = cv.new(PERSON, PALETTES[PERSON][name], _PANTS[rng.integers(4)], _SKINS[rng.integers(4)],
                   style=name)
      hh = size * s
      ww, top = 0.27 * hh, yb - hh
      cv.ellipse(oid, 2, top + 0.075 * hh, xc, 0.075 * hh, 0.3 * ww)
      cv.rect(oid, 0, top + 0.15 * hh, top + 0.55 * hh, xc - 0.5 * ww, xc + 0.5 * ww)
      cv.rect(oid, 1, top + 0.53 * hh, yb, xc - 0.42 * ww, xc - 0.04 * ww)
      cv.rect(oid, 1, top + 0.53 * hh, yb, xc + 0.04 * ww, xc + 0.42 * ww)
      cv.shade_box(oid, top, yb, xc - ww / 2, xc + ww / 2, 1.06, 0.88, across=0.1)
      things.append(oid)
    elif kind == 'pole':
      oid = cv.new(POLE, tuple(np.array((116, 116, 120)) * rng.uniform(0.85, 1.15)))
      hh, pw = size * s, rng.uniform(0.15, 0.3) * s
      cv.rect(oid, 0, yb - hh, yb, xc - pw / 2, xc + pw / 2)
      cv.shade_box(oid, yb - hh, yb, xc - pw / 2, xc + pw / 2, 1.0, 1.0, across=0.5)
      if rng.random() < 0.6:
        sid = cv.new(SIGN, _SIGNS[rng.integers(3)])
        cy, cx, r = yb - hh + 0.5 * s, xc - np.sign(x) * 0.3 * s, 0.4 * s
        if rng.random() < 0.5:
          cv.ellipse(sid, 0, cy, cx, r, r)
        else:
          cv.rect(sid, 0, cy - r, cy + r, cx - r, cx + r)
    else:  # tree: trunk (part 1) and canopy
      oid = cv.new(VEGETATION, _GREENS[rng.integers(3)], (82, 62, 44))
      cv.rect(oid, 1, yb - 3.0 * s, yb, xc - 0.18 * s, xc + 0.18 * s)
      ry = size * rng.uniform(0.9, 1.3)
      cv.ellipse(oid, 0, yb - (3.0 + 0.7 * ry) * s, xc, ry * s, size * s)
  return _finish(cv, trng, vh, things, rng)


def _finish(cv, trng, vh, things, rng):
  """Maps and photo from the painted canvas: textures, lighting, instance ids, styles."""
  h, w = cv.h, cv.w
  cls = np.array(cv.cls, np.int64)
  label = cls[cv.obj].astype(np.uint8)
  vs = ((np.arange(h) + 0.5) / h).astype(np.float32)
  us = ((np.arange(w) + 0.5) / w).astype(np.float32)
  # Building windows: a grid per facade (part 1), each window with its own brightness.
  bpar = np.zeros((len(cls), 4), np.float32)
  for i, st in enumerate(cv.style):
    if cls[i] == BUILDING:
      bpar[i] = st
  yy, xx = np.nonzero(label == BUILDING)
  o = cv.obj[yy, xx]
  fy, fx = (vs[yy] - bpar[o, 1]) / bpar[o, 3], (us[xx] - bpar[o, 0]) / bpar[o, 2]
  iy, ix = np.floor(fy), np.floor(fx)
  win = (fy - iy > 0.3) & (fy - iy < 0.75) & (fx - ix > 0.2) & (fx - ix < 0.8) & (fy > 0.5)
  cv.part[yy[win], xx[win]] = 1
  hsh = np.modf(np.abs(np.sin(ix[win] * 12.9898 + iy[win] * 78.233 + o[win] * 3.17)) * 43758.5)[0]
  cv.shade[yy[win], xx[win]] *= (0.55 + 0.9 * hsh).astype(np.float32)

  table = np.array(cv.colors, np.float32).reshape(-1, 3)
  base = table[cv.obj * _NPART + cv.part]
  sky = cv.obj == 0
  top, hor = table[0], table[1]
  wgt = np.clip(vs / vh, 0, 1)[:, None] ** 0.8
  grad = top + (hor - top) * wgt[..., None]                       # (h, 1, 3)
  cloud = np.clip((_smooth_field(trng, 4, 8, h, w) - 0.5) * 3.0, 0, 1) * cv.style[0]['cloudy']
  sky_img = grad + (np.float32(242) - grad) * cloud[..., None]
  base = np.where(sky[..., None], sky_img, base)
  blotch = 1 + _BLOTCH_AMP[label] * (_smooth_field(trng, 20, 40, h, w) - 0.5) * 2
  light = rng.uniform(0.8, 1.12) * (1 + rng.uniform(-0.25, 0.25) * (us - 0.5))   # sun side
  tint = rng.uniform(-0.06, 0.06)
  gain = np.array([1 + tint, 1, 1 - tint], np.float32)
  img = base * (cv.shade * blotch * light[None, :].astype(np.float32))[..., None] * gain
  img += (_NOISE_AMP[label] * trng.standard_normal((h, w), dtype=np.float32))[..., None]
  img += 2.0 * trng.standard_normal((h, w, 3), dtype=np.float32)
  image = np.clip(img + 0.5, 0, 255).astype(np.uint8)

  counts = np.bincount(cv.obj.ravel(), minlength=len(cls))
  inst_of = cls.copy()
  styles, k = {}, {c: 0 for c in THING_CLASSES}
  for oid in things:
    if counts[oid]:
      c = int(cls[oid])
      iid = c * 1000 + k[c]
      k[c] += 1
      inst_of[oid] = iid
      name = cv.style[oid]
      styles[iid] = (CLASSES[c], name, tuple(PALETTES[c][name]))
  inst = inst_of[cv.obj].astype(np.uint16)
  return {'label': label, 'inst': inst, 'image': image, 'styles': styles}


def render_dataset(n: int, *, height: int, width: int, seed: int = 0) -> Iterator[Dict]:
  """Scenes 0..n-1 of one seed, each as :func:`render_scene` returns it."""
  for i in range(int(n)):
    yield render_scene(i, height=height, width=width, seed=seed)
