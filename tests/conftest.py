"""Shared fixtures: tiny model configs and the committed reference vectors.

Also one persistent JAX compilation cache per test run (a fresh temporary
folder, removed at the end), shared by the pytest-xdist workers: many tests
train the same tiny config again (resume, refusals, NaN stops, copies of
``full_run``), and each ``train_and_evaluate`` traces new closures, so without
the cache every one of them recompiled the same train step for ~20 s. Only
this process and its workers use it; subprocesses that tests start get no
cache unless a test gives them one (tests/test_multiprocess.py does).
"""

import os
import shutil
import tempfile

import jax
import numpy as np
import pytest

from hdgan_jax import config, train

_CACHE_ENV = 'HDGAN_TEST_JAX_CACHE'


def pytest_configure(config):
  if os.environ.get(_CACHE_ENV) is None:  # the controller (or a run without xdist)
    os.environ[_CACHE_ENV] = tempfile.mkdtemp(prefix='hdgan_jax_test_cache_')
    config._hdgan_jax_cache_owner = True  # workers inherit the variable, the owner removes it
  jax.config.update('jax_compilation_cache_dir', os.environ[_CACHE_ENV])


def pytest_unconfigure(config):
  if getattr(config, '_hdgan_jax_cache_owner', False):
    shutil.rmtree(os.environ.pop(_CACHE_ENV), ignore_errors=True)

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
