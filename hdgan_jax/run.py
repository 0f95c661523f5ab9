"""A trained model as one object: config, G/E parameters, feature clusters, provenance.

Everything that uses a trained generator (``--mode=generate``,
``--mode=encode_features``, the editor, ``init_from``) gets it from here, from
any of three places:

* a **workdir** of ours: the latest orbax checkpoint or a chosen ``step``; the
  model and preprocessing config are the checkpoint's own, and the feature
  clusters are ``WORKDIR/features/clusters.npz``;
* a **weight file**: an original ``.pth`` state_dict of G (e.g. NVIDIA's
  ``latest_net_G.pth``), the same as ``.npz`` (``convert pth2npz``), or our
  Flax variables ``.npz`` (``convert import``); the config comes from
  ``--config`` and its overrides;
* an **original checkpoint folder** (``checkpoints/label2city_1024p_feat/``):
  ``latest_net_G.pth``, and for feature models ``latest_net_E.pth`` and
  ``features_clustered_010.npy``.

Parameters are restored against an abstract target (shapes from
``jax.eval_shape``) placed replicated on the device mesh, so nothing is built
on one device first.
"""

import dataclasses
import glob
import logging
import os
import re
from typing import Any, Dict, Mapping, Optional

import flax
import jax
import ml_collections
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from hdgan_jax import architecture, checkpoint, config as config_lib, convert, features, models
from hdgan_jax.convert import clusters as original_clusters, io as weight_io

CLUSTER_FILE = os.path.join('features', 'clusters.npz')
PREPROCESSING_KEYS = ('resize_or_crop', 'loadSize', 'fineSize', 'palette')
_ORIGINAL_NET = re.compile(r'^(?P<epoch>.+)_net_(?P<net>[GED])\.pth$')


class RunError(ValueError):
  """A run cannot be made from what was given (the message says what to fix)."""


@dataclasses.dataclass
class Run:
  """A trained pix2pixHD model ready to use.

  Attributes:
    config: the config the weights belong to (``config.model`` builds the
      networks, ``config.data`` preprocesses inputs as in training).
    params: ``{'G': ..., ['E': ...]}`` Flax parameters.
    origin: where the weights came from, for people (``runs/demo step 600``).
    step: the checkpoint step (workdirs only).
    workdir: the run directory (workdirs only).
    clusters: ``{class id: ClassClusters}`` for feature models, if any.
    clusters_origin: the file they came from.
  """
  config: ml_collections.ConfigDict
  params: Dict[str, Any]
  origin: str
  step: Optional[int] = None
  workdir: Optional[str] = None
  clusters: Optional[Dict[int, features.ClassClusters]] = None
  clusters_origin: Optional[str] = None

  @property
  def model(self) -> ml_collections.ConfigDict:
    return self.config.model

  def require_clusters(self) -> Dict[int, features.ClassClusters]:
    """The feature clusters, or an error saying how to get them."""
    if self.clusters is None:
      where = (f'run --mode=encode_features on {self.workdir}' if self.workdir else
               'put features_clustered_010.npy beside the checkpoint or pass --clusters=FILE')
      raise RunError(f'{self.origin}: model.use_features is set but there are no feature '
                     f'clusters; {where}')
    return self.clusters

  def load_clusters(self, path: str) -> 'Run':
    """This run with clusters from ``path``: ours (.npz) or the original's (.npy)."""
    m = self.model
    if path.endswith('.npy'):
      cl = original_clusters.load_original_clusters(path, feat_num=m.feat_num)
    else:
      cl = features.load_clusters(path, expect_config_hash=architecture.fingerprint(m),
                                  expect_feat_num=m.feat_num)
    return dataclasses.replace(self, clusters=cl, clusters_origin=path)

  def describe(self) -> str:
    m = self.model
    text = (f'{self.origin}: netG={m.netG} ngf={m.ngf} label_nc={m.label_nc}'
            f'{" +features" if m.use_features else ""}')
    if self.clusters is not None:
      text += f', clusters for {len(self.clusters)} classes from {self.clusters_origin}'
    return text


def replicated_sharding() -> NamedSharding:
  """Parameters replicated over all local devices (a 1-D 'data' mesh)."""
  mesh = jax.make_mesh((jax.device_count(),), ('data',),
                       axis_types=(jax.sharding.AxisType.Auto,))
  return NamedSharding(mesh, P())


def abstract_params(model_cfg, sharding=None) -> Dict[str, Any]:
  """``{'G': ..., ['E': ...]}`` as ShapeDtypeStructs carrying ``sharding``."""
  sharding = sharding or replicated_sharding()
  nets = ('G', 'E') if model_cfg.use_features else ('G',)
  shapes = {n: convert.pix2pixhd.abstract_variables(n, model_cfg)['params'] for n in nets}
  return jax.tree_util.tree_map(
      lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes)


def load(config=None, *, workdir: Optional[str] = None, checkpoint_path: Optional[str] = None,
         step: Optional[int] = None, clusters: Optional[str] = None) -> Run:
  """A Run from ``checkpoint_path`` (file or original folder) or else ``workdir``."""
  if checkpoint_path:
    run = from_weights(checkpoint_path, config)
  elif workdir:
    run = from_workdir(workdir, config, step=step)
  else:
    raise RunError('give --workdir=DIR (a trained run) or --checkpoint=FILE_OR_FOLDER '
                   '(an original latest_net_G.pth, an .npz, or an original checkpoint folder)')
  if clusters:
    run = run.load_clusters(clusters)
  return run


# --------------------------------------------------------------------------- workdirs

def from_workdir(workdir: str, config=None, *, step: Optional[int] = None) -> Run:
  """The latest (or ``step``) checkpoint of a run of ours.

  ``config`` (the command line's) is checked against the checkpoint: another
  architecture is refused, other preprocessing gets a warning (the
  checkpoint's is used, so inputs are treated as in training).
  """
  ckpt_dir = os.path.join(workdir, 'checkpoints')
  if not os.path.isdir(ckpt_dir):
    raise RunError(f'{workdir}: no trained run here (no {ckpt_dir}); train first with '
                   '--mode=train, or point --workdir at a trained run')
  mngr = checkpoint.reader(workdir)
  steps = mngr.all_steps()
  if not steps:
    raise RunError(f'{workdir}: no checkpoint under {ckpt_dir}; train first (--mode=train)')
  if step is None:
    step = max(steps)
  elif step not in steps:
    raise RunError(f'{workdir}: no checkpoint at step {step}; available: {sorted(steps)}')
  saved = ml_collections.ConfigDict(checkpoint.saved_config(mngr, step))
  if config is not None:
    diff = architecture.diff(saved.model, config.model)
    if diff:
      raise checkpoint.mismatch_error(workdir, diff)
    for key in PREPROCESSING_KEYS:
      if saved.data.get(key) != config.data.get(key):
        logging.warning("data.%s: using the checkpoint's %r, not %r, so inputs are "
                        'preprocessed as in training', key, saved.data.get(key),
                        config.data.get(key))
  key = 'g_ema' if saved.get('g_ema_decay', 0) else 'g_params'  # the average, when training kept one
  params = checkpoint.restore_params(mngr, step, abstract_params(saved.model), key)
  run = Run(saved, params, origin=f'{workdir} step {step}', step=step, workdir=workdir)
  path = os.path.join(workdir, CLUSTER_FILE)
  if saved.model.use_features and os.path.exists(path):
    run = run.load_clusters(path)
  return run


# --------------------------------------------------------------------------- weight files

def describe_state_dict(sd: Mapping[str, np.ndarray]) -> str:
  """What a G state_dict's keys and shapes say about its options (for error messages)."""
  keys = [k[7:] if k.startswith('module.') else k for k in sd]
  shapes = {k: np.shape(v) for k, v in zip(keys, sd.values())}
  enhancers = sorted({int(m.group(1)) for k in keys for m in [re.match(r'model(\d+)_1\.', k)] if m})
  if enhancers:
    first = shapes.get(f'model{max(enhancers)}_1.1.weight')
    guess = f'netG=local, n_local_enhancers={len(enhancers)}'
  else:
    first = shapes.get('model.1.weight')
    guess = 'netG=global'
  if first is not None and len(first) == 4:
    guess += f', ngf={first[0]}, {first[1]} input channels'
  return guess


def _load_g_file(path: str, model_cfg) -> Dict[str, Any]:
  """G parameters from an original state_dict (.pth/.npz) or our variables (.npz)."""
  sd = weight_io.load_state_dict(path)
  if sd and all('/' in k for k in sd):  # our Flax variables, written by `convert import`
    variables = flax.traverse_util.unflatten_dict(sd, sep='/')
    want = convert.pix2pixhd.abstract_variables('G', model_cfg)
    got_shapes = jax.tree_util.tree_map(np.shape, variables)
    want_shapes = jax.tree_util.tree_map(lambda s: tuple(s.shape), flax.core.unfreeze(want))
    if got_shapes != want_shapes:
      raise RunError(f'{path}: these hdgan_jax variables do not fit the model config '
                     '(netG, ngf, n_*, label_nc, no_instance, use_features); set the '
                     '--config.model.* options it was made with')
    return variables['params']
  try:
    return convert.from_pix2pixhd(sd, 'G', model_cfg)['params']
  except convert.CheckpointMismatchError as e:
    m = model_cfg
    raise RunError(
        f'{path} does not fit the model config (netG={m.netG}, ngf={m.ngf}, '
        f'n_local_enhancers={m.n_local_enhancers}, '
        f'{models.generator_input_nc(m)} input channels). The file looks like '
        f'{describe_state_dict(sd)}: set those with --config.model.* (input channels = '
        'label_nc + 1 for instance edges unless no_instance, + feat_num with use_features).'
        f'\n{str(e).splitlines()[1] if len(str(e).splitlines()) > 1 else ""}') from e


def original_folder(folder: str, epoch: Optional[str] = None):
  """(G path, E path or None, cluster file or None) in an original checkpoint folder."""
  nets: Dict[str, Dict[str, str]] = {}
  for f in sorted(os.listdir(folder)):
    m = _ORIGINAL_NET.match(f)
    if m:
      nets.setdefault(m.group('epoch'), {})[m.group('net')] = os.path.join(folder, f)
  epochs = [e for e, n in nets.items() if 'G' in n]
  if not epochs:
    raise RunError(f'{folder}: no *_net_G.pth here; give the folder holding NVIDIA\'s '
                   'latest_net_G.pth (e.g. checkpoints/label2city_1024p) or the file itself')
  pick = epoch or ('latest' if 'latest' in epochs else None)
  if pick is None:
    if len(epochs) > 1:
      raise RunError(f'{folder}: several generators ({", ".join(sorted(epochs))}); '
                     'give --checkpoint=FOLDER/<epoch>_net_G.pth to choose one')
    pick = epochs[0]
  cl = sorted(glob.glob(os.path.join(folder, 'features_clustered_*.npy')))
  return nets[pick]['G'], nets[pick].get('E'), cl


def from_weights(path: str, config) -> Run:
  """A Run from a G weight file or an original checkpoint folder, with ``config``."""
  if config is None:
    raise RunError(f'--checkpoint={path} needs --config (model and preprocessing options, e.g. '
                   'experiments/cityscapes.py with --config.model.* overrides)')
  if not os.path.exists(path):
    raise RunError(f'--checkpoint={path}: no such file or folder')
  config = ml_collections.ConfigDict(config.to_dict())
  config_lib.validate(config, sections=('model', 'data'))
  m = config.model
  e_path, cluster_files = None, []
  if os.path.isdir(path):
    g_path, e_path, cluster_files = original_folder(path)
  else:
    g_path = path
    name = _ORIGINAL_NET.match(os.path.basename(path))
    if name:  # latest_net_G.pth: the encoder and clusters may lie beside it
      sib = os.path.join(os.path.dirname(path), f'{name.group("epoch")}_net_E.pth')
      e_path = sib if os.path.exists(sib) else None
      cluster_files = sorted(glob.glob(os.path.join(os.path.dirname(path) or '.',
                                                    'features_clustered_*.npy')))
  sharding = replicated_sharding()
  params = {'G': _load_g_file(g_path, m)}
  run_clusters, clusters_origin = None, None
  if m.use_features:
    if e_path is not None:
      params['E'] = convert.from_pix2pixhd(weight_io.load_state_dict(e_path), 'E', m)['params']
    want = original_clusters.DEFAULT_NAME.format(config.n_clusters)
    chosen = [f for f in cluster_files if os.path.basename(f) == want] or cluster_files[:1]
    if chosen:
      run_clusters = original_clusters.load_original_clusters(chosen[0], feat_num=m.feat_num)
      clusters_origin = chosen[0]
  params = jax.device_put(params, sharding)
  return Run(config, params, origin=g_path, clusters=run_clusters,
             clusters_origin=clusters_origin)
