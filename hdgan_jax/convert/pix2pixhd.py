"""NVIDIA pix2pixHD state_dicts <-> hdgan_jax Flax variables.

The original names parameters by their index inside ``nn.Sequential`` stacks.
:func:`module_table` replays that index arithmetic for a config and pairs each
Flax module path with the original's key prefix, so import and export are
two readings of one table:

* G global: ``model.{i}``; G local: ``model.{i}`` (G1 without its output
  head), ``model{n}_1.{i}`` (enhancer front end), ``model{n}_2.{i}`` (its
  residual blocks and back end); residual blocks add ``.conv_block.{1,2,5,6}``.
* D: ``scale{s}_layer{j}.{0,1}`` (with feature matching, the default) or
  ``layer{s}.{i}`` (``no_ganFeat_loss``).
* E: ``model.{i}``, the global layout without residual blocks.

Conv weights go OIHW <-> HWIO; transposed-conv weights (in, out, kH, kW) <->
(kH, kW, in, out) (the layer flips at call time).
"""

import dataclasses
from typing import Dict, List, Mapping, Optional, Tuple

import flax
import jax
import jax.numpy as jnp
import numpy as np

from hdgan_jax import models

Path = Tuple[str, ...]
NETS = ('G', 'D', 'E')


class CheckpointMismatchError(ValueError):
  """A state_dict does not fit the configured network."""


def _bn(table, path, prefix):
  table[path + ('bn',)] = (prefix, 'bn')


def _global_layout(table, root: Path, prefix: str, d: int, b: int, head: bool, norm: str):
  """pix2pixHD's GlobalGenerator (and Encoder, b = 0) Sequential indices."""
  def norm_at(path, idx):
    if norm == 'batch':
      _bn(table, root + (path,), f'{prefix}.{idx}')
  table[root + ('conv_in',)] = (f'{prefix}.1', 'conv')
  norm_at('conv_in_norm', 2)
  for i in range(d):
    table[root + (f'down_{i}',)] = (f'{prefix}.{4 + 3 * i}', 'conv')
    norm_at(f'down_{i}_norm', 5 + 3 * i)
  for k in range(b):
    _resblock(table, root + (f'res_{k}',), f'{prefix}.{4 + 3 * d + k}', norm)
  for i in range(d):
    table[root + (f'up_{i}',)] = (f'{prefix}.{4 + 3 * d + b + 3 * i}', 'convT')
    norm_at(f'up_{i}_norm', 5 + 3 * d + b + 3 * i)
  if head:
    table[root + ('conv_out',)] = (f'{prefix}.{5 + 6 * d + b}', 'conv')


def _resblock(table, root: Path, prefix: str, norm: str):
  table[root + ('conv_0',)] = (f'{prefix}.conv_block.1', 'conv')
  table[root + ('conv_1',)] = (f'{prefix}.conv_block.5', 'conv')
  if norm == 'batch':
    _bn(table, root + ('norm_0',), f'{prefix}.conv_block.2')
    _bn(table, root + ('norm_1',), f'{prefix}.conv_block.6')


def module_table(net: str, cfg) -> Dict[Path, Tuple[str, str]]:
  """Flax module path -> (original key prefix, kind in {conv, convT, bn})."""
  table: Dict[Path, Tuple[str, str]] = {}
  if net == 'G' and cfg.netG == 'global':
    _global_layout(table, (), 'model', cfg.n_downsample_global, cfg.n_blocks_global,
                   True, cfg.norm)
  elif net == 'G' and cfg.netG == 'local':
    _global_layout(table, ('global',), 'model', cfg.n_downsample_global,
                   cfg.n_blocks_global, False, cfg.norm)
    nb = cfg.n_blocks_local
    for n in range(1, cfg.n_local_enhancers + 1):
      root, p1, p2 = (f'enhancer_{n}',), f'model{n}_1', f'model{n}_2'
      table[root + ('conv_in',)] = (f'{p1}.1', 'conv')
      table[root + ('down',)] = (f'{p1}.4', 'conv')
      for k in range(nb):
        _resblock(table, root + (f'res_{k}',), f'{p2}.{k}', cfg.norm)
      table[root + ('up',)] = (f'{p2}.{nb}', 'convT')
      if cfg.norm == 'batch':
        _bn(table, root + ('conv_in_norm',), f'{p1}.2')
        _bn(table, root + ('down_norm',), f'{p1}.5')
        _bn(table, root + ('up_norm',), f'{p2}.{nb + 1}')
      if n == cfg.n_local_enhancers:
        table[root + ('conv_out',)] = (f'{p2}.{nb + 4}', 'conv')
  elif net == 'G':
    raise ValueError(f"model.netG={cfg.netG!r} is not known; use 'global' or 'local'")
  elif net == 'D':
    nl = cfg.n_layers_D
    for s in range(cfg.num_D):
      for j in range(nl + 2):
        if cfg.no_ganFeat_loss:  # the original then keeps one flat Sequential
          conv_idx = 0 if j == 0 else 2 + 3 * (j - 1)
          conv, bn = f'layer{s}.{conv_idx}', f'layer{s}.{conv_idx + 1}'
        else:
          conv, bn = f'scale{s}_layer{j}.0', f'scale{s}_layer{j}.1'
        table[(f'scale{s}', f'layer{j}')] = (conv, 'conv')
        if cfg.norm == 'batch' and 1 <= j <= nl:
          _bn(table, (f'scale{s}', f'layer{j}_norm'), bn)
  elif net == 'E':
    _global_layout(table, ('net',), 'model', cfg.n_downsample_E, 0, True, cfg.norm)
  else:
    raise ValueError(f'net must be one of {NETS}, got {net!r}')
  return table


# (collection, flax leaf) <-> original suffix, per kind.
_LEAVES = {
    'conv': [('params', 'kernel', 'weight'), ('params', 'bias', 'bias')],
    'convT': [('params', 'kernel', 'weight'), ('params', 'bias', 'bias')],
    'bn': [('params', 'scale', 'weight'), ('params', 'bias', 'bias'),
           ('batch_stats', 'mean', 'running_mean'), ('batch_stats', 'var', 'running_var')],
}


def _to_flax(kind, leaf, arr):
  if leaf == 'kernel':
    return arr.transpose(2, 3, 1, 0) if kind == 'conv' else arr.transpose(2, 3, 0, 1)
  return arr


def _to_torch(kind, leaf, arr):
  if leaf == 'kernel':
    return arr.transpose(3, 2, 0, 1) if kind == 'conv' else arr.transpose(2, 3, 0, 1)
  return arr


def key_table(net: str, cfg) -> Dict[str, Tuple[str, Path, str]]:
  """Original key -> (collection, flax path, kind) for every parameter."""
  out = {}
  for path, (prefix, kind) in module_table(net, cfg).items():
    for coll, leaf, suffix in _LEAVES[kind]:
      out[f'{prefix}.{suffix}'] = (coll, path + (leaf,), kind)
  return out


def abstract_variables(net: str, cfg):
  """Shapes of the Flax variables ``module.init`` would create (no compute)."""
  if net not in NETS:
    raise ValueError(f'net must be one of {NETS}, got {net!r}')
  return jax.eval_shape(lambda: models.init_variables(net, cfg, jax.random.PRNGKey(0)))


@dataclasses.dataclass
class Report:
  """What matching a state_dict against a config found."""
  net: str
  missing: List[str] = dataclasses.field(default_factory=list)
  unexpected: List[str] = dataclasses.field(default_factory=list)
  mismatched: List[Tuple[str, tuple, tuple]] = dataclasses.field(default_factory=list)
  loaded: List[str] = dataclasses.field(default_factory=list)

  @property
  def ok(self) -> bool:
    return not (self.missing or self.unexpected or self.mismatched)

  def __str__(self) -> str:
    lines = [f'net {self.net}: {len(self.loaded)} tensors loaded']
    for title, items in (('missing', self.missing), ('unexpected', self.unexpected)):
      if items:
        shown = ', '.join(items[:8]) + (f', ... ({len(items)} in all)' if len(items) > 8 else '')
        lines.append(f'  {title} keys: {shown}')
    for key, got, want in self.mismatched[:8]:
      lines.append(f'  shape mismatch {key}: checkpoint {got}, config expects {want}')
    if len(self.mismatched) > 8:
      lines.append(f'  ... {len(self.mismatched)} shape mismatches in all')
    return '\n'.join(lines)


def _clean(state_dict: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
  """numpy arrays, DataParallel's ``module.`` prefix dropped."""
  out = {}
  for k, v in state_dict.items():
    k = k[len('module.'):] if k.startswith('module.') else k
    out[k] = np.asarray(v.detach().cpu().numpy() if hasattr(v, 'detach') else v)
  return out


def from_pix2pixhd(state_dict: Mapping[str, np.ndarray], net: str, cfg, *,
                   strict: bool = True, base=None, report: Optional[Report] = None):
  """Converts an original state_dict into variables for ``module.apply``.

  Args:
    state_dict: original key -> array (numpy or torch tensors).
    net: 'G', 'D' or 'E'.
    cfg: the model ConfigDict the variables are for.
    strict: True (default) raises :class:`CheckpointMismatchError` on any
      missing, unexpected or mis-shaped key. False loads every key whose name
      and shape match into ``base`` and leaves the rest as they are there,
      like the original's partial load (e.g. a trained global generator into
      a local one, the progressive schedule's second stage).
    base: variables to fill in partial mode (typically a fresh ``init``).
    report: optional :class:`Report` filled with what was found.

  Returns:
    ``{'params': ..., ['batch_stats': ...]}`` as nested dicts of jnp arrays.
  """
  sd = _clean(state_dict)
  keys = key_table(net, cfg)
  shapes = flax.traverse_util.flatten_dict(flax.core.unfreeze(abstract_variables(net, cfg)))
  rep = report if report is not None else Report(net)
  flat = {}
  for key, (coll, path, kind) in keys.items():
    want = tuple(shapes[(coll,) + path].shape)
    if key not in sd:
      rep.missing.append(key)
      continue
    arr = _to_flax(kind, path[-1], sd[key])
    if tuple(arr.shape) != want:
      rep.mismatched.append((key, tuple(sd[key].shape), tuple(_to_torch(kind, path[-1], np.empty(want)).shape)))
      continue
    flat[(coll,) + path] = jnp.asarray(arr, jnp.float32)
    rep.loaded.append(key)
  rep.unexpected.extend(k for k in sd if k not in keys and not k.endswith('num_batches_tracked'))
  if strict:
    if not rep.ok:
      raise CheckpointMismatchError(
          f'state_dict does not fit this model config:\n{rep}\nCheck the model options '
          '(netG, ngf, n_downsample_global, n_blocks_*, n_local_enhancers, label_nc, '
          'no_instance, use_features, num_D, n_layers_D, norm) against the ones the '
          'checkpoint was trained with, or load with strict=False.')
    return flax.traverse_util.unflatten_dict(flat)
  if base is None:
    raise ValueError('strict=False needs base variables to fill (e.g. module.init(...))')
  merged = flax.traverse_util.flatten_dict(flax.core.unfreeze(base))
  merged.update(flat)
  return flax.traverse_util.unflatten_dict(merged)


def to_pix2pixhd(variables, net: str, cfg) -> Dict[str, np.ndarray]:
  """Flax variables -> an original state_dict (numpy arrays, original dtypes).

  The result loads with ``load_state_dict(strict=True)`` into the original's
  network built with the same options (``num_batches_tracked`` is written for
  batch norm layers).
  """
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(variables))
  out = {}
  for key, (coll, path, kind) in key_table(net, cfg).items():
    if (coll,) + path not in flat:
      raise CheckpointMismatchError(
          f'variables lack {"/".join((coll,) + path)} needed for {key}; were they made '
          f'with this config (netG={cfg.netG}, norm={cfg.norm})?')
    out[key] = np.asarray(_to_torch(kind, path[-1], np.asarray(flat[(coll,) + path], np.float32)))
    if key.endswith('running_var'):
      out[key[:-len('running_var')] + 'num_batches_tracked'] = np.array(0, np.int64)
  return out


def state_dict_shapes(net: str, cfg) -> Dict[str, Tuple[int, ...]]:
  """Original key -> tensor shape (OIHW etc.) of network ``net`` for ``cfg``; no allocation."""
  shapes = flax.traverse_util.flatten_dict(flax.core.unfreeze(abstract_variables(net, cfg)))
  out = {}
  for key, (coll, path, kind) in key_table(net, cfg).items():
    want = tuple(shapes[(coll,) + path].shape)
    out[key] = tuple(np.shape(_to_torch(kind, path[-1], np.broadcast_to(np.float32(0), want))))
  return out
