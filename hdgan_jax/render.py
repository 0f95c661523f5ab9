"""Turning label (+ instance, + style) maps into images with a :class:`~hdgan_jax.run.Run`.

Shared by ``--mode=generate``, the interactive editor and the benchmarks, so
every path encodes inputs and converts pixels the same way (the original's
truncating uint8 conversion, ``reporting.to_uint8``).
"""

from typing import Mapping, Optional

import jax
import numpy as np

from hdgan_jax import features, models, reporting
from hdgan_jax.run import Run


class Renderer:
  """A Run's generator, jitted once, mapping (H, W) maps to (H, W, 3) uint8 images.

  Maps are taken at the size given (preprocess files with
  ``pipeline.load_pair`` first).
  """

  def __init__(self, run: Run):
    self.run = run
    self.config = run.config
    self.clusters = run.require_clusters() if run.model.use_features else None
    G = models.make_generator(run.model)
    self._apply = jax.jit(lambda p, x: G.apply({'params': p}, x))

  def forward(self, x) -> np.ndarray:
    """Encoded generator input (N, H, W, C) -> images in [-1, 1]."""
    return np.asarray(self._apply(self.run.params['G'], x))

  def encode(self, labels, insts=None, *, choices: Optional[Mapping] = None, rng=0):
    """(N, H, W) label ids (+ instance ids) -> the generator's (N, H, W, C) input.

    With instance features, every instance takes its cluster from ``choices``
    ({instance id: cluster index or vector}) or samples one from ``(rng, i)``
    for image ``i`` (``rng`` itself for a single image).
    """
    m = self.config.model
    labels = np.asarray(labels)
    insts = None if insts is None else np.asarray(insts)
    feat = None
    if self.clusters is not None:
      segs = labels if m.label_feat else insts
      n = labels.shape[0]
      feat = np.stack([features.feature_map_from_clusters(
          segs[i], self.clusters, feat_num=m.feat_num, rng=rng if n == 1 else (rng, i),
          choices=choices, label_map=labels[i]) for i in range(n)])
    return models.encode_input(labels, insts, m, feat_map=feat)

  def render(self, label, inst=None, *, choices: Optional[Mapping] = None, rng=0) -> np.ndarray:
    """(H, W) label ids (+ instance ids) -> (H, W, 3) uint8 image (see :meth:`encode`)."""
    label = np.asarray(label)[None]
    inst = None if inst is None else np.asarray(inst)[None]
    return reporting.to_uint8(self.forward(self.encode(label, inst, choices=choices, rng=rng))[0])
