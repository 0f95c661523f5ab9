"""Instance-wise average pooling: the mean of a feature map over each segment.

pix2pixHD's encoder replaces every pixel's feature by the mean over the pixels
of its instance (paper Sec. 3.4). The original loops over ``np.unique`` ids in
Python (seconds per image on large maps, and impossible under ``jit``). Here
features are summed per id with one scatter-add (``segment_sum``) and gathered
back: static shapes, vmapped over the batch, and differentiable like the
original (each pixel receives 1/|segment| of its segment's gradient).

Two ways to index the sums, chosen statically:

* ids known to be below ``num_ids`` (automatic for uint8/uint16 maps: the
  16-bit PNGs of Cityscapes and of the original's datasets, ids up to 65535,
  Cityscapes' class*1000+k included): the id is the table index. O(pixels).
* any other integer ids: ranked with a sort (``jnp.unique`` with a static
  size), O(pixels log pixels), correct for every value.
"""

from typing import Optional

import jax
import jax.numpy as jnp


def _segment_mean_one(feat: jax.Array, ids: jax.Array, num_ids: Optional[int],
                      max_segments: Optional[int]):
  """feat (H, W, C), ids (H, W) -> (H, W, C) per-segment means."""
  h, w, c = feat.shape
  flat_ids = ids.reshape(-1)
  if num_ids is not None:
    rank, size = flat_ids.astype(jnp.int32), num_ids
  else:
    flat_ids = flat_ids.astype(jnp.int32)
    size = h * w if max_segments is None else max_segments
    _, rank = jnp.unique(flat_ids, return_inverse=True, size=size,
                         fill_value=jnp.iinfo(jnp.int32).max)
    rank = rank.reshape(-1)
  flat = feat.reshape(-1, c).astype(jnp.float32)
  sums = jax.ops.segment_sum(flat, rank, num_segments=size)
  counts = jax.ops.segment_sum(jnp.ones_like(rank, jnp.float32), rank, num_segments=size)
  means = sums / jnp.maximum(counts, 1.0)[:, None]
  return means[rank].reshape(h, w, c).astype(feat.dtype)


def segment_mean(features: jax.Array, segments: jax.Array,
                 max_segments: Optional[int] = None, *,
                 num_ids: Optional[int] = None) -> jax.Array:
  """Replaces each pixel's features by the mean over its segment.

  Args:
    features: (N, H, W, C) float array.
    segments: (N, H, W) or (N, H, W, 1) integer segment ids.
    max_segments: sort path only: static bound on distinct ids per image; None
      uses H*W, which is always enough.
    num_ids: promise that every id is in [0, num_ids), selecting the O(pixels)
      table path; defaults to 256 / 65536 for uint8 / uint16 maps. Ids outside
      the promise are dropped, so leave it None for unbounded int32 ids.

  Returns:
    (N, H, W, C) array, constant over every segment of every image.
  """
  if segments.ndim == 4:
    segments = segments[..., 0]
  if segments.shape != features.shape[:3]:
    raise ValueError(f'segment map shape {segments.shape} does not match features '
                     f'{features.shape[:3]} (N, H, W)')
  segments = jnp.asarray(segments)
  if num_ids is None and segments.dtype in (jnp.uint8, jnp.uint16):
    num_ids = 1 << (8 * segments.dtype.itemsize)
  return jax.vmap(lambda f, s: _segment_mean_one(f, s, num_ids, max_segments))(features, segments)
