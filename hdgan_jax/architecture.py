"""What makes two models "the same model": the one definition used everywhere.

A checkpoint can be resumed, a cluster file reused, or a weight file loaded
only into a model whose architecture fields agree with the one it was made
for. Those fields are the options that change parameter shapes or what the
weights mean; options such as ``dtype``, the GAN loss or training lengths do
not. Checkpoints compare :func:`diff` field by field (so the error names
them); cluster files store :func:`fingerprint` (a short hash of the same
fields).
"""

import hashlib
import json
from typing import Any, Dict, Iterable, Tuple

# Fields per network. G's input channels depend on label_nc/input_nc,
# no_instance and use_features/feat_num; E's features mean per-instance or
# per-class codes depending on label_feat.
G_KEYS = ('label_nc', 'input_nc', 'output_nc', 'ngf', 'netG', 'n_downsample_global',
          'n_blocks_global', 'n_local_enhancers', 'n_blocks_local', 'norm', 'no_instance',
          'use_features', 'feat_num')
E_KEYS = ('nef', 'n_downsample_E', 'label_feat')
D_KEYS = ('ndf', 'n_layers_D', 'num_D')
NET_KEYS = {'G': G_KEYS, 'E': E_KEYS, 'D': D_KEYS}
ARCH_KEYS = tuple(dict.fromkeys(G_KEYS + E_KEYS + D_KEYS))


def _get(model_cfg, key):
  return model_cfg.get(key) if hasattr(model_cfg, 'get') else getattr(model_cfg, key, None)


def fields(model_cfg, nets: Iterable[str] = ('G', 'E', 'D')) -> Dict[str, Any]:
  """{field: value} of the architecture fields of ``nets`` ('G', 'E', 'D')."""
  keys = dict.fromkeys(k for n in nets for k in NET_KEYS[n])
  return {k: _get(model_cfg, k) for k in keys}


def diff(old_model, new_model, nets: Iterable[str] = ('G', 'E', 'D')
         ) -> Dict[str, Tuple[Any, Any]]:
  """{field: (old, new)} for each architecture field of ``nets`` that differs."""
  a, b = fields(old_model, nets), fields(new_model, nets)
  return {k: (a[k], b[k]) for k in a if a[k] != b[k]}


def fingerprint(model_cfg, nets: Iterable[str] = ('G', 'E')) -> str:
  """A short stable hash of :func:`fields`; G and E by default (what clusters depend on)."""
  blob = json.dumps(fields(model_cfg, nets), sort_keys=True)
  return hashlib.sha256(blob.encode()).hexdigest()[:16]
