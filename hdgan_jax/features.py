"""Instance feature codes: extraction, per-class K-means, cluster files, sampling.

Paper Sec. 3.4: after training, the encoder's instance-pooled features are
collected over the training set (one vector per instance), K-means is run per
semantic class, and at generation time every instance is filled with a chosen
or sampled cluster centre. This module owns those model-independent steps; the
caller supplies the (jitted) encoder.

Typical use (``encode_features`` mode, then generation)::

  per_class = encode_dataset(lambda im, inst: E.apply(v, im, inst), batches,
                             feat_num=cfg.feat_num)
  clusters = cluster_features(per_class, n_clusters=DEFAULT_N_CLUSTERS)
  save_clusters(path, clusters, config_hash=architecture.fingerprint(cfg),
                feat_num=cfg.feat_num)
  ...
  clusters = load_clusters(path, expect_config_hash=architecture.fingerprint(cfg),
                           expect_feat_num=cfg.feat_num)
  feat = feature_map_from_clusters(inst, clusters, feat_num=cfg.feat_num, rng=sample)

Instance ids follow the Cityscapes encoding unless a label map is given: an id
i >= 1000 belongs to class i // 1000, a smaller id is its own class.

Choices kept from NVIDIA's code (``encode_features.py``,
its model file): an instance counts only if its pixel count divided by
``H*W // 32`` exceeds 0.5, i.e. it covers more than 1/64 of the image (exactly
so whenever H*W is a multiple of 32, as every size the networks accept is);
K-means uses ``min(n_clusters, samples)`` clusters per class, seed 0 and 10
inits (the sklearn default of its time). The original's sampler leaves the
features of classes without clusters in an uninitialised tensor; here they are
zeros (as in its ``ui_model.py``).
"""

from typing import (Callable, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence,
                    Union)

import numpy as np
from sklearn.cluster import KMeans
from tqdm import tqdm

from hdgan_jax import config, fileutil

FORMAT_VERSION = 2   # 2: the model is identified by architecture.fingerprint
AREA_BLOCKS = 32                       # the original's block_num
DEFAULT_MIN_AREA_FRACTION = 0.5 / AREA_BLOCKS   # num / (H*W // 32) > 0.5
DEFAULT_N_CLUSTERS = config.DEFAULT_N_CLUSTERS   # the original's --n_clusters (defined in config)
FALLBACKS = ('zeros', 'error')
RngLike = Union[int, Sequence[int], np.random.Generator]


class ClusterFileError(ValueError):
  """A cluster file that cannot be used with this model."""


class InstanceFeature(NamedTuple):
  instance_id: int
  class_id: int
  vector: np.ndarray   # (feat_num,) float32, the instance's mean feature
  area: float          # fraction of the image's pixels


class ClassClusters(NamedTuple):
  centers: np.ndarray  # (k, feat_num) float32
  counts: np.ndarray   # (k,) int64, training instances per centre


def instance_class(ids) -> np.ndarray:
  """Class of Cityscapes-encoded instance ids (id // 1000 if id >= 1000 else id)."""
  ids = np.asarray(ids, np.int64)
  return np.where(ids >= 1000, ids // 1000, ids)


def _segment_classes(inverse, n_seg, uniq, label_map):
  """Per segment: its most common label, or the id rule without a label map."""
  if label_map is None:
    return instance_class(uniq)
  labels = np.asarray(label_map).reshape(-1).astype(np.int64)
  if labels.size != inverse.size:
    raise ValueError(f'label map has {labels.size} pixels, instance map {inverse.size}')
  if labels.size and labels.min() < 0:
    raise ValueError('label map holds negative ids')
  nl = int(labels.max()) + 1 if labels.size else 1
  votes = np.bincount(inverse * nl + labels, minlength=n_seg * nl).reshape(n_seg, nl)
  return votes.argmax(1)


def instance_features(feat_map, inst_map, *, label_map=None,
                      min_area_fraction: Optional[float] = DEFAULT_MIN_AREA_FRACTION
                      ) -> List[InstanceFeature]:
  """One feature vector per instance of one image.

  Args:
    feat_map: (H, W, C) features, normally already pooled per instance (then the
      mean equals any of the instance's pixels, the value the original reads).
    inst_map: (H, W) integer instance ids.
    label_map: optional (H, W) class ids; an instance's class is then its most
      common label. None: the Cityscapes rule on the id.
    min_area_fraction: keep instances covering more than this fraction of the
      image (default: the original's rule, see the module docstring); None or 0
      keeps all.

  Returns:
    InstanceFeature tuples (instance_id, class_id, vector, area), ids ascending.
  """
  feat = np.asarray(feat_map, np.float64)
  inst = np.asarray(inst_map)
  if feat.ndim != 3 or inst.shape != feat.shape[:2]:
    raise ValueError(f'need feat_map (H, W, C) and inst_map (H, W); got {feat.shape} '
                     f'and {inst.shape}')
  h, w, c = feat.shape
  uniq, inverse = np.unique(inst.reshape(-1), return_inverse=True)
  inverse = inverse.reshape(-1)
  counts = np.bincount(inverse, minlength=len(uniq))
  sums = np.stack([np.bincount(inverse, feat[..., k].reshape(-1), len(uniq))
                   for k in range(c)], axis=1)
  means = (sums / counts[:, None]).astype(np.float32)
  classes = _segment_classes(inverse, len(uniq), uniq, label_map)
  if min_area_fraction:
    # The original's units: pixel count over (H*W // 32) blocks, then > 0.5.
    keep = counts / max(h * w // AREA_BLOCKS, 1) > min_area_fraction * AREA_BLOCKS
  else:
    keep = np.ones(len(uniq), bool)
  return [InstanceFeature(int(uniq[j]), int(classes[j]), means[j], counts[j] / (h * w))
          for j in np.flatnonzero(keep)]


def encode_dataset(encode_fn: Callable, examples: Iterable[Mapping], *, feat_num: int,
                   min_area_fraction: Optional[float] = DEFAULT_MIN_AREA_FRACTION,
                   use_label_map: bool = True, progress: bool = True,
                   total: Optional[int] = None) -> Dict[int, np.ndarray]:
  """Collects one feature vector per instance over a dataset, grouped by class.

  Args:
    encode_fn: ``(image (B,H,W,3), inst (B,H,W)) -> (B,H,W,feat_num)`` pooled
      features, e.g. a jitted ``lambda im, inst: E.apply(variables, im, inst)``.
    examples: iterable of dicts with 'image', 'inst' and (optional) 'label'.
    feat_num: the encoder's feature channels (checked).
    min_area_fraction: see :func:`instance_features`.
    use_label_map: take each instance's class from 'label' when present.
    progress: show a tqdm bar (``total`` batches if known).

  Returns:
    {class_id: (n, feat_num) float32}, only classes with at least one instance.
  """
  per_class: Dict[int, List[np.ndarray]] = {}
  for ex in tqdm(examples, total=total, disable=not progress, unit='batch',
                 desc='encode_features'):
    inst = np.asarray(ex['inst'])
    if inst.ndim == 4:
      inst = inst[..., 0]
    labels = ex.get('label') if use_label_map else None
    if labels is not None:
      labels = np.asarray(labels)
      labels = labels[..., 0] if labels.ndim == 4 else labels
    feats = np.asarray(encode_fn(ex['image'], ex['inst']))
    if feats.shape != inst.shape + (feat_num,):
      raise ValueError(f'encode_fn returned {feats.shape}, expected {inst.shape + (feat_num,)} '
                       '(B, H, W, feat_num); check model.feat_num')
    for b in range(inst.shape[0]):
      for f in instance_features(feats[b], inst[b], min_area_fraction=min_area_fraction,
                                 label_map=None if labels is None else labels[b]):
        per_class.setdefault(f.class_id, []).append(f.vector)
  return {c: np.stack(v).astype(np.float32) for c, v in sorted(per_class.items())}


def cluster_features(per_class: Mapping[int, np.ndarray], *,
                     n_clusters: int = DEFAULT_N_CLUSTERS, seed: int = 0,
                     n_init: int = 10) -> Dict[int, ClassClusters]:
  """K-means per class on {class_id: (n, feat_num)} vectors.

  Each class gets ``min(n_clusters, distinct vectors)`` centres (the original
  caps at the sample count; identical rows cannot make more clusters).
  Deterministic for a given ``seed`` and ``n_init``. Empty classes are left out.
  """
  if n_clusters < 1:
    raise ValueError(f'n_clusters must be >= 1, got {n_clusters}')
  out, feat_num = {}, None
  for cls in sorted(per_class):
    x = np.asarray(per_class[cls], np.float64)
    if x.ndim != 2:
      raise ValueError(f'class {cls}: features must be (n, feat_num), got {x.shape}')
    if feat_num is not None and x.shape[1] != feat_num:
      raise ValueError(f'class {cls} has {x.shape[1]} feature channels, others {feat_num}')
    feat_num = x.shape[1]
    if not len(x):
      continue
    k = min(n_clusters, len(np.unique(x, axis=0)))
    km = KMeans(n_clusters=k, random_state=seed, n_init=n_init).fit(x)
    counts = np.bincount(km.labels_, minlength=k).astype(np.int64)
    out[int(cls)] = ClassClusters(km.cluster_centers_.astype(np.float32), counts)
  return out


def _centers(value) -> np.ndarray:
  return np.asarray(value.centers if hasattr(value, 'centers') else value, np.float32)


def save_clusters(path: str, clusters: Mapping[int, ClassClusters], *,
                  config_hash: str, feat_num: int) -> None:
  """Writes clusters to an .npz file (atomically), with format version and hash."""
  arrays = {'format_version': np.int64(FORMAT_VERSION), 'feat_num': np.int64(feat_num),
            'config_hash': np.str_(config_hash),
            'classes': np.array(sorted(int(c) for c in clusters), np.int64)}
  for cls, value in clusters.items():
    centers = _centers(value)
    if centers.ndim != 2 or centers.shape[1] != feat_num:
      raise ValueError(f'class {cls}: centres {centers.shape} do not match feat_num={feat_num}')
    counts = getattr(value, 'counts', None)
    counts = np.zeros(len(centers), np.int64) if counts is None else np.asarray(counts, np.int64)
    arrays[f'centers_{int(cls)}'], arrays[f'counts_{int(cls)}'] = centers, counts
  with fileutil.atomic_writer(path, suffix='.tmp.npz') as tmp:  # savez adds .npz to other names
    np.savez(tmp, **arrays)


def load_clusters(path: str, *, expect_config_hash: Optional[str] = None,
                  expect_feat_num: Optional[int] = None) -> Dict[int, ClassClusters]:
  """Reads a file written by :func:`save_clusters`; refuses another model's file."""
  fix = ('Re-run `python -m hdgan_jax.main --mode=encode_features` with this model '
         'config and checkpoint to rebuild it.')
  try:
    with np.load(path, allow_pickle=False) as z:
      arrays = {k: z[k] for k in z.files}
    meta = {k: arrays[k] for k in ('format_version', 'feat_num', 'config_hash', 'classes')}
  except (OSError, ValueError, KeyError) as e:
    raise ClusterFileError(f'{path} is not an hdgan_jax cluster file ({e!r}). {fix}') from e
  version = int(meta['format_version'])
  if version != FORMAT_VERSION:
    raise ClusterFileError(f'{path} has cluster file format {version}; this version reads '
                           f'{FORMAT_VERSION}. {fix}')
  made_for = str(meta['config_hash'])
  if expect_config_hash is not None and made_for != expect_config_hash:
    raise ClusterFileError(
        f'{path} was made for another model (config hash {made_for}, this model '
        f'{expect_config_hash}); its feature clusters do not fit this encoder/generator. {fix}')
  feat_num = int(meta['feat_num'])
  if expect_feat_num is not None and feat_num != expect_feat_num:
    raise ClusterFileError(f'{path} holds {feat_num}-channel features, the model expects '
                           f'model.feat_num={expect_feat_num}. {fix}')
  try:
    return {int(c): ClassClusters(arrays[f'centers_{c}'], arrays[f'counts_{c}'])
            for c in meta['classes']}
  except KeyError as e:
    raise ClusterFileError(f'{path} is incomplete: no {e} array. {fix}') from e


def _rng_base(rng) -> int:
  if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
    return int(rng) & (2 ** 63 - 1)
  return int(np.random.default_rng(rng).integers(2 ** 63))   # Generator, [seed, sample], ...


def sample_choices(inst_map, clusters, *, rng: RngLike = 0,
                   label_map=None) -> Dict[int, int]:
  """A cluster index for every instance whose class has clusters.

  An instance's draw depends only on (rng, instance id), so adding or removing
  other objects leaves its style unchanged. ``rng``: an int seed, a sequence of
  ints such as ``(seed, sample_index)``, or a Generator (advanced once).
  """
  base = _rng_base(rng)
  uniq, inverse = np.unique(np.asarray(inst_map).reshape(-1), return_inverse=True)
  classes = _segment_classes(inverse.reshape(-1), len(uniq), uniq, label_map)
  out = {}
  for i, cls in zip(uniq.tolist(), classes.tolist()):
    if cls in clusters:
      k = len(_centers(clusters[cls]))
      out[i] = int(np.random.default_rng([base, int(i) & (2 ** 63 - 1)]).integers(k))
  return out


def feature_map_from_clusters(inst_map, clusters: Mapping, *, feat_num: int,
                              rng: RngLike = 0,
                              choices: Optional[Mapping] = None, fallback: str = 'zeros',
                              label_map=None) -> np.ndarray:
  """The generator's feature input for one image: (H, W, feat_num) float32.

  Args:
    inst_map: (H, W) integer instance ids.
    clusters: {class_id: ClassClusters or (k, feat_num) centres}.
    feat_num: feature channels.
    rng: seed, (seed, sample) or Generator for instances without a choice
      (see :func:`sample_choices`); vary it per sample for diverse outputs.
    choices: {instance_id: cluster index, or a (feat_num,) vector used as is};
      ids absent from the map are an error.
    fallback: for classes without clusters: 'zeros' or 'error'.
    label_map: optional (H, W) classes (default: Cityscapes rule on ids).
  """
  if fallback not in FALLBACKS:
    raise ValueError(f'fallback must be one of {FALLBACKS}, got {fallback!r}')
  inst = np.asarray(inst_map)
  uniq, inverse = np.unique(inst.reshape(-1), return_inverse=True)
  classes = _segment_classes(inverse.reshape(-1), len(uniq), uniq, label_map)
  choices = {int(k): v for k, v in (choices or {}).items()}
  missing = sorted(set(choices) - set(uniq.tolist()))
  if missing:
    raise ValueError(f'styles chosen for instance ids {missing[:10]} not in the instance map')
  sampled = sample_choices(inst, clusters, rng=rng, label_map=label_map)
  table = np.zeros((len(uniq), feat_num), np.float32)
  for j, (i, cls) in enumerate(zip(uniq.tolist(), classes.tolist())):
    choice = choices.get(i)
    if choice is not None and np.ndim(choice) == 1:
      vec = np.asarray(choice, np.float32)
      if vec.shape != (feat_num,):
        raise ValueError(f'instance {i}: style vector has {vec.shape[0]} values, '
                         f'feat_num is {feat_num}')
      table[j] = vec
      continue
    if cls not in clusters:
      if choice is not None or fallback == 'error':
        raise ValueError(f'instance {i}: class {cls} has no feature clusters '
                         f'(classes with clusters: {sorted(clusters)[:20]})')
      continue  # zeros
    centers = _centers(clusters[cls])
    if centers.shape[1] != feat_num:
      raise ValueError(f'class {cls}: centres have {centers.shape[1]} channels, '
                       f'feat_num is {feat_num}')
    idx = sampled[i] if choice is None else choice
    if isinstance(idx, bool) or int(idx) != idx or not 0 <= int(idx) < len(centers):
      raise ValueError(f'instance {i}: cluster {idx!r} out of range; class {cls} has '
                       f'{len(centers)} clusters (0..{len(centers) - 1})')
    table[j] = centers[int(idx)]
  return table[inverse.reshape(inst.shape)]
