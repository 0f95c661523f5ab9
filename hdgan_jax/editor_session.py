"""The interactive editor's state: one scene, its undo/redo history, its rendering.

``hdgan_jax.editor`` (command line, notebook ``launch``) and
``hdgan_jax.editor_server`` (HTTP) sit on top of this; every edit itself is a
pure function of ``hdgan_jax.edit``. Besides edits a session can start a
blank scene, load uploaded label/instance PNGs (preprocessed as at test time,
``pipeline.load_pair``), render style thumbnails for an object (one per
feature cluster of its class) and save its maps and photo inside ``out_dir``.
"""

import base64
import io
import json
import os
import re
import secrets
import tempfile
import threading
from typing import Dict, List, Optional

import numpy as np
from PIL import Image

from hdgan_jax import edit, fileutil, models, reporting
from hdgan_jax.data import cityscapes, pipeline
from hdgan_jax.features import instance_class

MAX_HISTORY = 100  # undo steps kept; each holds a label and an instance map
SAVE_SUFFIXES = ('_labelIds.png', '_instanceIds.png', '_synthesized.png', '_styles.json')
DEFAULT_SAVE_NAME = 'edited'
SAVE_NAMES = tuple(DEFAULT_SAVE_NAME + s for s in SAVE_SUFFIXES)
SAVE_NAME_RE = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.-]{0,63}')
MAX_UPLOAD_PIXELS = 4096 * 8192
THUMB_MARGIN = 64   # context (pixels) rendered around an object for its thumbnails
THUMB_WIDTH = 128   # thumbnails are scaled down to at most this width
NO_FEATURES = ('this model has no instance features (model.use_features is off), so objects '
               'have no styles to choose; "resample" and restyling need a feature model')


def class_names() -> Dict[int, str]:
  return dict(cityscapes.NAMES)


def png_bytes(arr: np.ndarray) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(arr).save(buf, format='PNG')
  return buf.getvalue()


class Session:
  """The editing state of one scene, its history and its rendering.

  Every mutation holds ``lock`` (re-entrant, so the server can also hold it
  around a mutation and the summary it answers with) and renders before it
  commits: an edit or a rendering that fails leaves state and image as they
  were. ``token`` is the secret the served page sends back with every POST.
  ``renderer`` is a ``render.Renderer`` (or anything with ``config``,
  ``clusters`` and ``render``).
  """

  def __init__(self, renderer, label, inst, *, out_dir: str, seed: int = 0):
    self.renderer = renderer
    self.label_nc = renderer.config.model.label_nc
    self.state = edit.EditState.create(label, inst)
    self.history: List[edit.EditState] = []
    self.future: List[edit.EditState] = []
    self.out_dir = out_dir
    self.seed = seed
    self.lock = threading.RLock()
    self.token = secrets.token_urlsafe(32)
    self.message = ''
    self.version = 0   # counts state changes (thumbnail cache key)
    self._thumbs = (None, None)
    self.image = self._render(self.state, seed)

  def _render(self, state: edit.EditState, seed: int) -> np.ndarray:
    return self.renderer.render(state.label, state.inst, choices=dict(state.styles), rng=seed)

  def _commit(self, new: edit.EditState, message: str) -> None:
    """Renders ``new`` and makes it current (undoable); raises, changing nothing, on failure."""
    image = self._render(new, self.seed)
    self.history = (self.history + [self.state])[-MAX_HISTORY:]
    self.future = []
    self.state, self.image, self.message = new, image, message
    self.version += 1

  def apply(self, op: Dict) -> None:
    """Applies one ``edit.apply_edits`` operation; a bad one leaves the state as it was."""
    with self.lock:
      try:
        new = edit.apply_edits(self.state, [op], label_nc=self.label_nc,
                               clusters=self.renderer.clusters)
        self._commit(new, f"applied {op.get('op')}")
      except (ValueError, TypeError) as e:  # EditError, or a style the model cannot use
        self.message = f'not applied: {e}'

  def _step(self, source: List, target: List, done: str, empty: str) -> None:
    with self.lock:
      if not source:
        self.message = empty
        return
      self.image = self._render(source[-1], self.seed)
      target.append(self.state)
      self.state = source.pop()
      self.message = done
      self.version += 1

  def undo(self) -> None:
    self._step(self.history, self.future, 'undone', 'nothing to undo')

  def redo(self) -> None:
    self._step(self.future, self.history, 'redone', 'nothing to redo')

  def resample(self) -> None:
    with self.lock:
      self.image = self._render(self.state, self.seed + 1)
      self.seed += 1
      self.version += 1
      self.message = f'styles resampled (seed {self.seed})'

  def new_scene(self, classes, split: float = 0.5, height: Optional[int] = None,
                width: Optional[int] = None) -> None:
    """A blank scene of stuff (``edit.blank_state``), undoable; sizes must suit the generator."""
    with self.lock:
      h0, w0 = self.state.label.shape
      height, width = height or h0, width or w0
      unit = models.required_multiple(self.renderer.config.model)
      if height % unit or width % unit or height * width > MAX_UPLOAD_PIXELS:
        raise edit.EditError(f'scene size {height}x{width}: height and width must be multiples '
                             f'of {unit} (the generator\'s) and at most {MAX_UPLOAD_PIXELS} pixels')
      new = edit.blank_state(height, width, classes, split, label_nc=self.label_nc)
      self._commit(new, f'new scene {height}x{width}')

  def load(self, label_png: bytes, inst_png: bytes) -> None:
    """Replaces the scene by uploaded PNGs (undoable); ValueError naming the problem."""
    for what, data in (('label map', label_png), ('instance map', inst_png)):
      try:
        with Image.open(io.BytesIO(data)) as im:
          fmt, (w, h) = im.format, im.size
      except (OSError, ValueError):
        raise edit.EditError(f'the uploaded {what} is not an image') from None
      if fmt != 'PNG':
        raise edit.EditError(f'the uploaded {what} is {fmt}; label and instance maps must be '
                             'PNG (lossless)')
      if w * h > MAX_UPLOAD_PIXELS:
        raise edit.EditError(f'the uploaded {what} is {w}x{h}, over {MAX_UPLOAD_PIXELS} pixels')
    with tempfile.TemporaryDirectory() as tmp:
      paths = [os.path.join(tmp, n) for n in ('upload_labelIds.png', 'upload_instanceIds.png')]
      for path, data in zip(paths, (label_png, inst_png)):
        with open(path, 'wb') as f:
          f.write(data)
      try:
        batch = pipeline.load_pair(*paths, self.renderer.config)
      except ValueError as e:  # DataError naming the temporary files: name the uploads instead
        raise edit.EditError(str(e).replace(paths[0], 'uploaded labels').replace(
            paths[1], 'uploaded instances')) from None
    label, inst = np.asarray(batch['label'][0]), np.asarray(batch['inst'][0])
    label, inst = (a[..., 0] if a.ndim == 3 else a for a in (label, inst))
    if label.min() < 0 or label.max() >= self.label_nc:
      raise edit.EditError(f'uploaded label ids {label.min()}..{label.max()} are outside '
                           f'0..{self.label_nc - 1} (the model\'s label_nc={self.label_nc})')
    new = edit.EditState.create(label, inst)
    with self.lock:
      self._commit(new, f'loaded a {label.shape[0]}x{label.shape[1]} scene')

  def pick(self, x: int, y: int) -> Dict:
    state = self.state  # one snapshot: a concurrent edit swaps the whole state
    h, w = state.inst.shape
    x, y = min(max(int(x), 0), w - 1), min(max(int(y), 0), h - 1)
    inst = int(state.inst[y, x])
    cls = int(state.label[y, x])
    return {'instance': inst, 'class': cls, 'name': class_names().get(cls, ''),
            'clusters': self.n_clusters(cls), 'style': edit.styles_to_json(
                {inst: state.styles[inst]}).get(str(inst)) if inst in state.styles else None}

  def n_clusters(self, cls: int) -> int:
    clusters = self.renderer.clusters
    if clusters is None or cls not in clusters:
      return 0
    return len(np.asarray(getattr(clusters[cls], 'centers', clusters[cls])))

  def thumbnails(self, inst_id: int) -> Dict:
    """The object rendered with each cluster of its class, cropped to its box (PNG data URLs).

    Rendered on a window of the scene around the object (``THUMB_MARGIN``
    pixels of context, a size the generator accepts), so a thumbnail costs a
    fraction of a full render on large scenes.
    """
    with self.lock:
      state, seed, version = self.state, self.seed, self.version
    key = (version, inst_id)
    if self._thumbs[0] == key:
      return self._thumbs[1]
    cls = int(instance_class(inst_id))
    out = {'instance': inst_id, 'class': cls, 'thumbnails': [], 'message': ''}
    mask = state.inst == inst_id
    if not mask.any():
      raise edit.EditError(f'instance {inst_id} is not in the instance map')
    k = self.n_clusters(cls)
    if self.renderer.clusters is None:
      out['message'] = NO_FEATURES
    elif not k:
      out['message'] = f'class {cls} ({class_names().get(cls, "")}) has no feature clusters'
    else:
      out['thumbnails'] = [f'data:image/png;base64,{base64.b64encode(png_bytes(t)).decode()}'
                           for t in self._render_styles(state, inst_id, mask, k, seed)]
      out['message'] = f'{k} styles of class {cls}'
    self._thumbs = (key, out)
    return out

  def _render_styles(self, state, inst_id, mask, k, seed) -> List[np.ndarray]:
    h, w = mask.shape
    unit = models.required_multiple(self.renderer.config.model)
    ys, xs = np.nonzero(mask)
    box = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1

    def window(lo, hi, size):
      a = max(0, (lo - THUMB_MARGIN) // unit * unit)
      b = min(size, -(-(hi + THUMB_MARGIN) // unit) * unit)
      return a, b

    (y0, y1), (x0, x1) = window(box[0], box[1], h), window(box[2], box[3], w)
    lab, ins = state.label[y0:y1, x0:x1], state.inst[y0:y1, x0:x1]
    present = set(np.unique(ins).tolist())
    styles = {i: v for i, v in state.styles.items() if i in present}
    # One image at a time: a window as large as the scene reuses the compiled full-size
    # generator, and a batch of K would compile another shape.
    images = np.concatenate([reporting.to_uint8(self.renderer.forward(self.renderer.encode(
        lab[None], ins[None], choices={**styles, inst_id: c}, rng=seed))) for c in range(k)])
    pad = 4
    crops = images[:, max(box[0] - pad, y0) - y0:min(box[1] + pad, y1) - y0,
                   max(box[2] - pad, x0) - x0:min(box[3] + pad, x1) - x0]
    out = []
    for c in crops:
      im = Image.fromarray(c)
      if im.width > THUMB_WIDTH:
        im = im.resize((THUMB_WIDTH, max(1, round(im.height * THUMB_WIDTH / im.width))))
      out.append(np.asarray(im))
    return out

  def save_paths(self, name: str = DEFAULT_SAVE_NAME) -> Dict[str, str]:
    """``{suffix: out_dir/name+suffix}``; refuses any name that could leave ``out_dir``."""
    if not isinstance(name, str) or not SAVE_NAME_RE.fullmatch(name) or '..' in name:
      raise edit.EditError(f'refusing to save as {str(name)[:80]!r}: give a plain file name '
                           '(letters, digits, _ . -), files always go to the output folder '
                           f'{self.out_dir}')
    root = os.path.realpath(self.out_dir)
    paths = {s: os.path.join(self.out_dir, name + s) for s in SAVE_SUFFIXES}
    for p in paths.values():
      if os.path.dirname(os.path.realpath(p)) != root:
        raise edit.EditError(f'refusing to write {p}: it resolves outside {self.out_dir}')
    return paths

  def save(self, name: str = DEFAULT_SAVE_NAME) -> List[str]:
    """Writes label ids (8-bit), instance ids (16-bit), the photo and the styles in ``out_dir``."""
    with self.lock:
      paths = self.save_paths(name)
      state, image = self.state, self.image
      os.makedirs(self.out_dir, exist_ok=True)
      with fileutil.atomic_writer(paths['_labelIds.png']) as tmp:
        Image.fromarray(state.label.astype(np.uint8)).save(tmp)
      with fileutil.atomic_writer(paths['_instanceIds.png']) as tmp:
        Image.fromarray(state.inst.astype(np.uint16)).save(tmp)
      reporting.save_png(image, paths['_synthesized.png'])
      fileutil.atomic_write_text(paths['_styles.json'],
                                 json.dumps(edit.styles_to_json(state.styles), indent=1))
      self.message = f'saved {name}_* to {self.out_dir}'
      return sorted(paths.values())

  def summary(self) -> Dict:
    with self.lock:
      state, message = self.state, self.message
      undo, redo = len(self.history), len(self.future)
    h, w = state.label.shape
    names = class_names()
    return {'width': w, 'height': h, 'message': message, 'undo': undo, 'redo': redo,
            'features': self.renderer.clusters is not None,
            'no_features': '' if self.renderer.clusters is not None else NO_FEATURES,
            'things': list(cityscapes.THING_IDS), 'version': self.version,
            'classes': [[c, names.get(c, '')] for c in range(self.label_nc)],
            'colors': reporting.colorize(np.arange(self.label_nc), self.label_nc).tolist()}
