"""The editor server's request checks: JSON bodies and query parameters into checked values.

``hdgan_jax.editor_server`` answers HTTP; this module says what a well-formed
request is. Shapes and types are checked here (anything else is a
:class:`RequestError` with a 4xx status and a message naming the field);
whether a well-formed edit applies (the instance exists, the class is known)
is for ``hdgan_jax.edit`` to say. Masks and uploads are only ever inline data,
never paths.
"""

import base64
import binascii
import json
import math
import re

from hdgan_jax import editor_shapes

MAX_ID = 2 ** 31
MAX_STYLE_LEN = 4096
MAX_RADIUS = 512
MAX_SIZE = 8192
# The edit operations of ``hdgan_jax.edit`` (required keys, optional keys).
OPS = {'change_class': (('instance', 'to'), ('style',)), 'remove': (('instance',), ()),
       'add': (('mask', 'class', 'at'), ('style',)), 'style': (('instance', 'cluster'), ()),
       'paint': (('points', 'class', 'radius'), ('style',)), 'fill': (('at', 'class'), ()),
       'stamp': (('shape', 'at', 'size'), ('class', 'style'))}


class RequestError(Exception):
  """A request answered with ``code`` and a JSON message instead of being served."""

  def __init__(self, code: int, message: str, headers=None):
    super().__init__(message)
    self.code, self.message, self.headers = code, message, dict(headers or {})


def _int(name, v, lo=0, hi=MAX_ID):
  if isinstance(v, bool) or not isinstance(v, int) or not lo <= v < hi:
    raise RequestError(400, f'"{name}" must be an integer in [{lo}, {hi}), got {v!r:.40}')
  return v


def _number(name, v, lo, hi):
  if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
    raise RequestError(400, f'"{name}" must be a number in [{lo}, {hi}], got {v!r:.40}')
  return v


def _style(name, v):
  if isinstance(v, int) and not isinstance(v, bool):
    return _int(name, v)
  if (not isinstance(v, list) or not 0 < len(v) <= MAX_STYLE_LEN
      or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                 for x in v)):
    raise RequestError(400, f'"{name}" must be a cluster index or a list of at most '
                       f'{MAX_STYLE_LEN} finite numbers')
  return v


def _mask(name, v):
  ok = isinstance(v, list) and v and all(isinstance(r, list) and len(r) == len(v[0]) for r in v)
  if not ok or not v[0] or not all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 256
                                   for r in v for x in r):
    raise RequestError(400, f'"{name}" must be a non-empty rectangular list of rows of 0/1 '
                       '(file paths are not accepted over HTTP)')
  return v


def _at(name, v):
  if not isinstance(v, list) or len(v) != 2:
    raise RequestError(400, f'"{name}" must be [y, x], got {v!r:.40}')
  return [_int(name, c, -MAX_ID, MAX_ID) for c in v]


def _points(name, v):
  if not isinstance(v, list) or not 0 < len(v) <= editor_shapes.MAX_STROKE_POINTS:
    raise RequestError(400, f'"{name}" must be a list of 1..{editor_shapes.MAX_STROKE_POINTS} '
                       '[y, x] points')
  return [_at(name, p) for p in v]


def _shape(name, v):
  if v not in editor_shapes.SHAPES:
    raise RequestError(400, f'"{name}" must be one of {list(editor_shapes.SHAPES)}, '
                       f'got {v!r:.40}')
  return v


FIELDS = {'instance': _int, 'to': _int, 'class': _int, 'cluster': _style, 'style': _style,
          'mask': _mask, 'at': _at, 'points': _points, 'shape': _shape,
          'radius': lambda n, v: _number(n, v, 0.5, MAX_RADIUS),
          'size': lambda n, v: _int(n, v, 4, MAX_SIZE)}


def _keys(what, body, need, optional=()):
  if not isinstance(body, dict):
    raise RequestError(400, f'{what} takes a JSON object, got {type(body).__name__}')
  keys = set(body)
  if set(need) - keys or keys - set(need) - set(optional):
    raise RequestError(400, f'{what} needs keys {list(need)} (optional {list(optional)}), '
                       f'got {sorted(keys)}')


def check_op(op) -> dict:
  """A JSON edit of the right shape (known op, its keys, value types), else RequestError 400."""
  if not isinstance(op, dict):
    raise RequestError(400, f'an edit is a JSON object {{"op": ...}}, got {type(op).__name__}')
  name = op.get('op')
  if not isinstance(name, str) or name not in OPS:
    raise RequestError(400, f'"op" must be one of {sorted(OPS)}, got {name!r:.40}')
  need, optional = OPS[name]
  _keys(name, {k: v for k, v in op.items() if k != 'op'}, need, optional)
  return {'op': name, **{k: FIELDS[k](k, v) for k, v in op.items() if k != 'op'}}


def check_empty(path, body) -> dict:
  if not isinstance(body, dict) or body:
    raise RequestError(400, f'{path} takes no arguments (send {{}})')
  return {}


def check_save(body) -> dict:
  """{} or {"name": "scene1"} (a plain name; the session refuses anything leaving out_dir)."""
  _keys('/save', body, (), ('name',))
  if 'name' in body and not isinstance(body['name'], str):
    raise RequestError(400, '"name" must be a string such as "scene1"')
  return body


def check_new(body) -> dict:
  """{"classes": [top, bottom] or [one], "split"?: 0..1, "height"?: px, "width"?: px}."""
  _keys('/new', body, ('classes',), ('split', 'height', 'width'))
  classes = body['classes']
  if not isinstance(classes, list) or not 1 <= len(classes) <= 2:
    raise RequestError(400, '"classes" must be [class] or [top class, bottom class]')
  out = {'classes': [_int('classes', c) for c in classes],
         'split': _number('split', body.get('split', 0.5), 0, 1)}
  for k in ('height', 'width'):
    if k in body:
      out[k] = _int(k, body[k], 1, MAX_SIZE + 1)
  return out


def _b64(name, v, limit) -> bytes:
  if not isinstance(v, str) or not v:
    raise RequestError(400, f'"{name}" must be a PNG file as base64 text')
  v = v.split(',', 1)[1] if v.startswith('data:') else v
  try:
    data = base64.b64decode(v, validate=True)
  except (binascii.Error, ValueError):
    raise RequestError(400, f'"{name}" is not valid base64') from None
  if len(data) > limit:
    raise RequestError(413, f'"{name}" is {len(data)} bytes, over the limit of {limit}')
  return data


def check_load(body, limit) -> dict:
  """{"labels": base64 PNG, "instances": base64 PNG} -> the PNG bytes."""
  _keys('/load', body, ('labels', 'instances'))
  return {k: _b64(k, body[k], limit) for k in ('labels', 'instances')}


def _reject_nan(name):
  raise ValueError(f'{name} is not a number')


def parse_json(raw: bytes):
  """The body as JSON (empty: {}); RequestError 400 for non-UTF-8, non-JSON or NaN."""
  try:
    text = raw.decode('utf-8')
  except UnicodeDecodeError:
    raise RequestError(400, 'body is not UTF-8') from None
  if not text.strip():
    return {}
  try:
    return json.loads(text, parse_constant=_reject_nan)
  except (ValueError, RecursionError) as e:
    raise RequestError(400, f'body is not JSON: {e}'[:200]) from None


def int_param(query: dict, name: str, size: int) -> int:
  """One whole-number query parameter in 0..size-1, else RequestError 400."""
  values = query.get(name)
  if not values:
    raise RequestError(400, f'missing ?{name}=')
  if len(values) > 1:
    raise RequestError(400, f'?{name}= given {len(values)} times')
  if not re.fullmatch(r'[0-9]{1,10}', values[0]):
    raise RequestError(400, f'{name} must be a whole number, got {values[0][:20]!r}')
  v = int(values[0])
  if v >= size:
    raise RequestError(400, f'{name}={v} is outside 0..{size - 1}')
  return v
