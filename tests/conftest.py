"""Shared fixtures: tiny model configs and the committed reference vectors."""

import os

import numpy as np
import pytest

from hdgan_jax import config, train

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


def tiny_run_config(steps=4, **kw):
  """A whole run's config on tiny demo data (32x64, 8 scenes): seconds per step on 2 cores."""
  c = config.get_config()
  c.model = tiny_model(label_nc=35, ngf=4, ndf=4, n_downsample_global=2)
  d = c.data
  d.source, d.demo_num_images, d.demo_height, d.demo_width = 'demo', 8, 32, 64
  d.resize_or_crop, d.num_workers, d.check = 'none', 0, 'full'
  c.batch_size = 2
  c.no_vgg_loss = True
  c.num_train_steps = steps
  c.log_every_steps = 1
  c.checkpoint_every_steps = 2
  c.sample_every_steps = 2
  c.num_sample_images = 2
  c.update(kw)
  return c


@pytest.fixture(scope='session')
def full_run(tmp_path_factory):
  """One finished 4-step run (checkpoints at 2 and 4), shared read-only: copy it to change it."""
  wd = str(tmp_path_factory.mktemp('full'))
  train.train_and_evaluate(tiny_run_config(eval_semantic=True), wd)
  return wd
