r"""Command line of the object-level editor: flags, reading and writing the maps.

This file owns the script side of ``hdgan_jax.edit`` (which keeps the pure
editing API and documents the operations format): it reads the label and
instance maps the way training does (``hdgan_jax.data.sources``), applies the
edits, and writes the outputs only when every edit succeeded, each one
atomically (``hdgan_jax.fileutil``).

  python -m hdgan_jax.edit --label=L.png --inst=I.png --ops=edits.json \
      --out_label=L2.png --out_inst=I2.png [--out_styles=styles.json]

edits.json is a list of operations, documented in ``hdgan_jax.edit`` (see
``python -m hdgan_jax.edit --help``). ``python -m hdgan_jax.edit_cli`` runs the
same command. Flags are defined only when run as a script, so importing this
module defines none.
"""

import contextlib
import io
import json
import os
import sys
from typing import Mapping

from absl import app, flags
import numpy as np
from PIL import Image

from hdgan_jax import features, fileutil
from hdgan_jax.data import cityscapes, sources
from hdgan_jax.edit import (EditError, EditState, apply_edits, check_state, load_styles,
                            styles_to_json)


def read_maps(label_path, inst_path):
  """(label, inst) int64 arrays from a label id PNG and a 16-bit instance PNG.

  Decoded by ``hdgan_jax.data.sources`` (as training reads them): colour
  pictures are refused, any byte order is read; DataError (a ValueError) on
  bad files.
  """
  label = sources.read_label_ids(label_path, label_path)
  inst = sources.read_inst(inst_path, inst_path)
  return label.astype(np.int64), inst.astype(np.int64)


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
  flags.DEFINE_string('label', None, 'Input label map: 8-bit PNG of class ids.')
  flags.DEFINE_string('inst', None, 'Input instance map: 16-bit PNG, Cityscapes ids.')
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
  for name in ('label', 'inst', 'ops', 'out_label', 'out_inst'):
    flags.mark_flag_as_required(name)
  return flags.FLAGS


def _run(flags_) -> None:
  inputs = [flags_.label, flags_.inst, flags_.ops] + ([flags_.styles] if flags_.styles else [])
  outputs = [p for p in (flags_.out_label, flags_.out_inst, flags_.out_styles) if p]
  real = lambda p: os.path.realpath(os.path.abspath(p))
  if len({real(p) for p in outputs}) < len(outputs):
    raise EditError('output paths must differ from each other')
  clash = {real(p) for p in outputs} & {real(p) for p in inputs}
  if clash:
    raise EditError(f'refusing to overwrite an input file: {sorted(clash)[0]}')
  for p in outputs:
    if not os.path.isdir(os.path.dirname(os.path.abspath(p))):
      raise EditError(f'output directory of {p} does not exist')
  try:
    thing = tuple(int(c) for c in flags_.thing_classes)
  except ValueError:
    raise EditError(f'--thing_classes must be integers, got {flags_.thing_classes}') from None
  label, inst = read_maps(flags_.label, flags_.inst)
  if label.max() >= flags_.label_nc:
    raise EditError(f'{flags_.label}: label id {label.max()} >= --label_nc={flags_.label_nc}')
  state = EditState.create(label, inst, load_styles(flags_.styles) if flags_.styles else {})
  with open(flags_.ops, encoding='utf-8') as f:
    ops = json.load(f)
  clusters = features.load_clusters(flags_.clusters) if flags_.clusters else None
  state = apply_edits(state, ops, label_nc=flags_.label_nc, thing_classes=thing,
                      clusters=clusters, base_dir=os.path.dirname(os.path.abspath(flags_.ops)))
  check_state(state)
  contents = {flags_.out_label: encode_png(state.label, 8),
              flags_.out_inst: encode_png(state.inst, 16)}
  if flags_.out_styles:
    contents[flags_.out_styles] = (json.dumps(styles_to_json(state.styles), indent=1)
                                   + '\n').encode()
  write_files_atomically(contents)
  print(f'wrote {", ".join(contents)} ({len(ops)} edits, '
        f'{len(np.unique(state.inst))} instances)')


def main(argv) -> int:
  try:
    if len(argv) > 1:
      raise EditError(f'unexpected arguments {argv[1:]}')
    _run(flags.FLAGS)
  except (EditError, OSError, ValueError) as e:  # ClusterFileError, DataError, JSON errors
    print(f'hdgan_jax.edit: error: {e}\nNothing was written.', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  define_flags()
  app.run(main)
