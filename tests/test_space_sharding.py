"""Mesh configuration errors are one line; the sharded-step cases live in their own files.

``test_space_sharding_global.py``, ``_local1.py`` and ``_local2.py`` each run one
case (an image split over 8 simulated devices along its height equals the
unsharded step) in its own subprocess through ``space_sharding_case.py``, so
that pytest-xdist can spread them over workers.
"""

import pytest

from hdgan_jax import config as config_lib, mesh as mesh_lib


def test_mesh_errors_are_one_line():
  m = config_lib.mesh_config()
  m.space = 3
  with pytest.raises(mesh_lib.MeshError, match='mesh.space=3 must be >= 1 and divide the 8'):
    mesh_lib.mesh_shape(m, 8)
  m.space, m.data = 2, 3
  with pytest.raises(mesh_lib.MeshError, match='mesh.data=3 x mesh.space=2'):
    mesh_lib.mesh_shape(m, 8)
  m.data = -1
  assert mesh_lib.mesh_shape(m, 8) == (4, 2)
  c = config_lib.get_config()
  c.mesh.data, c.mesh.space, c.model.remat = 0, 0, 'some'
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.validate(c)
  assert 'mesh.space=0' in str(e.value) and 'mesh.data=0' in str(e.value) and 'model.remat' in str(e.value)
  assert '\n' not in str(e.value)
