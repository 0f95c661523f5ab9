"""Shared fixtures: tiny model configs and the committed reference vectors."""

import os

import numpy as np
import pytest

from hdgan_jax import config

DATA = os.path.join(os.path.dirname(__file__), 'data')
SHARED = os.path.join(os.path.dirname(__file__), '..', '..', 'shared')


def ref(name):
  """A reference archive from tests/data (see tests/data/README.md)."""
  return np.load(os.path.join(DATA, name))


def ref_state_dict(z):
  """The original's state_dict stored under 'sd/' in a reference archive."""
  return {k[3:]: z[k] for k in z.files if k.startswith('sd/')}


def tiny_model(**overrides):
  """A model config small enough for 32x64 images on 2 CPU cores."""
  m = config.model_config()
  m.update(dict(label_nc=5, ngf=8, n_downsample_global=2, n_blocks_global=1,
                n_local_enhancers=1, n_blocks_local=1, ndf=8, num_D=2, nef=4,
                n_downsample_E=2))
  m.update(overrides)
  return m


@pytest.fixture
def cfg():
  return tiny_model()
