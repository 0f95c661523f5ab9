"""Parameter counts equal the original's for its published configurations.

Numbers were counted with ``sum(p.numel() for p in net.parameters())`` on
networks built by NVIDIA's ``networks.define_G`` / ``define_D`` (see
tests/data/README.md). Counting uses ``jax.eval_shape``: nothing is allocated.
"""

import jax
import numpy as np
import pytest

from hdgan_jax import config
from hdgan_jax.convert import pix2pixhd


def count(net, cfg):
  v = pix2pixhd.abstract_variables(net, cfg)
  return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(v['params']))


def city(**kw):
  m = config.model_config()
  m.update(kw)
  return m


@pytest.mark.parametrize('name,net,cfg,expected', [
    ('label2city_1024p G (local, ngf 32)', 'G', city(netG='local', ngf=32), 182_857_059),
    ('label2city_512p G (global, ngf 64)', 'G', city(netG='global', ngf=64), 182_546_755),
    ('1024p G with 3 instance features', 'G', city(netG='local', ngf=32, use_features=True), 182_871_171),
    ('multiscale D, num_D 2', 'D', city(num_D=2), 5_603_202),
    ('multiscale D, num_D 3', 'D', city(num_D=3), 8_404_803),
    ('encoder E (nef 16, 4 downsamplings)', 'E', city(), 788_803),
])
def test_parameter_count_matches_original(name, net, cfg, expected):
  assert count(net, cfg) == expected, name
