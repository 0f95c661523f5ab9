"""The device mesh ``('data', 'space')`` and the split of one image over ``space``.

``config.mesh.data`` devices each take a slice of the batch (-1: all devices
left over); ``config.mesh.space`` devices share every image, each holding a band
of rows. Images are split along height only: the networks' sharding
constraints (:func:`constrain`, a no-op unless :func:`activation_sharding` is
active with ``space`` > 1) keep every NHWC activation split the same way, and
XLA's SPMD partitioner inserts the halo exchanges of convolutions and the
all-reduces of instance-norm statistics and loss means. The results equal the
unsharded computation (``tests/test_space_sharding.py``): norms stay global
over the image, reflection padding and the discriminator pyramid exact.

Parameters and optimizer state are replicated: the 182 M-parameter local G
with its Adam moments is ~2.2 GB, small next to the activations a 2048x1024
image keeps for the backward pass (``benchmarks/memory.py``), so a parameter
axis would not pay.
"""

import contextlib
import contextvars
from typing import Optional, Tuple

import jax
from jax.sharding import NamedSharding, PartitionSpec as P

AXES = ('data', 'space')
_ACTIVE: contextvars.ContextVar = contextvars.ContextVar('hdgan_jax_space_mesh', default=None)


class MeshError(ValueError):
  """The mesh does not fit the devices or the image; the message names the key and the fix."""
  user_facing = True  # console.run_cli prints the message alone


def mesh_shape(mesh_cfg, n_devices: int) -> Tuple[int, int]:
  """(data, space) sizes for ``config.mesh`` on ``n_devices`` devices."""
  data, space = int(mesh_cfg.data), int(mesh_cfg.space)
  if space < 1 or n_devices % space:
    raise MeshError(f'mesh.space={space} must be >= 1 and divide the {n_devices} devices; '
                    'set --config.mesh.space to a divisor of the device count')
  if data == -1:
    data = n_devices // space
  if data < 1 or n_devices % (data * space):
    raise MeshError(f'mesh.data={mesh_cfg.data} x mesh.space={space} must divide the {n_devices} '
                    'devices; set --config.mesh.data=-1 (all devices left over)')
  return data, space


def make_mesh(mesh_cfg=None, devices=None) -> jax.sharding.Mesh:
  """A ('data', 'space') mesh over the first data*space of ``devices`` (default: all).

  Without ``mesh_cfg`` every device goes to 'data' (space 1).
  """
  devices = list(devices if devices is not None else jax.devices())
  if mesh_cfg is None:
    data, space = len(devices), 1
  else:
    data, space = mesh_shape(mesh_cfg, len(devices))
  return jax.make_mesh((data, space), AXES, axis_types=(jax.sharding.AxisType.Auto,) * 2,
                       devices=devices[:data * space])


def space_size(mesh) -> int:
  return int(dict(mesh.shape).get('space', 1)) if mesh is not None else 1


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh) -> NamedSharding:
  """Batch arrays (N, H, W[, C]): examples over 'data', rows over 'space'."""
  return NamedSharding(mesh, P(*AXES) if 'space' in mesh.axis_names else P('data'))


def check_batch(mesh, batch_size: int, height: int) -> None:
  """Refuses batch sizes and image heights that do not split over the mesh."""
  shape = dict(mesh.shape)
  data, space = shape.get('data', 1), shape.get('space', 1)
  if batch_size % data:
    raise MeshError(f'batch_size={batch_size} does not divide over mesh.data={data} '
                    f'devices; set --config.batch_size to a multiple of {data}')
  if height % space:
    raise MeshError(f'image height {height} does not split into mesh.space={space} bands; '
                    'use a height divisible by mesh.space (data.fineSize / loadSize) or a '
                    'smaller --config.mesh.space')


@contextlib.contextmanager
def activation_sharding(mesh: Optional[jax.sharding.Mesh]):
  """While active (at trace time), :func:`constrain` splits activations over ``mesh``'s 'space'."""
  token = _ACTIVE.set(mesh if space_size(mesh) > 1 else None)
  try:
    yield
  finally:
    _ACTIVE.reset(token)


def constrain(x: jax.Array) -> jax.Array:
  """Pins an NHWC (or NHW) activation to rows over 'space', batch over 'data'.

  A no-op outside :func:`activation_sharding` or with space 1. Maps shorter
  than the space axis (the coarsest pyramid levels) are kept whole on every
  device instead of being split into empty bands.
  """
  mesh = _ACTIVE.get()
  if mesh is None or x.ndim < 3:
    return x
  spec = P('data', 'space') if x.shape[1] >= space_size(mesh) else P('data')
  return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))
