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

  def render(self, label, inst=None, *, choices: Optional[Mapping] = None, rng=0) -> np.ndarray:
    """(H, W) label ids (+ instance ids) -> (H, W, 3) uint8 image.

    With instance features, every instance takes its cluster from ``choices``
    ({instance id: cluster index or vector}) or samples one from ``rng``.
    """
    m = self.config.model
    label = np.asarray(label)
    inst = None if inst is None else np.asarray(inst)
    feat = None
    if self.clusters is not None:
      segments = label if m.label_feat else inst
      feat = features.feature_map_from_clusters(segments, self.clusters, feat_num=m.feat_num,
                                                rng=rng, choices=choices, label_map=label)[None]
    x = models.encode_input(label[None], None if inst is None else inst[None], m, feat_map=feat)
    return reporting.to_uint8(self.forward(x)[0])
