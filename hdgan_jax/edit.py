r"""Object-level editing of label and instance maps (paper Sec. 3.4, Fig. 1).

Every operation is a pure function: it takes an :class:`EditState` (label map,
instance map, per-instance styles) and returns a new one, never changing its
inputs. Ids follow the Cityscapes encoding, kept true by every edit: a thing
instance of class c has id c*1000 + k (k in 0..999), stuff pixels have id ==
label. Styles map an instance id to a cluster index (see
``hdgan_jax.features``) or an explicit feature vector; they are dropped when
their instance disappears.

Command line (scripted edits; nothing is written unless every edit succeeds):

  python -m hdgan_jax.edit --labels=L.png --instances=I.png --ops=edits.json \
      --out_label=L2.png --out_inst=I2.png [--out_styles=styles.json]

edits.json is a list of operations applied in order:

  {"op": "change_class", "instance": 26001, "to": 27}
  {"op": "remove", "instance": 24000}
  {"op": "add", "mask": "car.png" | [[0, 1], [1, 1]], "class": 26, "at": [y, x]}
  {"op": "style", "instance": 26000, "cluster": 3}
  {"op": "paint", "points": [[y, x], ...], "class": 26, "radius": 5}
  {"op": "fill", "at": [y, x], "class": 23}
  {"op": "stamp", "shape": "car" | "person", "at": [y, x], "size": 40}

"add", "change_class" and "stamp" also take an optional "style", "stamp" an
optional "class" (default: car 26, person 24). Mask paths are relative to the
ops file; mask pixels != 0 are the object; for "add" "at" is the top-left
corner, for "stamp" the centre, and shapes are clipped at the image border.
A painted, filled or stamped *thing* class becomes one new instance; stuff
takes id = class (see :func:`paint`, :func:`fill`, :func:`stamp`).

This file owns the pure editing API and the operations format; the command
line and its file I/O live in ``hdgan_jax.edit_cli`` (which also runs as
``python -m hdgan_jax.edit_cli``). This module does not import ``edit_cli``;
run as a script it hands over to it with :func:`runpy.run_module`.
"""

import dataclasses
import os
import runpy
from typing import Dict, Iterable, Mapping, Optional, Sequence, Union

import numpy as np
from PIL import Image
from scipy import ndimage

from hdgan_jax import editor_shapes, fileutil
from hdgan_jax.data import cityscapes
from hdgan_jax.features import instance_class

Style = Union[int, tuple]


class EditError(ValueError):
  """An edit that cannot be applied (unknown class or id, mask outside, ...)."""


@dataclasses.dataclass(frozen=True)
class EditState:
  """label (H, W) int64, inst (H, W) int64, styles {inst_id: cluster | vector}."""
  label: np.ndarray
  inst: np.ndarray
  styles: Mapping[int, Style] = dataclasses.field(default_factory=dict)

  def __post_init__(self):  # int64 so that new ids never overflow a uint8/16 map
    object.__setattr__(self, 'label', np.asarray(self.label, np.int64))
    object.__setattr__(self, 'inst', np.asarray(self.inst, np.int64))

  @classmethod
  def create(cls, label, inst, styles=None) -> 'EditState':
    """A validated copy of the maps; raises EditError if they break the encoding."""
    state = cls(np.array(label, np.int64), np.array(inst, np.int64),
                {int(k): _style_value(v) for k, v in (styles or {}).items()})
    check_state(state)
    return state


def _style_value(v) -> Style:
  if isinstance(v, bool):
    raise EditError(f'style must be a cluster index or a vector, got {v!r}')
  if isinstance(v, (int, np.integer)):
    if v < 0:
      raise EditError(f'cluster index must be >= 0, got {v}')
    return int(v)
  try:
    vec = tuple(float(x) for x in v)
  except (TypeError, ValueError):
    raise EditError(f'style must be a cluster index or a list of numbers, got {v!r}') from None
  if not vec:
    raise EditError('style vector is empty')
  return vec


def check_state(state: EditState) -> None:
  """Raises EditError unless shapes agree and every id encodes its pixel's label."""
  if state.label.ndim != 2 or state.label.shape != state.inst.shape:
    raise EditError(f'label map {state.label.shape} and instance map {state.inst.shape} '
                    'must be 2-D and the same size')
  bad = instance_class(state.inst) != state.label
  if bad.any():
    y, x = np.argwhere(bad)[0]
    raise EditError(f'{int(bad.sum())} pixels break the Cityscapes id encoding, e.g. '
                    f'({y}, {x}): instance {state.inst[y, x]} but label {state.label[y, x]}')
  stale = sorted(set(state.styles) - set(np.unique(state.inst).tolist()))
  if stale:
    raise EditError(f'styles given for instance ids {stale[:10]} not in the instance map')


def _finish(state: EditState, label, inst, styles) -> EditState:
  present = set(np.unique(inst).tolist())
  return dataclasses.replace(state, label=label, inst=inst,
                             styles={k: v for k, v in styles.items() if k in present})


def _check_class(cls, label_nc) -> int:
  if isinstance(cls, bool) or not isinstance(cls, (int, np.integer)):
    raise EditError(f'class must be an integer id, got {cls!r}')
  if not 0 <= cls < label_nc:
    raise EditError(f'class {cls} does not exist: ids run 0..{label_nc - 1} (label_nc={label_nc})')
  return int(cls)


def _instance_mask(state: EditState, inst_id) -> np.ndarray:
  ok = isinstance(inst_id, (int, np.integer)) and not isinstance(inst_id, bool)
  mask = state.inst == inst_id if ok else np.zeros(state.inst.shape, bool)
  if not mask.any():
    ids = np.unique(state.inst)
    raise EditError(f'instance {inst_id!r} is not in the instance map (ids present: '
                    f'{ids[:20].tolist()}{" ..." if len(ids) > 20 else ""})')
  return mask


def fresh_instance_id(inst, cls: int) -> int:
  """Next free id c*1000 + k of class c: one past the largest k used, else a gap."""
  ids = np.unique(np.asarray(inst))
  used = ids[(ids >= cls * 1000) & (ids < (cls + 1) * 1000)] - cls * 1000
  if not len(used):
    return cls * 1000
  if used[-1] < 999:
    return cls * 1000 + int(used[-1]) + 1
  free = np.setdiff1d(np.arange(1000), used)
  if not len(free):
    raise EditError(f'class {cls} already has 1000 instances; no id is free')
  return cls * 1000 + int(free[0])


def _target_id(inst, cls, thing_classes) -> int:
  return fresh_instance_id(inst, cls) if cls in set(thing_classes) else cls


def change_class(state: EditState, inst_id: int, new_class: int, *, label_nc: int,
                 thing_classes: Iterable[int], style: Optional[Style] = None) -> EditState:
  """Relabels one instance. A thing target gets a fresh id; a stuff target gets
  id ``new_class`` (merging with that class's stuff). The old style is dropped.
  Its own class again: nothing changes (but ``style``)."""
  new_class = _check_class(new_class, label_nc)
  mask = _instance_mask(state, inst_id)
  if new_class == int(instance_class(inst_id)):
    return state if style is None else set_style(state, inst_id, style)
  new_id = _target_id(state.inst, new_class, thing_classes)
  label, inst = state.label.copy(), state.inst.copy()
  label[mask], inst[mask] = new_class, new_id
  styles = {k: v for k, v in state.styles.items() if k != inst_id}
  if style is not None:
    styles[new_id] = _style_value(style)
  return _finish(state, label, inst, styles)


def remove_instance(state: EditState, inst_id: int, *,
                    thing_classes: Iterable[int]) -> EditState:
  """Deletes an instance: each of its pixels takes the label of the nearest
  (Euclidean) remaining stuff pixel, and the matching stuff id."""
  mask = _instance_mask(state, inst_id)
  source = ~mask & ~np.isin(state.label, list(thing_classes))
  if not source.any():
    raise EditError(f'cannot remove instance {inst_id}: no stuff pixel is left to fill it from')
  _, (iy, ix) = ndimage.distance_transform_edt(~source, return_indices=True)
  label, inst = state.label.copy(), state.inst.copy()
  label[mask] = state.label[iy[mask], ix[mask]]
  inst[mask] = label[mask]
  return _finish(state, label, inst, state.styles)


def add_object(state: EditState, mask, new_class: int, position=(0, 0), *, label_nc: int,
               thing_classes: Iterable[int], style: Optional[Style] = None) -> EditState:
  """Pastes a binary mask (nonzero = object) of class ``new_class`` with its
  top-left corner at ``position`` (y, x), clipped at the borders, over whatever
  is there. A thing class gets a fresh instance id, a stuff class id = class."""
  new_class = _check_class(new_class, label_nc)
  m = np.asarray(mask)
  if m.ndim != 2 or not m.size:
    raise EditError(f'mask must be a non-empty 2-D array, got shape {m.shape}')
  m = m != 0
  if not m.any():
    raise EditError('mask has no object pixels (all zero)')
  if (not isinstance(position, (list, tuple)) or len(position) != 2
      or not all(isinstance(v, (int, np.integer)) for v in position)):
    raise EditError(f'position must be (y, x) integers, got {position!r}')
  y, x = (int(v) for v in position)
  h, w = state.label.shape
  y0, x0, y1, x1 = max(y, 0), max(x, 0), min(y + m.shape[0], h), min(x + m.shape[1], w)
  full = np.zeros((h, w), bool)
  if y0 < y1 and x0 < x1:
    full[y0:y1, x0:x1] = m[y0 - y:y1 - y, x0 - x:x1 - x]
  if not full.any():
    raise EditError(f'mask of size {m.shape} at (y, x)=({y}, {x}) lies entirely outside '
                    f'the {h}x{w} image')
  new_id = _target_id(state.inst, new_class, thing_classes)
  label, inst = state.label.copy(), state.inst.copy()
  label[full], inst[full] = new_class, new_id
  styles = dict(state.styles)
  if style is not None:
    styles[new_id] = _style_value(style)
  return _finish(state, label, inst, styles)


def set_style(state: EditState, inst_id: int, cluster: Style, *,
              clusters: Optional[Mapping] = None) -> EditState:
  """Chooses an instance's style: a cluster index, or a feature vector. With
  ``clusters`` ({class: centres}) the index is checked against its class."""
  _instance_mask(state, inst_id)
  value = _style_value(cluster)
  if clusters is not None and isinstance(value, int):
    cls = int(instance_class(inst_id))
    if cls not in clusters:
      raise EditError(f'instance {inst_id}: class {cls} has no feature clusters')
    k = len(getattr(clusters[cls], 'centers', clusters[cls]))
    if value >= k:
      raise EditError(f'instance {inst_id}: cluster {value} out of range; class {cls} has '
                      f'{k} clusters (0..{k - 1})')
  return dataclasses.replace(state, styles={**state.styles, int(inst_id): value})


def _point(at, what='at') -> tuple:
  if (not isinstance(at, (list, tuple)) or len(at) != 2
      or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in at)):
    raise EditError(f'{what} must be (y, x) integers, got {at!r}')
  return int(at[0]), int(at[1])


def paint(state: EditState, points, new_class: int, radius: float, *, label_nc: int,
          thing_classes: Iterable[int], style: Optional[Style] = None) -> EditState:
  """A brush stroke: every pixel within ``radius`` of the polyline ``points``
  ([y, x] each) takes ``new_class``; a thing class makes the stroke one new
  instance, a stuff class sets id = class (Cityscapes encoding)."""
  try:
    mask = editor_shapes.stroke_mask(state.label.shape, [_point(p, 'point') for p in points],
                                     radius)
  except (TypeError, ValueError) as e:
    raise EditError(f'stroke: {e}') from None
  if not mask.any():
    raise EditError('the stroke lies entirely outside the image')
  return add_object(state, mask, new_class, (0, 0), label_nc=label_nc,
                    thing_classes=thing_classes, style=style)


def fill(state: EditState, at, new_class: int, *, label_nc: int,
         thing_classes: Iterable[int]) -> EditState:
  """Flood fill: the 4-connected region of the label at ``at`` (y, x) takes
  ``new_class`` (a thing class: one new instance; stuff: id = class)."""
  new_class = _check_class(new_class, label_nc)
  y, x = _point(at)
  h, w = state.label.shape
  if not (0 <= y < h and 0 <= x < w):
    raise EditError(f'fill point (y, x)=({y}, {x}) is outside the {h}x{w} image')
  regions, _ = ndimage.label(state.label == state.label[y, x])
  region = regions == regions[y, x]
  if state.label[y, x] == new_class and new_class not in set(thing_classes):
    raise EditError(f'the region at ({y}, {x}) is already class {new_class}')
  return add_object(state, region, new_class, (0, 0), label_nc=label_nc,
                    thing_classes=thing_classes)


STAMP_CLASSES = {'car': cityscapes.ID_OF['car'], 'person': cityscapes.ID_OF['person']}


def stamp(state: EditState, shape: str, at, size: int, *, label_nc: int,
          thing_classes: Iterable[int], new_class: Optional[int] = None,
          style: Optional[Style] = None) -> EditState:
  """Pastes a procedural ``shape`` ('car' or 'person', ``editor_shapes.silhouette``)
  ``size`` pixels tall centred on ``at`` (y, x) as a new object of ``new_class``
  (default: Cityscapes car 26 / person 24)."""
  y, x = _point(at)
  try:
    mask = editor_shapes.silhouette(shape, size)
  except (TypeError, ValueError) as e:
    raise EditError(f'stamp: {e}') from None
  cls = STAMP_CLASSES[shape] if new_class is None else new_class
  return add_object(state, mask, cls, (y - mask.shape[0] // 2, x - mask.shape[1] // 2),
                    label_nc=label_nc, thing_classes=thing_classes, style=style)


def blank_state(height: int, width: int, classes: Sequence[int] = (23, 7), split: float = 0.5,
                *, label_nc: int = cityscapes.LABEL_NC,
                thing_classes: Iterable[int] = cityscapes.THING_IDS) -> EditState:
  """A new scene of stuff: one class everywhere, or two split at ``split`` of the
  height (default sky above road)."""
  if not (isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0):
    raise EditError(f'scene size must be positive integers, got {height}x{width}')
  if not 1 <= len(classes) <= 2:
    raise EditError(f'a blank scene takes one class or two (top, bottom), got {list(classes)}')
  classes = [_check_class(c, label_nc) for c in classes]
  things = sorted(set(classes) & set(thing_classes))
  if things:
    raise EditError(f'class {things[0]} has instances; fill a blank scene with stuff '
                    '(e.g. 23 sky, 7 road) and paint or stamp objects on it')
  if not 0 <= split <= 1:
    raise EditError(f'split must be a fraction of the height in [0, 1], got {split}')
  label = np.full((height, width), classes[0], np.int64)
  label[int(round(split * height)):] = classes[-1]
  return EditState.create(label, label.copy())


_OPS = {'change_class': ({'instance', 'to'}, {'style'}), 'remove': ({'instance'}, set()),
        'add': ({'mask', 'class', 'at'}, {'style'}), 'style': ({'instance', 'cluster'}, set()),
        'paint': ({'points', 'class', 'radius'}, {'style'}), 'fill': ({'at', 'class'}, set()),
        'stamp': ({'shape', 'at', 'size'}, {'class', 'style'})}


def _load_mask(spec, base_dir):
  if isinstance(spec, str):
    path = os.path.join(base_dir or '.', spec)
    try:
      with Image.open(path) as im:
        return np.array(im.convert('L') if im.mode in ('RGB', 'RGBA', 'LA', 'P') else im)
    except OSError as e:
      raise EditError(f'cannot read mask {path}: {e}') from None
  try:
    return np.array(spec, dtype=np.int64)
  except (TypeError, ValueError):
    raise EditError('mask must be a PNG path or a nested list of 0/1 rows') from None


def apply_edits(state: EditState, ops: Sequence[Mapping], *,
                label_nc: int = cityscapes.LABEL_NC,
                thing_classes: Iterable[int] = cityscapes.THING_IDS,
                clusters: Optional[Mapping] = None,
                base_dir: Optional[str] = None) -> EditState:
  """Applies a JSON-style list of operations in order (see the module docstring).

  ``label_nc`` and ``thing_classes`` default to Cityscapes' (``data.cityscapes``:
  35 classes, things person .. bicycle). Raises EditError naming the failing
  operation; ``state`` is left as it was.
  """
  if not isinstance(ops, (list, tuple)):
    raise EditError(f'operations must be a list, got {type(ops).__name__}')
  thing_classes = tuple(thing_classes)
  for n, op in enumerate(ops):
    name = op.get('op') if isinstance(op, Mapping) else None
    where = f'operation {n} ({name!r})'
    if name not in _OPS:
      raise EditError(f'{where}: "op" must be one of {sorted(_OPS)}')
    need, optional = _OPS[name]
    keys = set(op) - {'op'}
    if need - keys or keys - need - optional:
      raise EditError(f'{where}: needs keys {sorted(need)} (optional {sorted(optional)}), '
                      f'got {sorted(keys)}')
    try:
      if name == 'change_class':
        state = change_class(state, op['instance'], op['to'], label_nc=label_nc,
                             thing_classes=thing_classes, style=op.get('style'))
      elif name == 'remove':
        state = remove_instance(state, op['instance'], thing_classes=thing_classes)
      elif name == 'add':
        state = add_object(state, _load_mask(op['mask'], base_dir), op['class'], op['at'],
                           label_nc=label_nc, thing_classes=thing_classes,
                           style=op.get('style'))
      elif name == 'style':
        state = set_style(state, op['instance'], op['cluster'], clusters=clusters)
      elif name == 'paint':
        state = paint(state, op['points'], op['class'], op['radius'], label_nc=label_nc,
                      thing_classes=thing_classes, style=op.get('style'))
      elif name == 'fill':
        state = fill(state, op['at'], op['class'], label_nc=label_nc, thing_classes=thing_classes)
      else:
        state = stamp(state, op['shape'], op['at'], op['size'], label_nc=label_nc,
                      thing_classes=thing_classes, new_class=op.get('class'),
                      style=op.get('style'))
    except EditError as e:
      raise EditError(f'{where}: {e}') from None
  return state


def styles_to_json(styles: Mapping[int, Style]) -> Dict[str, object]:
  """{"26000": 3, "24001": [0.1, ...]}: JSON keys are strings."""
  return {str(k): (v if isinstance(v, int) else list(v)) for k, v in sorted(styles.items())}


def load_json(path: str, what: str = 'edits'):
  """A JSON file's contents; a missing, binary or malformed file raises EditError naming
  the file (and the line and column of a syntax error)."""
  return fileutil.read_json(path, what=what, error=EditError)


def load_ops(path: str) -> list:
  """Reads an operations JSON file (a list of operations, see the module docstring)."""
  ops = load_json(path, 'edits')
  if not isinstance(ops, list):
    raise EditError(f'{path}: the edits file must hold a JSON list of operations, e.g. '
                    '[{"op": "remove", "instance": 26001}], got a ' + type(ops).__name__)
  return ops


def load_styles(path: str) -> Dict[int, Style]:
  """Reads a styles JSON file; usable as ``choices`` of feature_map_from_clusters."""
  data = load_json(path, 'styles')
  if not isinstance(data, dict):
    raise EditError(f'{path}: styles must be a JSON object {{"instance id": cluster}}')
  out = {}
  for k, v in data.items():
    try:
      key = int(k)
    except ValueError:
      raise EditError(f'{path}: key {k!r} is not an instance id (write {{"26001": 3}})') from None
    try:
      out[key] = _style_value(v)
    except EditError as e:
      raise EditError(f'{path}: instance {k}: {e}') from None
  return out


if __name__ == '__main__':
  # ``python -m hdgan_jax.edit`` is the documented command; its flags and file I/O live in
  # hdgan_jax.edit_cli, run here as a script so that this API module never imports it.
  runpy.run_module('hdgan_jax.edit_cli', run_name='__main__')
