r"""Interactive editor: click an object, change its class, remove it or restyle it, see the result.

The paper's semantic-manipulation interface (Sec. 3.4, Fig. 1), which the
original never released, as a small local web app over a trained run: a page
shows the colour-coded label map and the generated image; clicking selects
the instance under the cursor; every edit goes through the pure functions of
``hdgan_jax.edit`` and the image is regenerated. Undo, resampling of styles
and saving the edited maps (8-bit labels, 16-bit instances, styles JSON) are
built in. Standard library HTTP only; it listens on localhost.

  .venv/bin/python -m hdgan_jax.editor --workdir=runs/feat \
      --labels=L_labelIds.png --instances=L_instanceIds.png --out=edited/ [--port=8765]
  .venv/bin/python -m hdgan_jax.editor --config=experiments/cityscapes.py \
      --checkpoint=checkpoints/label2city_1024p_feat/ --labels=L.png --instances=I.png --out=edited/
"""

import http.server
import io
import json
import os
import threading
import urllib.parse
from typing import Dict, List

import numpy as np
from absl import app, flags
from ml_collections import config_flags
from PIL import Image

from hdgan_jax import console, edit, fileutil, render, reporting, run as run_lib
from hdgan_jax.data import pipeline
from hdgan_jax.data import cityscapes

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>hdgan_jax editor</title>
<style>body{font-family:sans-serif;margin:1em}img{image-rendering:pixelated;border:1px solid #999;
width:48%;cursor:crosshair}#panel{margin:.5em 0}button,select{margin-right:.4em}</style></head>
<body><h2>hdgan_jax editor</h2><div id="panel">
<span id="sel">click an object in the label map</span>
<select id="cls"></select><button onclick="op({op:'change_class',instance:S,to:+cls.value})">change class</button>
<button onclick="op({op:'remove',instance:S})">remove</button>
<select id="sty"></select><button onclick="op({op:'style',instance:S,cluster:+sty.value})">set style</button>
<button onclick="post('/resample')">resample styles</button><button onclick="post('/undo')">undo</button>
<button onclick="post('/save')">save</button> <span id="msg"></span></div>
<img id="lab" onclick="pick(event)"> <img id="gen">
<script>
let S=null, st=null;
function show(s){st=s;const t=Date.now();lab.src='/labels.png?'+t;gen.src='/image.png?'+t;
 msg.textContent=s.message||'';cls.innerHTML=s.classes.map(c=>`<option value=${c[0]}>${c[0]} ${c[1]}</option>`).join('');}
async function post(u,b){const r=await fetch(u,{method:'POST',body:JSON.stringify(b||{})});show(await r.json());}
function op(o){if(S===null){msg.textContent='select an object first';return;}post('/edit',o);}
async function pick(e){const r=lab.getBoundingClientRect();
 const x=Math.floor((e.clientX-r.left)/r.width*st.width), y=Math.floor((e.clientY-r.top)/r.height*st.height);
 const i=await (await fetch(`/pick?x=${x}&y=${y}`)).json();S=i.instance;
 sel.textContent=`instance ${i.instance}: class ${i.class} ${i.name}`;
 sty.innerHTML=[...Array(i.clusters).keys()].map(k=>`<option>${k}</option>`).join('');}
fetch('/state').then(r=>r.json()).then(show);
</script></body></html>"""


class Session:
  """The editing state of one label map, its history and its rendering."""

  def __init__(self, renderer, label, inst, *, out_dir: str, seed: int = 0):
    self.renderer = renderer
    self.label_nc = renderer.config.model.label_nc
    self.state = edit.EditState.create(label, inst)
    self.history: List[edit.EditState] = []
    self.out_dir = out_dir
    self.seed = seed
    self.lock = threading.Lock()
    self.message = ''
    self.image = self._render()

  def _render(self) -> np.ndarray:
    return self.renderer.render(self.state.label, self.state.inst,
                                choices=dict(self.state.styles), rng=self.seed)

  def apply(self, op: Dict) -> None:
    """Applies one ``edit.apply_edits`` operation; a bad one leaves the state as it was."""
    with self.lock:
      try:
        new = edit.apply_edits(self.state, [op], label_nc=self.label_nc,
                               clusters=self.renderer.clusters)
      except edit.EditError as e:
        self.message = f'not applied: {e}'
        return
      self.history.append(self.state)
      self.state, self.message = new, f"applied {op.get('op')}"
      self.image = self._render()

  def undo(self) -> None:
    with self.lock:
      if not self.history:
        self.message = 'nothing to undo'
        return
      self.state = self.history.pop()
      self.image = self._render()
      self.message = 'undone'

  def resample(self) -> None:
    with self.lock:
      self.seed += 1
      self.image = self._render()
      self.message = f'styles resampled (seed {self.seed})'

  def pick(self, x: int, y: int) -> Dict:
    h, w = self.state.inst.shape
    x, y = min(max(int(x), 0), w - 1), min(max(int(y), 0), h - 1)
    inst = int(self.state.inst[y, x])
    cls = int(self.state.label[y, x])
    n = 0
    if self.renderer.clusters is not None and cls in self.renderer.clusters:
      n = len(np.asarray(getattr(self.renderer.clusters[cls], 'centers',
                                 self.renderer.clusters[cls])))
    return {'instance': inst, 'class': cls, 'name': class_names().get(cls, ''), 'clusters': n}

  def save(self) -> List[str]:
    with self.lock:
      os.makedirs(self.out_dir, exist_ok=True)
      paths = {name: os.path.join(self.out_dir, name) for name in
               ('edited_labelIds.png', 'edited_instanceIds.png', 'edited_synthesized.png',
                'edited_styles.json')}
      with fileutil.atomic_writer(paths['edited_labelIds.png']) as tmp:
        Image.fromarray(self.state.label.astype(np.uint8)).save(tmp)
      with fileutil.atomic_writer(paths['edited_instanceIds.png']) as tmp:
        Image.fromarray(self.state.inst.astype(np.uint16)).save(tmp)
      reporting.save_png(self.image, paths['edited_synthesized.png'])
      fileutil.atomic_write_text(paths['edited_styles.json'],
                                 json.dumps(edit.styles_to_json(self.state.styles), indent=1))
      self.message = f'saved to {self.out_dir}'
      return sorted(paths.values())

  def summary(self) -> Dict:
    h, w = self.state.label.shape
    names = class_names()
    return {'width': w, 'height': h, 'message': self.message,
            'classes': [[c, names.get(c, '')] for c in range(self.label_nc)]}


def class_names() -> Dict[int, str]:
  return dict(cityscapes.NAMES)


def make_handler(session: Session):
  """An HTTP handler class bound to ``session``."""

  class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep the terminal for the user's own output
      pass

    def _send(self, body: bytes, ctype: str, code: int = 200):
      self.send_response(code)
      self.send_header('Content-Type', ctype)
      self.send_header('Content-Length', str(len(body)))
      self.send_header('Cache-Control', 'no-store')
      self.end_headers()
      self.wfile.write(body)

    def _png(self, arr):
      buf = io.BytesIO()
      Image.fromarray(arr).save(buf, format='PNG')
      self._send(buf.getvalue(), 'image/png')

    def _json(self, obj, code=200):
      self._send(json.dumps(obj).encode(), 'application/json', code)

    def do_GET(self):  # pylint: disable=invalid-name
      url = urllib.parse.urlparse(self.path)
      q = dict(urllib.parse.parse_qsl(url.query))
      if url.path == '/':
        self._send(PAGE.encode(), 'text/html; charset=utf-8')
      elif url.path == '/state':
        self._json(session.summary())
      elif url.path == '/image.png':
        self._png(session.image)
      elif url.path == '/labels.png':
        self._png(reporting.colorize(session.state.label, session.label_nc))
      elif url.path == '/pick':
        self._json(session.pick(q.get('x', 0), q.get('y', 0)))
      else:
        self._json({'error': f'no such page {url.path}'}, 404)

    def do_POST(self):  # pylint: disable=invalid-name
      n = int(self.headers.get('Content-Length') or 0)
      try:
        body = json.loads(self.rfile.read(n) or b'{}')
      except json.JSONDecodeError:
        return self._json({'error': 'body is not JSON'}, 400)
      path = urllib.parse.urlparse(self.path).path
      actions = {'/edit': lambda: session.apply(body), '/undo': session.undo,
                 '/resample': session.resample, '/save': session.save}
      if path not in actions:
        return self._json({'error': f'no such action {path}'}, 404)
      actions[path]()
      return self._json(session.summary())

  return Handler


def serve(session: Session, port: int = 8765, host: str = '127.0.0.1'):
  """A threaded HTTP server for ``session`` (port 0 picks a free one); call serve_forever()."""
  return http.server.ThreadingHTTPServer((host, port), make_handler(session))


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
    server = serve(session, f.port)
    console.say(f'editor for {f.labels} with {r.describe()}')
    console.say(f'open http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C stops); '
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
