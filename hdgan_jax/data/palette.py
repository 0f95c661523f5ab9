"""Colour-coded label maps: palettes (colour -> label id) and the conversion.

Some datasets ship their semantic maps as RGB pictures where each class has a
colour (Cityscapes' ``*_gtFine_color.png``, many hand-painted maps). This file
owns turning those into the label ids the model one-hot encodes, so every
source (folder, Cityscapes layout, packing, generation) converts the same way.

``data.palette`` selects the palette:

* ``''``: label maps already hold ids; no palette.
* ``'cityscapes'``: Cityscapes' own colour table (``hdgan_jax.data.cityscapes``).
* a ``.json`` file: ``{"#rrggbb": id, ...}``, ``{"r,g,b": id, ...}`` or a list
  ``[{"color": [r, g, b], "id": n}, ...]``.
* a ``.csv`` file: rows ``r,g,b,id`` or ``#rrggbb,id`` (a header row is skipped).

Colours that are not in the palette are an error listing each unknown colour
with its pixel count and the file, never a silent class 0. A malformed palette
file is a DataError naming the file and where (JSON line and column, CSV line).
"""

import csv
import os

import numpy as np

from hdgan_jax import fileutil
from hdgan_jax.data import cityscapes
from hdgan_jax.data.errors import DataError


def _pack(rgb):
  """(..., 3) uint8 colours -> (...) uint32 codes 0xRRGGBB."""
  rgb = np.asarray(rgb)
  return ((rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8)
          | rgb[..., 2].astype(np.uint32))


class Palette:
  """A colour -> id table; :meth:`to_ids` converts an (H, W, 3) uint8 map."""

  def __init__(self, colors_to_ids, name='palette'):
    """colors_to_ids: iterable of ((r, g, b), id); the first id of a colour wins."""
    table = {}
    for color, idx in colors_to_ids:
      code = int(_pack(np.asarray(color, np.uint8)))
      table.setdefault(code, int(idx))
    if not table:
      raise ValueError(f'{name}: the palette is empty')
    self.name = name
    self._keys = np.array(sorted(table), np.uint32)
    self._ids = np.array([table[k] for k in sorted(table)], np.int64)
    if self._ids.min() < 0:
      raise ValueError(f'{name}: label ids must be >= 0, got {int(self._ids.min())}')
    self.max_id = int(self._ids.max())
    self._dtype = np.uint8 if self.max_id < 256 else np.uint16 if self.max_id < 65536 else np.int32

  def __len__(self):
    return len(self._keys)

  def __reduce__(self):
    pairs = [(((int(k) >> 16) & 255, (int(k) >> 8) & 255, int(k) & 255), int(i))
             for k, i in zip(self._keys, self._ids)]
    return (Palette, (pairs, self.name))

  def to_ids(self, rgb, where='label map'):
    """(H, W, 3) uint8 colours -> (H, W) ids; unknown colours raise DataError."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
      raise DataError(f'{where}: a colour-coded label map must be RGB, got shape {rgb.shape}; '
                      'set --config.data.palette= (empty) if the maps hold ids')
    codes = _pack(rgb)
    pos = np.searchsorted(self._keys, codes)
    np.minimum(pos, len(self._keys) - 1, out=pos)
    ok = self._keys[pos] == codes
    if not ok.all():
      bad, counts = np.unique(codes[~ok], return_counts=True)
      order = np.argsort(-counts)
      listed = ', '.join(
          f'#{int(bad[i]):06x} ({(int(bad[i]) >> 16) & 255},{(int(bad[i]) >> 8) & 255},'
          f'{int(bad[i]) & 255}): {int(counts[i])} px' for i in order[:12])
      more = f' and {len(bad) - 12} more' if len(bad) > 12 else ''
      raise DataError(
          f'{where}: {len(bad)} colour(s) not in {self.name}: {listed}{more}. Add them to the '
          'palette file (--config.data.palette), or repaint those pixels with a known colour '
          '(anti-aliased or JPEG-compressed maps cannot be read as labels).', kind='ids')
    return self._ids[pos].astype(self._dtype)

  def to_colors(self, ids):
    """(H, W) ids -> (H, W, 3) uint8 colours (first colour of each id; unknown ids black)."""
    lut = np.zeros((max(self.max_id, int(np.max(ids, initial=0))) + 1, 3), np.uint8)
    for k, i in zip(self._keys[::-1], self._ids[::-1]):
      lut[i] = ((int(k) >> 16) & 255, (int(k) >> 8) & 255, int(k) & 255)
    return lut[np.asarray(ids)]


def cityscapes_palette() -> Palette:
  """Cityscapes' colours (``data.cityscapes``) -> label ids; a shared colour reads as
  the lowest id that has it (black: 0 'unlabeled', (0, 0, 142): 26 'car')."""
  return Palette(((l.color, l.id) for l in cityscapes.LABELS if l.id >= 0),
                 name="Cityscapes' palette")


def _parse_color(text, where):
  s = str(text).strip()
  try:
    if s.startswith('#') and len(s) == 7:
      return tuple(int(s[i:i + 2], 16) for i in (1, 3, 5))
    parts = [int(p) for p in s.replace('(', '').replace(')', '').replace(' ', ',').split(',') if p]
    if len(parts) == 3 and all(0 <= p <= 255 for p in parts):
      return tuple(parts)
  except ValueError:
    pass
  raise DataError(f'{where}: cannot read colour {text!r}; write "#rrggbb" or "r,g,b" '
                  'with values 0-255')


def _id(value, path, where):
  """A label id from a palette entry; anything but a whole number names the entry."""
  if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
    value = repr(value)   # falls through to the error below
  try:
    return int(value)
  except (TypeError, ValueError):
    raise DataError(f'{path}: {where}: the id must be a whole number, got {value!r}') from None


def read_json(path, what='palette'):
  """A JSON file's contents; bad JSON names the file, line and column."""
  return fileutil.read_json(path, what=what, error=DataError)


def _read_json(path):
  obj = read_json(path)
  if isinstance(obj, dict):
    return [(_parse_color(k, path), _id(v, path, f'colour {k!r}')) for k, v in obj.items()]
  if isinstance(obj, list):
    out = []
    for n, row in enumerate(obj):
      if not isinstance(row, dict) or 'id' not in row or not ({'color', 'colour'} & set(row)):
        raise DataError(f'{path}: entry {n} must be {{"color": [r, g, b], "id": n}}, got {row!r}')
      color = row.get('color', row.get('colour'))
      color = _parse_color(','.join(map(str, color)) if isinstance(color, list) else color, path)
      out.append((color, _id(row['id'], path, f'entry {n}')))
    return out
  raise DataError(f'{path}: expected a JSON object {{"#rrggbb": id}} or a list of '
                  '{"color": [r, g, b], "id": n}')


def _read_csv(path):
  out = []
  with open(path, newline='', encoding='utf-8') as f:
    try:
      rows = list(csv.reader(f))
    except (csv.Error, UnicodeDecodeError) as e:
      raise DataError(f'{path}: not a readable CSV text file ({e}); write rows "r,g,b,id" '
                      'or "#rrggbb,id"') from None
    for n, row in enumerate(rows):
      row = [c.strip() for c in row if c.strip()]
      if not row or row[0].startswith('//'):
        continue
      try:
        if len(row) == 4:
          out.append((_parse_color(','.join(row[:3]), path), int(row[3])))
        elif len(row) == 2:
          out.append((_parse_color(row[0], path), int(row[1])))
        else:
          raise ValueError
      except ValueError:
        if n == 0:  # a header row
          continue
        raise DataError(f'{path}, line {n + 1}: expected "r,g,b,id" or "#rrggbb,id", '
                        f'got {",".join(row)!r}') from None
  return out


def load_palette(spec: str):
  """``data.palette`` -> a :class:`Palette`, or None when it is ''."""
  if not spec:
    return None
  if spec == 'cityscapes':
    return cityscapes_palette()
  if not os.path.isfile(spec):
    raise ValueError(f"data.palette={spec!r} is neither 'cityscapes' nor a file; give a JSON "
                     "or CSV colour table, 'cityscapes', or '' for maps that hold ids")
  ext = os.path.splitext(spec)[1].lower()
  if ext == '.json':
    pairs = _read_json(spec)
  elif ext == '.csv':
    pairs = _read_csv(spec)
  else:
    raise ValueError(f'data.palette={spec!r}: use a .json or .csv file')
  try:
    return Palette(pairs, name=f'palette {spec}')
  except ValueError as e:
    raise ValueError(f'data.palette={spec!r}: {e}') from None
