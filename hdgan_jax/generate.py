"""Using a trained run: generate images from label maps, and encode instance features.

Both read the model *and preprocessing* recorded in the run's checkpoint, not
the command line's, so test inputs go through exactly the training pipeline's
test-time path. Mismatched test-time preprocessing is the usual cause of the
original's "blurry test results" reports (NVIDIA/pix2pixHD #171, #292).
"""

import json
import logging
import os
import re
from typing import Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from hdgan_jax import checkpoint, models, reporting

CLUSTER_FILE = os.path.join('features', 'clusters.npz')
_GENERIC_SUFFIX = re.compile(r'_(labelIds|instanceIds|label|inst)$')


def load_run(workdir: str, config=None):
  """(run config, restored g_params, step) of the latest checkpoint in ``workdir``.

  Warns where ``config`` (the command line's) differs in data preprocessing and
  refuses a different architecture.
  """
  mngr = checkpoint.manager(workdir, async_save=False)
  step = mngr.latest_step()
  if step is None:
    raise FileNotFoundError(f'{workdir}: no checkpoint under {workdir}/checkpoints; train first '
                            f'(--mode=train) or point --workdir at a trained run')
  saved = ml_collections.ConfigDict(checkpoint.saved_config(mngr, step))
  if config is not None:
    diff = checkpoint.architecture_diff(saved.to_dict(), config)
    if diff:
      raise checkpoint.mismatch_error(workdir, diff)
    for key in ('resize_or_crop', 'loadSize', 'fineSize', 'palette'):
      if saved.data.get(key) != config.data.get(key):
        logging.warning('data.%s: using the checkpoint\'s %r, not %r, so inputs are '
                        'preprocessed as in training', key, saved.data.get(key), config.data.get(key))
  restored = mngr.restore(step, args=checkpoint.ocp.args.Composite(
      state=checkpoint.ocp.args.StandardRestore()))['state']
  return saved, restored['g_params'], step


def _key(path: str) -> str:
  """Scene name of a user's file: Cityscapes role suffixes, then generic ones, removed."""
  from hdgan_jax.data import sources  # pylint: disable=import-outside-toplevel
  return _GENERIC_SUFFIX.sub('', sources.scene_name(os.path.basename(path)))


def pair_inputs(labels: str, instances: Optional[str]) -> List[Tuple[str, Optional[str]]]:
  """(label, instance) file pairs from two files or two folders (matched by name)."""
  if not os.path.exists(labels):
    raise FileNotFoundError(f'--labels {labels}: no such file or folder')
  if os.path.isfile(labels):
    if instances is not None and not os.path.isfile(instances):
      raise FileNotFoundError(f'--instances {instances}: no such file (give the instance PNG of {labels})')
    return [(labels, instances)]
  lab = sorted(os.path.join(labels, f) for f in os.listdir(labels) if f.lower().endswith('.png'))
  if not lab:
    raise FileNotFoundError(f'--labels {labels}: no .png files in this folder')
  if instances is None:
    return [(p, None) for p in lab]
  if not os.path.isdir(instances):
    raise FileNotFoundError(f'--instances {instances}: not a folder (--labels is one)')
  inst = {_key(f): os.path.join(instances, f) for f in os.listdir(instances) if f.lower().endswith('.png')}
  missing = [os.path.basename(p) for p in lab if _key(p) not in inst]
  if missing:
    raise FileNotFoundError(f'{len(missing)} label maps have no instance map in {instances}: '
                            f'{missing[:5]}; name them alike (e.g. x_labelIds.png / x_instanceIds.png)')
  return [(p, inst[_key(p)]) for p in lab]


class Renderer:
  """A trained run, ready to turn (label, instance[, styles]) maps into images.

  Shared by ``--mode=generate`` and the interactive editor. Maps are taken at
  the size given (preprocess files with ``pipeline.load_pair`` first).
  """

  def __init__(self, workdir: str, config=None):
    from hdgan_jax import features  # pylint: disable=import-outside-toplevel
    self.config, g_params, self.step = load_run(workdir, config)
    m = self.config.model
    self.clusters = None
    if m.use_features:
      path = os.path.join(workdir, CLUSTER_FILE)
      if not os.path.exists(path):
        raise FileNotFoundError(f'{path}: no feature clusters; run --mode=encode_features first')
      self.clusters = features.load_clusters(path, expect_config_hash=features.config_hash(m),
                                             expect_feat_num=m.feat_num)
    G = models.make_generator(m)
    params = g_params['G']
    self._run = jax.jit(lambda x: G.apply({'params': params}, x))

  def render(self, label, inst=None, *, choices=None, rng=0) -> np.ndarray:
    """(H, W) label ids (+ instance ids) -> (H, W, 3) uint8 image.

    With instance features, every instance takes its cluster from ``choices``
    ({instance id: cluster index or vector}) or samples one from ``rng``.
    """
    from hdgan_jax import features  # pylint: disable=import-outside-toplevel
    m = self.config.model
    label = np.asarray(label)
    inst = None if inst is None else np.asarray(inst)
    feat = None
    if self.clusters is not None:
      segments = label if m.label_feat else inst
      feat = features.feature_map_from_clusters(segments, self.clusters, feat_num=m.feat_num,
                                                rng=rng, choices=choices, label_map=label)[None]
    x = models.encode_input(label[None], None if inst is None else inst[None], m, feat_map=feat)
    return reporting.to_uint8(np.asarray(self._run(x))[0])


def generate(config, workdir: str, *, labels: str, instances: Optional[str] = None,
             out: Optional[str] = None, num_samples: int = 1, styles: Optional[str] = None,
             seed: int = 0) -> List[str]:
  """Writes one image per input (``num_samples`` per input with instance features)."""
  from hdgan_jax import edit  # pylint: disable=import-outside-toplevel
  from hdgan_jax.data import pipeline  # pylint: disable=import-outside-toplevel
  renderer = Renderer(workdir, config)
  if renderer.clusters is None and (num_samples > 1 or styles):
    raise ValueError('--num_samples > 1 and --styles need a model trained with '
                     'model.use_features=True (instance feature encoder)')
  choices = edit.load_styles(styles) if styles else None
  out = out or os.path.join(workdir, 'generated')
  os.makedirs(out, exist_ok=True)
  written = []
  for label_path, inst_path in pair_inputs(labels, instances):
    batch = pipeline.load_pair(label_path, inst_path, renderer.config)
    inst = batch['inst'][0] if 'inst' in batch else None
    base = _key(label_path)
    for s in range(num_samples):
      img = renderer.render(batch['label'][0], inst, choices=choices, rng=(seed, s))
      name = f'{base}_synthesized.png' if num_samples == 1 else f'{base}_sample{s}.png'
      path = os.path.join(out, name)
      reporting.save_png(img, path)
      written.append(path)
  print(f'step {renderer.step}: wrote {len(written)} images to {out}')
  return written


def encode_features(config, workdir: str) -> str:
  """Runs E over the training set, clusters per class, writes WORKDIR/features/clusters.npz."""
  from hdgan_jax import features  # pylint: disable=import-outside-toplevel
  from hdgan_jax.data import pipeline  # pylint: disable=import-outside-toplevel
  run_cfg, g_params, _ = load_run(workdir, config)
  m = run_cfg.model
  if not m.use_features:
    raise ValueError(f'{workdir} was trained without model.use_features; there is no encoder')
  E = models.make_encoder(m)
  enc = jax.jit(lambda img, inst: E.apply({'params': g_params['E']}, img, inst))
  pooled = lambda img, inst: np.asarray(enc(jnp.asarray(img), jnp.asarray(inst)))
  batches = pipeline.iterate_eval_batches(run_cfg, batch_size=1)
  if m.label_feat:  # features pooled per class: the label map is the segment map
    batches = (dict(b, inst=b['label']) for b in batches)
  per_class = features.encode_dataset(pooled, batches, feat_num=m.feat_num,
                                      total=pipeline.dataset_size(run_cfg))
  clusters = features.cluster_features(per_class, n_clusters=config.n_clusters if config else run_cfg.get('n_clusters', 10),
                                       seed=run_cfg.seed)
  path = os.path.join(workdir, CLUSTER_FILE)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  features.save_clusters(path, clusters, config_hash=features.config_hash(m), feat_num=m.feat_num)
  summary: Dict[int, int] = {int(c): int(v.counts.sum()) for c, v in clusters.items()}
  print(f'wrote {path}: instances per class {json.dumps(summary)}')
  return path
