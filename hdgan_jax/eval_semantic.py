"""Semantic quality score of generated images: a per-pixel classifier fitted on real photos.

pix2pixHD measures how well a synthesised image follows its label map by
running a segmentation network trained on real photos over it and comparing
the prediction with the input labels (pixel accuracy and mean IoU, paper
Sec. 4.1). This module is that protocol in miniature, small enough to run
inside training on a CPU: a gradient-boosted classifier over per-pixel
colour and texture features (the RGB value, local mean and standard deviation
of each channel over two box windows, and the row position y / H), fitted on
the demo's real photos (:mod:`hdgan_jax.data.demo`). Real photos score high,
noise and flat images score low, so the number tracks whether a generator
paints each region with its class's appearance.

Window sizes are fractions of the image height (5/64 and 11/64), so a scorer
fitted at one resolution reads other resolutions of the same scenes alike.
"""

import pickle
from typing import Dict, Optional, Sequence

import numpy as np
from scipy import ndimage
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

from hdgan_jax import fileutil

from hdgan_jax.data import demo

_WINDOWS = (5 / 64, 11 / 64)
_FORMAT = 'hdgan_jax.eval_semantic.SemanticScorer/1'


def _batch(x, ndim):
  x = np.asarray(x)
  return x[None] if x.ndim == ndim - 1 else x


def to_unit(images) -> np.ndarray:
  """(N, H, W, 3) uint8 [0, 255] or float [-1, 1] -> float32 in [-1, 1]."""
  x = _batch(images, 4)
  if x.ndim != 4 or x.shape[-1] != 3:
    raise ValueError(f'images must be (N, H, W, 3), got shape {x.shape}')
  if x.dtype == np.uint8:
    return x.astype(np.float32) / np.float32(127.5) - 1
  return np.clip(x.astype(np.float32), -1, 1)


def window_sizes(height: int):
  """Odd box-filter sizes for an image height (at least 3)."""
  return tuple(max(3, 2 * int(round(height * r / 2)) + 1) for r in _WINDOWS)


def pixel_features(images) -> np.ndarray:
  """(N, H, W, 3) images -> (N, H, W, 16) float32 per-pixel features.

  RGB; for each window size the local mean and standard deviation of every
  channel (reflected borders); and y / H of the pixel's row.
  """
  x = to_unit(images)
  n, h, w, _ = x.shape
  feats = [x]
  for k in window_sizes(h):
    mean = ndimage.uniform_filter(x, size=(1, k, k, 1), mode='reflect')
    sq = ndimage.uniform_filter(x * x, size=(1, k, k, 1), mode='reflect')
    feats += [mean, np.sqrt(np.maximum(sq - mean * mean, 0))]
  rows = ((np.arange(h, dtype=np.float32) + 0.5) / h)[None, :, None, None]
  feats.append(np.broadcast_to(rows, (n, h, w, 1)))
  return np.concatenate(feats, axis=-1)


def segmentation_metrics(pred, labels, *, ignore: Sequence[int] = ()) -> Dict[str, float]:
  """Pixel accuracy and mean IoU over the classes present in labels or predictions.

  Pixels whose label is in ``ignore`` are left out of both numbers.
  """
  pred, labels = np.asarray(pred).ravel(), np.asarray(labels).ravel()
  if pred.shape != labels.shape:
    raise ValueError(f'prediction and label sizes differ: {pred.shape} vs {labels.shape}')
  keep = ~np.isin(labels, np.asarray(ignore, labels.dtype)) if len(ignore) else slice(None)
  pred, labels = pred[keep].astype(np.int64), labels[keep].astype(np.int64)
  if labels.size == 0:
    return {'pixel_acc': float('nan'), 'miou': float('nan')}
  classes, inv = np.unique(np.concatenate([labels, pred]), return_inverse=True)
  c = len(classes)
  conf = np.bincount(inv[:labels.size] * c + inv[labels.size:], minlength=c * c).reshape(c, c)
  tp = np.diag(conf).astype(np.float64)
  iou = tp / (conf.sum(0) + conf.sum(1) - tp)
  return {'pixel_acc': float(tp.sum() / labels.size), 'miou': float(iou.mean())}


class SemanticScorer:
  """Per-pixel class predictor for demo-like photos; ``score`` is the quality signal.

  >>> scorer = SemanticScorer().fit(real_images, labels)
  >>> scorer.score(fake_images, labels)   # {'pixel_acc': ..., 'miou': ...}
  """

  def __init__(self, *, max_iter: int = 25, learning_rate: float = 0.15,
               l2_regularization: float = 1.0, max_leaf_nodes: int = 31,
               n_threads: Optional[int] = 1):
    # Without the L2 term, boosting over 11 classes with rare ones (signs,
    # poles) is unstable: held-out accuracy swung 0.68-0.93 across subsamples.
    self.params = dict(max_iter=max_iter, learning_rate=learning_rate,
                       l2_regularization=l2_regularization, max_leaf_nodes=max_leaf_nodes)
    # One OpenMP thread by default: on small shared CPUs sklearn's spinning
    # threads slowed fits up to 10x; None lets sklearn use every core.
    self.n_threads = n_threads
    self.model = None
    self.classes: Optional[np.ndarray] = None

  def fit(self, images, labels, *, classes: Optional[Sequence[int]] = None, seed: int = 0,
          max_pixels: int = 200_000) -> 'SemanticScorer':
    """Fits on (N, H, W, 3) photos and their (N, H, W) label ids; returns self.

    Uses at most ``max_pixels`` pixels, drawn without replacement with weight
    1/sqrt(class frequency) so thin classes (poles, persons) are seen often
    enough. ``classes`` limits the fit to those ids (others are not drawn);
    by default every id in ``labels``.
    """
    x = to_unit(images)
    y = _batch(labels, 3).astype(np.int64)
    if y.shape != x.shape[:3]:
      raise ValueError(f'labels {y.shape} do not match images {x.shape[:3]}')
    self.classes = np.unique(y) if classes is None else np.unique(np.asarray(classes, np.int64))
    flat = y.ravel()
    pos = np.flatnonzero(np.isin(flat, self.classes))
    if pos.size == 0:
      raise ValueError('no pixel carries one of the requested classes')
    ids, inv, freq = np.unique(flat[pos], return_inverse=True, return_counts=True)
    if len(ids) < 2:
      raise ValueError(f'need at least two classes in the data, got {ids.tolist()}')
    rng = np.random.default_rng(seed)
    if pos.size > max_pixels:   # weighted sampling without replacement (exponential keys)
      keys = rng.exponential(size=pos.size) * np.sqrt(freq)[inv]
      pos = np.sort(pos[np.argpartition(keys, max_pixels)[:max_pixels]])
    per_image = x.shape[1] * x.shape[2]
    img, pix = np.divmod(pos, per_image)
    feats = np.empty((pos.size, 16), np.float32)
    for i in np.unique(img):
      sel = img == i
      feats[sel] = pixel_features(x[i:i + 1]).reshape(per_image, -1)[pix[sel]]
    model = HistGradientBoostingClassifier(early_stopping=False, random_state=seed, **self.params)
    with threadpool_limits(self.n_threads, user_api='openmp'):
      model.fit(feats, flat[pos])
    self.model = model
    return self

  def predict(self, images, *, chunk_pixels: int = 1 << 20) -> np.ndarray:
    """(N, H, W, 3) images -> (N, H, W) int32 predicted label ids."""
    if self.model is None:
      raise RuntimeError('SemanticScorer is not fitted: call fit() or load() first')
    x = to_unit(images)
    n, h, w, _ = x.shape
    step = max(1, chunk_pixels // (h * w))
    out = np.empty((n, h, w), np.int32)
    with threadpool_limits(self.n_threads, user_api='openmp'):
      for i in range(0, n, step):
        f = pixel_features(x[i:i + step])
        out[i:i + step] = self.model.predict(f.reshape(-1, f.shape[-1])).reshape(f.shape[:3])
    return out

  def score(self, images, labels, *, ignore: Sequence[int] = ()) -> Dict[str, float]:
    """{'pixel_acc', 'miou'} of the predictions on ``images`` against ``labels``."""
    labels = _batch(labels, 3)
    return segmentation_metrics(self.predict(images), labels, ignore=ignore)

  def save(self, path: str) -> None:
    """Pickles the fitted scorer (a trusted file: load only what you wrote)."""
    if self.model is None:
      raise RuntimeError('nothing to save: the scorer is not fitted')
    with fileutil.atomic_writer(path) as tmp, open(tmp, 'wb') as f:
      pickle.dump({'format': _FORMAT, 'params': self.params, 'n_threads': self.n_threads,
                   'classes': self.classes, 'model': self.model}, f)

  @classmethod
  def load(cls, path: str) -> 'SemanticScorer':
    """A scorer written by :meth:`save` (``SemanticScorer.load(path)``)."""
    try:
      with open(path, 'rb') as f:
        state = pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError,
            IndexError, TypeError, ValueError) as e:
      raise ValueError(f'{path} is not a readable SemanticScorer ({type(e).__name__})') from e
    if not isinstance(state, dict) or state.get('format') != _FORMAT:
      raise ValueError(f'{path} is not a saved SemanticScorer')
    scorer = cls(**state['params'], n_threads=state['n_threads'])
    scorer.classes, scorer.model = state['classes'], state['model']
    return scorer


def _field(cfg, names, default):
  for src in (cfg, getattr(cfg, 'data', None)):
    for name in names:
      if src is not None and getattr(src, name, None) is not None:
        return getattr(src, name)
      if isinstance(src, dict) and src.get(name) is not None:
        return src[name]
  return default


def fit_demo_scorer(cfg=None, *, height: Optional[int] = None, width: Optional[int] = None,
                    n: Optional[int] = None, seed: Optional[int] = None,
                    **fit_kwargs) -> SemanticScorer:
  """Renders ``n`` demo scenes and fits a scorer on them.

  Sizes come from the keywords, else from ``cfg``: a full config
  (``cfg.data.demo_height``, ``demo_width``, ``demo_num_images``, ``cfg.seed``),
  a data config, or anything with ``height``/``width``/``n``/``seed``
  attributes or keys. Defaults: 64 x 128, 64 scenes, seed 0.
  """
  height = height or _field(cfg, ('demo_height', 'height'), 64)
  width = width or _field(cfg, ('demo_width', 'width'), 128)
  n = n or _field(cfg, ('demo_num_images', 'n'), 64)
  seed = _field(cfg, ('seed',), 0) if seed is None else seed
  scenes = list(demo.render_dataset(int(n), height=int(height), width=int(width), seed=int(seed)))
  images = np.stack([s['image'] for s in scenes])
  labels = np.stack([s['label'] for s in scenes])
  return SemanticScorer().fit(images, labels, seed=int(seed), **fit_kwargs)
