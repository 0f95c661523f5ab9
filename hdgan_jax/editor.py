r"""Interactive editor: click an object, change its class, remove it or restyle it, see the result.

The paper's semantic-manipulation interface (Sec. 3.4, Fig. 1), which the
original never released, as a small local web app over a trained run: a page
shows the colour-coded label map and the generated image; clicking selects
the instance under the cursor; every edit goes through the pure functions of
``hdgan_jax.edit`` and the image is regenerated. Undo, resampling of styles
and saving the edited maps (8-bit labels, 16-bit instances, styles JSON) are
built in. Standard library HTTP only; it listens on localhost, and the server
(``hdgan_jax.editor_server``) checks Host, Origin and a per-session token so
other web pages cannot drive it.

  .venv/bin/python -m hdgan_jax.editor --workdir=runs/feat \
      --labels=L_labelIds.png --instances=L_instanceIds.png --out=edited/ [--port=8765]
  .venv/bin/python -m hdgan_jax.editor --config=experiments/cityscapes.py \
      --checkpoint=checkpoints/label2city_1024p_feat/ --labels=L.png --instances=I.png --out=edited/
"""

import json
import os
import secrets
import threading
from typing import Dict, List

import numpy as np
from absl import app, flags
from ml_collections import config_flags
from PIL import Image

from hdgan_jax import console, edit, fileutil, render, reporting, run as run_lib
from hdgan_jax.data import pipeline
from hdgan_jax.data import cityscapes
from hdgan_jax.editor_server import is_loopback, serve  # pylint: disable=unused-import

MAX_HISTORY = 100  # undo steps kept; each holds a label and an instance map
SAVE_NAMES = ('edited_labelIds.png', 'edited_instanceIds.png', 'edited_synthesized.png',
              'edited_styles.json')


class Session:
  """The editing state of one label map, its history and its rendering.

  Every mutation holds ``lock`` (re-entrant, so the server can also hold it
  around a mutation and the summary it answers with) and renders before it
  commits: an edit or a rendering that fails leaves state and image as they were.
  ``token`` is the secret the served page sends back with every POST.
  """

  def __init__(self, renderer, label, inst, *, out_dir: str, seed: int = 0):
    self.renderer = renderer
    self.label_nc = renderer.config.model.label_nc
    self.state = edit.EditState.create(label, inst)
    self.history: List[edit.EditState] = []
    self.out_dir = out_dir
    self.seed = seed
    self.lock = threading.RLock()
    self.token = secrets.token_urlsafe(32)
    self.message = ''
    self.image = self._render(self.state, seed)

  def _render(self, state: edit.EditState, seed: int) -> np.ndarray:
    return self.renderer.render(state.label, state.inst, choices=dict(state.styles), rng=seed)

  def apply(self, op: Dict) -> None:
    """Applies one ``edit.apply_edits`` operation; a bad one leaves the state as it was."""
    with self.lock:
      try:
        new = edit.apply_edits(self.state, [op], label_nc=self.label_nc,
                               clusters=self.renderer.clusters)
        image = self._render(new, self.seed)
      except (ValueError, TypeError) as e:  # EditError, or a style the model cannot use
        self.message = f'not applied: {e}'
        return
      self.history = (self.history + [self.state])[-MAX_HISTORY:]
      self.state, self.image, self.message = new, image, f"applied {op.get('op')}"

  def undo(self) -> None:
    with self.lock:
      if not self.history:
        self.message = 'nothing to undo'
        return
      self.image = self._render(self.history[-1], self.seed)
      self.state = self.history.pop()
      self.message = 'undone'

  def resample(self) -> None:
    with self.lock:
      self.image = self._render(self.state, self.seed + 1)
      self.seed += 1
      self.message = f'styles resampled (seed {self.seed})'

  def pick(self, x: int, y: int) -> Dict:
    state = self.state  # one snapshot: a concurrent edit swaps the whole state
    h, w = state.inst.shape
    x, y = min(max(int(x), 0), w - 1), min(max(int(y), 0), h - 1)
    inst = int(state.inst[y, x])
    cls = int(state.label[y, x])
    n = 0
    if self.renderer.clusters is not None and cls in self.renderer.clusters:
      n = len(np.asarray(getattr(self.renderer.clusters[cls], 'centers',
                                 self.renderer.clusters[cls])))
    return {'instance': inst, 'class': cls, 'name': class_names().get(cls, ''), 'clusters': n}

  def _out_path(self, name: str) -> str:
    """``out_dir/name``; refuses any name that could leave ``out_dir``."""
    if name not in SAVE_NAMES or os.path.basename(name) != name:
      raise ValueError(f'refusing to write {name!r} outside {self.out_dir}')
    return os.path.join(self.out_dir, name)

  def save(self) -> List[str]:
    """Writes the edited maps, image and styles under ``out_dir`` (fixed names only)."""
    with self.lock:
      state, image = self.state, self.image
      os.makedirs(self.out_dir, exist_ok=True)
      paths = {name: self._out_path(name) for name in SAVE_NAMES}
      with fileutil.atomic_writer(paths['edited_labelIds.png']) as tmp:
        Image.fromarray(state.label.astype(np.uint8)).save(tmp)
      with fileutil.atomic_writer(paths['edited_instanceIds.png']) as tmp:
        Image.fromarray(state.inst.astype(np.uint16)).save(tmp)
      reporting.save_png(image, paths['edited_synthesized.png'])
      fileutil.atomic_write_text(paths['edited_styles.json'],
                                 json.dumps(edit.styles_to_json(state.styles), indent=1))
      self.message = f'saved to {self.out_dir}'
      return sorted(paths.values())

  def summary(self) -> Dict:
    with self.lock:
      state, message = self.state, self.message
    h, w = state.label.shape
    names = class_names()
    return {'width': w, 'height': h, 'message': message,
            'classes': [[c, names.get(c, '')] for c in range(self.label_nc)]}


def class_names() -> Dict[int, str]:
  return dict(cityscapes.NAMES)


def main(argv):
  """Command line: a Run from --workdir or --checkpoint (+ --config), one label map."""
  del argv
  f = flags.FLAGS
  console.setup(f.out or f.workdir or '.', verbose=f.verbose)

  def start():
    if not (f.workdir or f.checkpoint):
      raise ValueError('give --workdir=RUN or --checkpoint=latest_net_G.pth (with --config)')
    r = run_lib.load(f.config, workdir=f.workdir, checkpoint_path=f.checkpoint,
                     clusters=f.clusters)
    renderer = render.Renderer(r)
    batch = pipeline.load_pair(f.labels, f.instances, r.config)
    out = f.out or os.path.join(f.workdir or '.', 'edited')
    session = Session(renderer, batch['label'][0], batch['inst'][0], out_dir=out, seed=f.seed)
    if not is_loopback(f.host):
      console.say(f'warning: --host={f.host} makes the editor reachable from other machines '
                  '(the page and its token travel unencrypted); use it on trusted networks only'
                  + ('; browsers must still use a loopback name: give --host=<this machine\'s '
                     'address> to open it from elsewhere' if f.host in ('', '0.0.0.0', '::')
                     else ''))
    server = serve(session, f.port, f.host)
    console.say(f'editor for {f.labels} with {r.describe()}')
    shown = f.host if f.host not in ('', '0.0.0.0', '::') else '127.0.0.1'
    shown = f'[{shown}]' if ':' in shown else shown
    console.say(f'open http://{shown}:{server.server_address[1]}/ (Ctrl-C stops); '
                f'saves go to {out}/')
    try:
      server.serve_forever()
    except KeyboardInterrupt:
      pass
  console.run_cli(start)


def define_flags():
  """The editor's flags; names shared with ``hdgan_jax.main`` (old --label/--inst still work)."""
  config_flags.DEFINE_config_file('config', None, 'Experiment config (needed with --checkpoint).')
  flags.DEFINE_string('workdir', None, 'A trained run (ideally with use_features + clusters).')
  flags.DEFINE_string('checkpoint', None, "Or NVIDIA's latest_net_G.pth / an original folder.")
  flags.DEFINE_string('clusters', None, 'Feature clusters (.npz ours, .npy the original).')
  flags.DEFINE_string('labels', None, 'Label-id PNG to edit.')
  flags.DEFINE_string('instances', None, 'Its instance-id PNG.')
  flags.DEFINE_alias('label', 'labels')
  flags.DEFINE_alias('inst', 'instances')
  flags.DEFINE_string('out', None, 'Where "save" writes (default WORKDIR/edited).')
  flags.DEFINE_integer('port', 8765, 'Port on localhost (0: any free port).')
  flags.DEFINE_string('host', '127.0.0.1', 'Address to listen on; anything but loopback '
                      'exposes the editor to the network (a warning is printed).')
  flags.DEFINE_integer('seed', 0, 'Seed for sampled styles.')
  flags.DEFINE_bool('verbose', False, 'Library logs and tracebacks on the terminal.')
  flags.mark_flags_as_required(['labels', 'instances'])


def run():
  """Console script ``hdgan-editor``."""
  console.quiet_native_logs()
  define_flags()
  app.run(main)


if __name__ == '__main__':
  run()
