"""A user's own label and instance files for generation: pairing them by scene name.

``--labels`` and ``--instances`` are two files or two folders. In folders, maps
are paired by scene name (``sources.scene_key``): Cityscapes' role suffixes
(``_gtFine_labelIds``, ``_gtFine_instanceIds``) and the generic ``_label``/
``_inst``/``_labelIds``/``_instanceIds`` are removed, so ``x_labelIds.png``
pairs with ``x_instanceIds.png``.

Two refusals keep a generation from silently using the wrong map:

* two files of one folder with the same scene name (``a_labelIds.png`` and
  ``a_label.png``, or ``a.png`` and ``a.bmp``): which one is meant cannot be
  guessed, so both are named and nothing is generated;
* lossy label or instance maps (``.jpg``, ``.webp``): compression has changed
  their ids (see ``decode``); ``allow_lossy`` reads them with a warning.

Maps may be PNG, BMP, TIFF or PPM/PGM (lossless); other files in the folders
are ignored.
"""

import os
from typing import List, Optional, Tuple

from hdgan_jax.data import decode, sources
from hdgan_jax.data.errors import DataError

_MAP_EXTENSIONS = decode.LOSSLESS_EXTENSIONS + tuple(decode.LOSSY_EXTENSIONS)


def scene_key(path: str) -> str:
  """Scene name of a user's file: Cityscapes role suffixes, then generic ones, removed."""
  return sources.scene_key(os.path.basename(path))


def _refuse_lossy(paths, what, allow_lossy) -> None:
  lossy = decode.lossy_paths(paths)
  if not lossy:
    return
  if allow_lossy:
    decode.warn_lossy(what, f' (e.g. {lossy[0]})')
    return
  if len(lossy) == 1:
    raise DataError(decode.lossy_message(lossy[0], what), kind='lossy')
  raise decode.lossy_error([(p, what) for p in lossy], os.path.dirname(lossy[0]) or '.')


def _maps_by_scene(folder, flag, what):
  """{scene key: path} of the map files in ``folder``; two files of one scene are refused."""
  names = sorted(f for f in os.listdir(folder) if f.lower().endswith(_MAP_EXTENSIONS)
                 and os.path.isfile(os.path.join(folder, f)))
  out, clashes = {}, []
  for name in names:
    path, key = os.path.join(folder, name), scene_key(name)
    if key in out:
      clashes.append(sources.duplicate_message(what, key, out[key], path))
    else:
      out[key] = path
  if clashes:
    listed = '\n  '.join(clashes[:20])
    raise DataError(f'{flag} {folder}: {len(clashes)} scene name(s) have two files:\n  '
                    f'{listed}', kind='names')
  return out


def pair_inputs(labels: str, instances: Optional[str], *,
                allow_lossy: bool = False) -> List[Tuple[str, Optional[str]]]:
  """(label, instance) file pairs from two files or two folders (matched by name).

  Raises FileNotFoundError for missing paths or partners and DataError for
  lossy maps (unless ``allow_lossy``) and two maps of one scene in a folder.
  """
  if not os.path.exists(labels):
    raise FileNotFoundError(f'--labels {labels}: no such file or folder')
  if os.path.isfile(labels):
    if instances is not None and not os.path.isfile(instances):
      raise FileNotFoundError(f'--instances {instances}: no such file (give the instance PNG '
                              f'of {labels})')
    _refuse_lossy([labels], 'label map', allow_lossy)
    _refuse_lossy([instances] if instances else [], 'instance map', allow_lossy)
    return [(labels, instances)]
  lab = _maps_by_scene(labels, '--labels', 'label map')
  if not lab:
    raise FileNotFoundError(f'--labels {labels}: no label maps in this folder (.png, or '
                            f'{", ".join(decode.LOSSLESS_EXTENSIONS[1:])})')
  _refuse_lossy(sorted(lab.values()), 'label map', allow_lossy)
  lab_paths = sorted(lab.values())
  if instances is None:
    return [(p, None) for p in lab_paths]
  if not os.path.isdir(instances):
    raise FileNotFoundError(f'--instances {instances}: not a folder (--labels is one)')
  inst = _maps_by_scene(instances, '--instances', 'instance map')
  missing = [os.path.basename(p) for p in lab_paths if scene_key(p) not in inst]
  if missing:
    raise FileNotFoundError(f'{len(missing)} label maps have no instance map in {instances}: '
                            f'{missing[:5]}; name them alike (e.g. x_labelIds.png / '
                            'x_instanceIds.png)')
  pairs = [(p, inst[scene_key(p)]) for p in lab_paths]
  _refuse_lossy([i for _, i in pairs], 'instance map', allow_lossy)
  return pairs
