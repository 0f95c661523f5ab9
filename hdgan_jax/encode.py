"""``--mode=encode_features``: the encoder over the training set, K-means per class, a cluster file.

Paper Sec. 3.4 (the original's ``encode_features.py``): every instance large
enough gets its pooled feature vector, each class's vectors are clustered, and
generation later fills instances with chosen or sampled centres. The file is
ours (``.npz``, with the model's architecture fingerprint so another model's
file is refused) or, for a path ending in ``.npy``, the original's pickled
dict, which its test.py loads.
"""

import os
from typing import Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

from hdgan_jax import architecture, features, models
from hdgan_jax.convert import clusters as original_clusters
from hdgan_jax.data import pipeline
from hdgan_jax.run import CLUSTER_FILE, Run, RunError


def cluster_path(run: Run, out: Optional[str]) -> str:
  """Where the clusters go: ``out``, else ``WORKDIR/features/clusters.npz``."""
  if out:
    return out
  if run.workdir:
    return os.path.join(run.workdir, CLUSTER_FILE)
  raise RunError('--mode=encode_features with --checkpoint needs --out=FILE (.npz for ours, '
                 'features_clustered_010.npy for the original format)')


def encode_features(run: Run, *, data_config=None, n_clusters: int = features.DEFAULT_N_CLUSTERS,
                    out: Optional[str] = None) -> Dict:
  """Encodes ``data_config``'s dataset (default: the run's), clusters, writes the file.

  Returns {'path': ..., 'instances': {class id: count}}.
  """
  m = run.model
  if not m.use_features or 'E' not in run.params:
    raise RunError(f'{run.origin}: no encoder (model.use_features is off or no *_net_E.pth '
                   'was found); there are no instance features to encode')
  path = cluster_path(run, out)
  cfg = run.config if data_config is None else data_config
  E = models.make_encoder(m)
  enc = jax.jit(lambda p, img, inst: E.apply({'params': p}, img, inst))
  pooled = lambda img, inst: np.asarray(enc(run.params['E'], jnp.asarray(img), jnp.asarray(inst)))
  batches = pipeline.iterate_eval_batches(cfg, batch_size=1)
  if m.label_feat:  # features pooled per class: the label map is the segment map
    batches = (dict(b, inst=b['label']) for b in batches)
  per_class = features.encode_dataset(pooled, batches, feat_num=m.feat_num,
                                      total=pipeline.dataset_size(cfg))
  clusters = features.cluster_features(per_class, n_clusters=n_clusters, seed=run.config.seed)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  if path.endswith('.npy'):
    original_clusters.save_original_clusters(path, clusters)
  else:
    features.save_clusters(path, clusters, config_hash=architecture.fingerprint(m),
                           feat_num=m.feat_num)
  return {'path': path, 'instances': {int(c): int(v.counts.sum()) for c, v in clusters.items()}}
