"""Turning label and instance maps into the generator's input (paper Sec. 3.3).

The input is the concatenation, in the original's order, of the one-hot label
map (``label_nc`` channels, or the raw map when ``label_nc`` is 0), the
instance boundary map (unless ``no_instance``) and, with ``use_features``, the
encoder's feature map.
"""

import numpy as np
import jax
import jax.numpy as jnp


def _squeeze_channel(x, name):
  if x.ndim == 4 and x.shape[-1] == 1:
    return x[..., 0]
  if x.ndim != 3:
    raise ValueError(f'{name} must be (N, H, W) or (N, H, W, 1), got shape {x.shape}')
  return x


def instance_edges(instance_map) -> jax.Array:
  """Instance boundary map: (N, H, W) int -> (N, H, W, 1) float32.

  A pixel is 1 where any of its 4-neighbours has a different id. Pixels on
  the image border only compare with neighbours inside the image (the
  original's ``get_edges`` rule), so the border itself is not an edge.
  """
  t = _squeeze_channel(jnp.asarray(instance_map), 'instance_map')
  dx = t[:, :, 1:] != t[:, :, :-1]
  dy = t[:, 1:, :] != t[:, :-1, :]
  pad = lambda a, widths: jnp.pad(a, ((0, 0),) + widths)
  edge = (pad(dx, ((0, 0), (1, 0))) | pad(dx, ((0, 0), (0, 1))) |
          pad(dy, ((1, 0), (0, 0))) | pad(dy, ((0, 1), (0, 0))))
  return edge.astype(jnp.float32)[..., None]


def check_label_ids(label_map, label_nc: int, where: str = 'label map') -> None:
  """Raises ValueError if a concrete label map holds an id outside [0, label_nc)."""
  arr = np.asarray(label_map)
  if arr.size == 0:
    return
  lo, hi = int(arr.min()), int(arr.max())
  if lo < 0 or hi >= label_nc:
    bad = np.unique(arr[(arr < 0) | (arr >= label_nc)])
    raise ValueError(
        f'{where} holds label ids {bad[:10].tolist()} outside [0, {label_nc}) '
        f'(model.label_nc={label_nc}). Set --config.model.label_nc to at least '
        f'{hi + 1}, or map those ids to a valid class first.')


def one_hot_labels(label_map, label_nc: int) -> jax.Array:
  """One-hot (N, H, W) ids into (N, H, W, label_nc) float32.

  A concrete map with an id outside [0, label_nc) raises ValueError. Inside
  ``jit`` values cannot be checked; an out-of-range pixel then gets NaN in
  every channel instead of a silent zero row, so the loss turns non-finite
  and training stops with a message (the data pipeline checks ids first).
  """
  labels = _squeeze_channel(label_map, 'label_map')
  if not isinstance(labels, jax.core.Tracer):
    check_label_ids(labels, label_nc)
  labels = jnp.asarray(labels).astype(jnp.int32)
  onehot = jax.nn.one_hot(labels, label_nc, dtype=jnp.float32)
  bad = (labels < 0) | (labels >= label_nc)
  return jnp.where(bad[..., None], jnp.nan, onehot)


def encode_input(label_map, instance_map, cfg, feat_map=None) -> jax.Array:
  """Builds the generator input (N, H, W, C) from label and instance maps.

  Args:
    label_map: (N, H, W[, 1]) int ids, or (N, H, W, input_nc) floats when
      ``cfg.label_nc == 0``.
    instance_map: (N, H, W[, 1]) int instance ids (ignored if ``cfg.no_instance``).
    cfg: the model ConfigDict.
    feat_map: optional (N, H, W, feat_num) encoder features (``use_features``).

  Returns:
    float32 array with channels [labels, edge, features] as in the original.
  """
  if cfg.label_nc == 0:
    x = jnp.asarray(label_map, jnp.float32)
  else:
    x = one_hot_labels(label_map, cfg.label_nc)
  parts = [x]
  if not cfg.no_instance:
    if instance_map is None:
      raise ValueError('model.no_instance is False but no instance map was given; '
                       'pass one or set --config.model.no_instance=True')
    edges = instance_edges(instance_map)
    if edges.shape[:3] != x.shape[:3]:
      raise ValueError(f'instance map {edges.shape[:3]} and label map {x.shape[:3]} '
                       'differ in (N, H, W)')
    parts.append(edges)
  if feat_map is not None:
    parts.append(jnp.asarray(feat_map, jnp.float32))
  return jnp.concatenate(parts, axis=-1)


def generator_input_nc(cfg) -> int:
  """Channels of :func:`encode_input`'s output for this config."""
  n = cfg.label_nc if cfg.label_nc != 0 else cfg.input_nc
  n += 0 if cfg.no_instance else 1
  n += cfg.feat_num if cfg.use_features else 0
  return n


def discriminator_input_nc(cfg) -> int:
  """Channels seen by D: label input (+ edge) and the image, no features."""
  n = cfg.label_nc if cfg.label_nc != 0 else cfg.input_nc
  n += 0 if cfg.no_instance else 1
  return n + cfg.output_nc
