"""A user's own label and instance files for generation: pairing them by scene name.

``--labels`` and ``--instances`` are two files or two folders. In folders, maps
are paired by scene name: Cityscapes' role suffixes (``_gtFine_labelIds``,
``_gtFine_instanceIds``) and the generic ``_label``/``_inst``/``_labelIds``/
``_instanceIds`` are removed, so ``x_labelIds.png`` pairs with
``x_instanceIds.png``.
"""

import os
import re
from typing import List, Optional, Tuple

from hdgan_jax.data import sources

_GENERIC_SUFFIX = re.compile(r'_(labelIds|instanceIds|label|inst)$')


def scene_key(path: str) -> str:
  """Scene name of a user's file: Cityscapes role suffixes, then generic ones, removed."""
  return _GENERIC_SUFFIX.sub('', sources.scene_name(os.path.basename(path)))


def pair_inputs(labels: str, instances: Optional[str]) -> List[Tuple[str, Optional[str]]]:
  """(label, instance) file pairs from two files or two folders (matched by name)."""
  if not os.path.exists(labels):
    raise FileNotFoundError(f'--labels {labels}: no such file or folder')
  if os.path.isfile(labels):
    if instances is not None and not os.path.isfile(instances):
      raise FileNotFoundError(f'--instances {instances}: no such file (give the instance PNG '
                              f'of {labels})')
    return [(labels, instances)]
  lab = sorted(os.path.join(labels, f) for f in os.listdir(labels) if f.lower().endswith('.png'))
  if not lab:
    raise FileNotFoundError(f'--labels {labels}: no .png files in this folder')
  if instances is None:
    return [(p, None) for p in lab]
  if not os.path.isdir(instances):
    raise FileNotFoundError(f'--instances {instances}: not a folder (--labels is one)')
  inst = {scene_key(f): os.path.join(instances, f)
          for f in sorted(os.listdir(instances)) if f.lower().endswith('.png')}
  missing = [os.path.basename(p) for p in lab if scene_key(p) not in inst]
  if missing:
    raise FileNotFoundError(f'{len(missing)} label maps have no instance map in {instances}: '
                            f'{missing[:5]}; name them alike (e.g. x_labelIds.png / '
                            'x_instanceIds.png)')
  return [(p, inst[scene_key(p)]) for p in lab]
