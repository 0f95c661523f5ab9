r"""Interactive editor: paint, fill, stamp, remove, relabel and restyle objects, see the photo.

The paper's semantic-manipulation interface (Sec. 3.4, Fig. 1), which the
original never released, as a small local web app over a trained run: a page
shows the colour-coded label map (a canvas to paint on) and the generated
image; every edit goes through the pure functions of ``hdgan_jax.edit`` and
the image is regenerated. Brush and flood fill over the class palette, car
and person stamps, select then delete / change class / restyle (with style
thumbnails for feature models), undo and redo, a blank scene, PNG upload and
saving (8-bit labels, 16-bit instances, the photo, styles JSON) inside the
output folder. The state lives in ``hdgan_jax.editor_session``; the server
(``hdgan_jax.editor_server``, standard library HTTP on localhost) checks
Host, Origin and a per-session token so other web pages cannot drive it; the
page is package data (``hdgan_jax/editor_static``).

From a notebook (Jupyter or Colab; Colab shows it through its kernel proxy)::

  from hdgan_jax import editor
  h = editor.launch(run, labels, instances, out_dir='edited')   # a Run or a Renderer
  h.show()        # the page in the notebook
  h.stop()

  .venv/bin/python -m hdgan_jax.editor --workdir=runs/feat \
      --labels=L_labelIds.png --instances=L_instanceIds.png --out=edited/ [--port=8765]
  .venv/bin/python -m hdgan_jax.editor --config=experiments/cityscapes.py \
      --checkpoint=checkpoints/label2city_1024p_feat/ --labels=L.png --instances=I.png --out=edited/
"""

import dataclasses
import os
import threading

from absl import app, flags
from ml_collections import config_flags
import numpy as np

from hdgan_jax import console, host_memory, render, run as run_lib
from hdgan_jax.data import pipeline
from hdgan_jax.editor_server import Server, is_loopback, serve
from hdgan_jax.editor_session import (DEFAULT_SAVE_NAME, MAX_HISTORY, SAVE_NAMES,  # noqa: F401
                                      Session, class_names)

__all__ = ['Session', 'serve', 'launch', 'Handle', 'SAVE_NAMES', 'MAX_HISTORY', 'class_names',
           'DEFAULT_SAVE_NAME']


@dataclasses.dataclass
class Handle:
  """A running editor (from :func:`launch`): ``url``, ``port``, ``session``, ``show``, ``stop``."""
  session: Session
  server: Server
  thread: threading.Thread
  host: str
  port: int

  @property
  def url(self) -> str:
    host = self.host if self.host not in ('', '0.0.0.0', '::') else '127.0.0.1'
    return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/"

  def show(self, height: int = 820):
    """Shows the page in the notebook: through Colab's kernel proxy in Colab, else an IFrame.

    In Colab the browser reaches the kernel's port only through Colab's
    proxy, under another host name; this switches the server to accept it
    (``editor_server.allow_colab_proxy``; the token check stays).
    """
    try:  # optional: google.colab exists only inside Colab
      from google.colab import output as colab_output  # pylint: disable=import-outside-toplevel
    except ImportError:
      colab_output = None
    if colab_output is not None:
      self.server.allow_colab_proxy()
      colab_output.serve_kernel_port_as_iframe(self.port, height=height)
      return None
    try:  # optional: IPython is only needed inside a notebook; the editor runs without it
      from IPython.display import IFrame, display  # pylint: disable=import-outside-toplevel
    except ImportError:
      raise RuntimeError(f'show() displays the editor in a notebook and needs IPython; '
                         f'outside one, open {self.url} in a browser') from None
    frame = IFrame(self.url, width='100%', height=height)
    display(frame)
    return frame

  def stop(self) -> None:
    """Stops the server and frees the port (the session stays usable in Python)."""
    self.server.shutdown()
    self.server.server_close()
    self.thread.join(timeout=5)

  def __repr__(self):
    return f'<hdgan_jax editor at {self.url}>'

  def _repr_html_(self):
    return f'<a href="{self.url}" target="_blank">hdgan_jax editor at {self.url}</a>'


def launch(run_or_renderer, labels, instances, *, out_dir: str, port: int = 0,
           host: str = '127.0.0.1', seed: int = 0) -> Handle:
  """Starts the editor on ``labels``/``instances`` ((H, W) int arrays) in a background thread.

  ``run_or_renderer``: a ``hdgan_jax.run.Run`` (``run.load(config, workdir=...)``)
  or a ``render.Renderer``. The maps are taken at their size (a size the
  generator accepts: use ``pipeline.load_pair`` on files). ``port=0`` picks a
  free port. Saves go to ``out_dir``. Returns a :class:`Handle`; the page may
  be framed by local notebook pages (Jupyter, VS Code) so ``show`` works.
  """
  renderer = (render.Renderer(run_or_renderer) if isinstance(run_or_renderer, run_lib.Run)
              else run_or_renderer)
  labels, instances = np.asarray(labels), np.asarray(instances)
  session = Session(renderer, labels, instances, out_dir=str(out_dir), seed=seed)
  server = serve(session, port, host, frame_ancestors=NOTEBOOK_FRAMERS)
  thread = threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.1},
                            daemon=True, name='hdgan-editor')
  thread.start()
  return Handle(session, server, thread, host, server.server_address[1])


# Pages that may show the editor in a frame when it is launched from a notebook.
NOTEBOOK_FRAMERS = ("'self' http://localhost:* http://127.0.0.1:* https://localhost:* "
                    'https://127.0.0.1:* vscode-webview:')  # CSP has no syntax for [::1]


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
    out = f.out or os.path.join(f.workdir or '.', DEFAULT_SAVE_NAME)
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
  host_memory.use_memory_scheduler()  # renders only: XLA:CPU's memory-minimising scheduler
  define_flags()
  app.run(main)


if __name__ == '__main__':
  run()
