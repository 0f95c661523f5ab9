r"""Command line of the object-level editor: flags, reading and writing the maps.

This file owns the script side of ``hdgan_jax.edit`` (which keeps the pure
editing API and documents the operations format): it reads the label and
instance maps the way training does (``hdgan_jax.data.sources``), applies the
edits, and writes the outputs only when every edit succeeded, each one
atomically (``hdgan_jax.fileutil``).

  python -m hdgan_jax.edit --labels=L.png --instances=I.png --ops=edits.json \
      --out_label=L2.png --out_inst=I2.png [--out_styles=styles.json] [--verbose]

edits.json is a list of operations, documented in ``hdgan_jax.edit`` (see
``python -m hdgan_jax.edit --help``). ``python -m hdgan_jax.edit_cli`` runs the
same command (console script ``hdgan-edit``: :func:`run`). ``--labels`` and
``--instances`` are named as in ``hdgan_jax.main``; ``--label`` and ``--inst``
still work. Flags are defined only when run as a script, so importing this
module defines none.

The inputs are only read: outputs must be other files. A problem (a bad map,
a malformed edits file, an edit that cannot apply) is one ``error:`` line and
nothing is written; ``--verbose`` adds the traceback.
"""

import contextlib
import io
import json
import os
from typing import Mapping, Optional

from absl import flags
import numpy as np
from PIL import Image

from hdgan_jax import console, features, fileutil
from hdgan_jax.data import cityscapes, sources
from hdgan_jax.edit import (EditError, EditState, apply_edits, check_state, load_ops,
                            load_styles, styles_to_json)


def read_maps(label_path, inst_path, *, allow_lossy=False):
  """(label, inst) int64 arrays from a label id PNG and a 16-bit instance PNG.

  Decoded by ``hdgan_jax.data.sources`` (as training reads them): colour
  pictures and lossy (JPEG) maps are refused (``allow_lossy`` reads those with
  a warning), any byte order is read; DataError (a ValueError) naming the file.
  """
  label = sources.read_label_ids(label_path, label_path, allow_lossy=allow_lossy)
  inst = sources.read_inst(inst_path, inst_path, allow_lossy=allow_lossy)
  return label.astype(np.int64), inst.astype(np.int64)


def load_state(label_path, inst_path, styles_path: Optional[str] = None, *,
               label_nc: int = cityscapes.LABEL_NC, allow_lossy: bool = False) -> EditState:
  """The validated EditState of two map files (and a styles file); errors name the files."""
  label, inst = read_maps(label_path, inst_path, allow_lossy=allow_lossy)
  if label.size and (label.min() < 0 or label.max() >= label_nc):
    raise EditError(f'{label_path}: label ids {label.min()}..{label.max()} outside '
                    f'0..{label_nc - 1} (--label_nc={label_nc})')
  styles = load_styles(styles_path) if styles_path else {}
  try:
    return EditState.create(label, inst, styles)
  except EditError as e:
    raise EditError(f'{label_path} / {inst_path}'
                    f'{" / " + str(styles_path) if styles_path else ""}: {e}') from None


def encode_png(arr, bits: int) -> bytes:
  """An 8- or 16-bit grayscale PNG of an id map; refuses ids that do not fit."""
  arr = np.asarray(arr)
  if arr.min() < 0 or arr.max() >= 1 << bits:
    raise EditError(f'ids {arr.min()}..{arr.max()} do not fit a {bits}-bit PNG')
  buf = io.BytesIO()
  Image.fromarray(arr.astype(np.uint8 if bits == 8 else np.uint16)).save(buf, format='PNG')
  return buf.getvalue()


def write_files_atomically(contents: Mapping[str, bytes]) -> None:
  """Writes every file to a temporary name first, then renames them all.

  If any write fails no file is replaced (a failing rename, e.g. on a full
  disk, can still leave the ones renamed before it).
  """
  with contextlib.ExitStack() as stack:   # on exit: renames all, or on error removes all
    for path, data in contents.items():
      with open(stack.enter_context(fileutil.atomic_writer(path, suffix='.tmp')), 'wb') as f:
        f.write(data)


def define_flags():
  """Defines the command's flags (only when run as a script); returns FLAGS."""
  flags.DEFINE_string('labels', None, 'Input label map: 8-bit PNG of class ids.')
  flags.DEFINE_string('instances', None, 'Input instance map: 16-bit PNG, Cityscapes ids.')
  flags.DEFINE_alias('label', 'labels')
  flags.DEFINE_alias('inst', 'instances')
  flags.DEFINE_string('ops', None, 'JSON file: a list of edit operations (see above).')
  flags.DEFINE_string('styles', None, 'Optional input styles JSON {"instance id": cluster}.')
  flags.DEFINE_string('out_label', None, 'Output label map PNG (8-bit).')
  flags.DEFINE_string('out_inst', None, 'Output instance map PNG (16-bit).')
  flags.DEFINE_string('out_styles', None, 'Optional output styles JSON for generation.')
  flags.DEFINE_string('clusters', None, 'Optional cluster file (.npz from encode_features) '
                      'to check style cluster indices against.')
  flags.DEFINE_integer('label_nc', cityscapes.LABEL_NC, 'Number of classes (model.label_nc).')
  flags.DEFINE_list('thing_classes', [str(c) for c in cityscapes.THING_IDS],
                    'Classes with instances (default: Cityscapes person..bicycle).')
  flags.DEFINE_bool('allow_lossy_maps', False, 'Read JPEG label/instance maps anyway (their '
                    'compression has changed ids along edges; a warning is logged).')
  flags.DEFINE_bool('verbose', False, 'Library logs and tracebacks on the terminal.')
  for name in ('labels', 'instances', 'ops', 'out_label', 'out_inst'):
    flags.mark_flag_as_required(name)
  return flags.FLAGS


def _check_paths(flags_) -> None:
  inputs = [flags_.labels, flags_.instances, flags_.ops] + [
      p for p in (flags_.styles, flags_.clusters) if p]
  outputs = [p for p in (flags_.out_label, flags_.out_inst, flags_.out_styles) if p]
  real = lambda p: os.path.realpath(os.path.abspath(p))
  if len({real(p) for p in outputs}) < len(outputs):
    raise EditError('--out_label, --out_inst and --out_styles must be different files')
  clash = {real(p) for p in outputs} & {real(p) for p in inputs}
  if clash:
    raise EditError(f'refusing to overwrite an input file: {sorted(clash)[0]}; give the '
                    'outputs other names')
  for p in outputs:
    if os.path.isdir(p):
      raise EditError(f'{p} is a folder; give a file name for the output')
    if not os.path.isdir(os.path.dirname(os.path.abspath(p))):
      raise EditError(f'output directory of {p} does not exist; create it first')


def prepare(flags_) -> tuple:
  """Reads and edits everything; returns ({output path: bytes}, a summary line).

  Writes nothing, so any error here means no file was touched.
  """
  _check_paths(flags_)
  try:
    thing = tuple(int(c) for c in flags_.thing_classes)
  except ValueError:
    raise EditError(f'--thing_classes must be integers, got {flags_.thing_classes}') from None
  state = load_state(flags_.labels, flags_.instances, flags_.styles, label_nc=flags_.label_nc,
                     allow_lossy=flags_.allow_lossy_maps)
  ops = load_ops(flags_.ops)
  clusters = features.load_clusters(flags_.clusters) if flags_.clusters else None
  try:
    state = apply_edits(state, ops, label_nc=flags_.label_nc, thing_classes=thing,
                        clusters=clusters, base_dir=os.path.dirname(os.path.abspath(flags_.ops)))
    check_state(state)
  except EditError as e:
    raise EditError(f'{flags_.ops}: {e}') from None
  contents = {flags_.out_label: encode_png(state.label, 8),
              flags_.out_inst: encode_png(state.inst, 16)}
  if flags_.out_styles:
    contents[flags_.out_styles] = (json.dumps(styles_to_json(state.styles), indent=1)
                                   + '\n').encode()
  summary = (f'wrote {", ".join(contents)} ({len(ops)} edits, '
             f'{len(np.unique(state.inst))} instances)')
  return contents, summary


def _run(flags_) -> None:
  try:
    contents, summary = prepare(flags_)
  except (ValueError, OSError) as e:   # EditError, DataError, ClusterFileError, unreadable files
    raise EditError(f'{e}\nNothing was written.') from e
  write_files_atomically(contents)
  print(summary)


main = console.tool_main(lambda: _run(flags.FLAGS))


def run() -> None:
  """Console script ``hdgan-edit`` (and ``python -m hdgan_jax.edit``)."""
  console.run_tool(main, define_flags)


if __name__ == '__main__':
  run()
