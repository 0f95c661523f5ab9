"""The CPU matmul lowerings equal plain XLA convs, forward and under jax.grad."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hdgan_jax import models
from hdgan_jax.models import (conv_bands, conv_defer, conv_matmul, conv_rows, conv_strided,
                              conv_winograd, layers, lowering, vgg)


def _check(fn, x, w, *args, rtol=2e-5):
  def loss(x, w):
    y = fn(x, w, *args)
    return jnp.sum(y * jnp.cos(jnp.arange(y.size, dtype=y.dtype).reshape(y.shape)))
  res = {}
  for kind in ('xla', 'matmul'):
    with lowering.using(kind):
      y = jax.jit(lambda x, w: fn(x, w, *args))(x, w)
      g = jax.jit(jax.grad(loss, argnums=(0, 1)))(x, w)
    res[kind] = (y,) + tuple(g)
  for name, a, b in zip(('y', 'dx', 'dw'), res['xla'], res['matmul']):
    assert a.shape == b.shape, name
    scale = float(jnp.max(jnp.abs(a))) or 1.0
    err = float(jnp.max(jnp.abs(a - b))) / scale
    assert err <= rtol, f'{name}: relative error {err:.2e}'


def _data(seed, x_shape, w_shape):
  r = np.random.default_rng(seed)
  return (jnp.asarray(r.standard_normal(x_shape), jnp.float32),
          jnp.asarray(r.standard_normal(w_shape) * 0.1, jnp.float32))


@pytest.mark.parametrize('h,w,k,s,p,cin,cout', [
    (9, 13, 4, 1, 2, 5, 7),     # im2col (D's stride-1 4x4)
    (12, 16, 7, 1, 3, 6, 3),    # planar outtaps (few outputs): G's last 7x7 conv
    (10, 7, 4, 1, 2, 8, 1),     # outtaps, even kernel: D's last conv
    (11, 9, 7, 1, 3, 4, 8),     # rowcol forward, XLA's gradients: G's first 7x7 conv
    (5, 6, 3, 1, 1, 4, 2),      # outtaps, 3x3 kernel
    (9, 13, 3, 2, 1, 5, 7),     # strided: XLA's conv, kernel gradient deferred (conv_defer)
    (8, 10, 4, 2, 1, 3, 6),     # strided 4x4: D's downsampling convs
])
def test_conv2d_lowerings_agree(h, w, k, s, p, cin, cout):
  x, kern = _data(h * w + k, (2, h, w, cin), (k, k, cin, cout))
  _check(layers.conv2d, x, kern, s, p)


def test_column_patch_is_the_shifted_windows():
  x = jnp.arange(2 * 3 * 9 * 5, dtype=jnp.float32).reshape(2, 3, 9, 5)
  got = conv_rows.column_patch(x, 4, 6)
  want = jnp.concatenate([x[:, :, j:j + 6] for j in range(4)], axis=-1)
  np.testing.assert_array_equal(got, want)


def test_seven_by_seven_lowerings_are_picked():
  assert conv_matmul.pick_s1((1, 70, 70, 36), (7, 7, 36, 64), jnp.float32) == 'rowcol'
  assert conv_matmul.pick_s1((1, 70, 70, 64), (7, 7, 64, 3), jnp.float32) == 'planar'


@pytest.mark.parametrize('h,w', [(8, 12), (7, 9)])  # even and odd output sizes
@pytest.mark.parametrize('grad', ['winograd', 'xla'])  # the input gradient's lowering
def test_winograd_agrees(monkeypatch, h, w, grad):
  monkeypatch.setattr(conv_matmul, 'WINOGRAD_MIN_CHANNELS', 4)
  monkeypatch.setattr(conv_matmul, 'WINOGRAD_MIN_TILES', 1)
  monkeypatch.setattr(conv_matmul, 'WINOGRAD_MIN_GRAD_TILES', 1 if grad == 'winograd' else 10 ** 6)
  assert conv_matmul.pick_s1((2, h + 2, w + 2, 8), (3, 3, 8, 20), jnp.float32) == 'winograd'
  assert conv_matmul._grads((2, h + 2, w + 2, 8), (3, 3, 8, 20), jnp.float32) == grad
  x, kern = _data(h, (2, h, w, 8), (3, 3, 8, 20))
  _check(layers.conv2d, x, kern, 1, 1)


def test_small_wide_three_by_three_runs_as_im2col(monkeypatch):
  """G1's residual convs on maps too small for Winograd: im2col, both gradients as matmuls."""
  assert conv_matmul.pick_s1((1, 10, 18, 1024), (3, 3, 1024, 1024), jnp.float32) == 'im2col'
  assert conv_matmul.pick_s1((1, 18, 34, 512), (3, 3, 512, 512), jnp.float32) == 'im2col'  # 128 tiles
  assert conv_matmul.pick_s1((1, 34, 66, 1024), (3, 3, 1024, 1024), jnp.float32) == 'winograd'
  assert conv_matmul.pick_s1((1, 18, 34, 256), (3, 3, 256, 256), jnp.float32) == 'winograd'
  assert conv_matmul.pick_s1((1, 10, 18, 256), (3, 3, 256, 256), jnp.float32) == 'xla'
  monkeypatch.setattr(conv_matmul, 'IM2COL3_MIN_CHANNELS', 6)
  x, kern = _data(3, (2, 5, 7, 6), (3, 3, 6, 9))
  assert conv_matmul.pick_s1((2, 7, 9, 6), kern.shape, jnp.float32) == 'im2col'
  assert conv_matmul._grads((2, 7, 9, 6), kern.shape, jnp.float32) == 'matmul'
  _check(layers.conv2d, x, kern, 1, 1)


@pytest.mark.parametrize('k,shape,patch_bytes', [
    (3, (2, 6, 9, 5), None),      # one piece: z at dy's pixels, shifted adds padded
    (4, (1, 11, 8, 3), None),
    (4, (2, 13, 7, 3), 2 << 10),  # banded over x's rows, k - 1 rows recomputed per band
    (3, (1, 9, 5, 4), 1 << 10),
])
def test_input_gradient_is_lax_vjp(monkeypatch, k, shape, patch_bytes):
  """input_grad (dy @ w^T, then col2im) equals lax's input gradient, whole or banded."""
  if patch_bytes:
    monkeypatch.setattr(conv_bands, 'PATCH_BYTES', patch_bytes)
  monkeypatch.setattr(conv_matmul, 'IM2COL3_MIN_CHANNELS', 1)  # small 3x3 convs as im2col too
  x, kern = _data(k, shape, (k, k, shape[-1], 6))
  conv = lambda x: jax.lax.conv_general_dilated(x, kern, (1, 1), 'VALID', precision='highest',
                                                dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  y, vjp = jax.vjp(conv, x)
  dy = jnp.asarray(np.random.default_rng(1).standard_normal(y.shape), jnp.float32)
  want = vjp(dy)[0]
  got = conv_matmul.input_grad(dy, kern, x.shape)
  np.testing.assert_allclose(got, want, rtol=0, atol=2e-6 * float(jnp.max(jnp.abs(want))))
  # The flipped, channel-swapped kernel is never built (its transpose was most of the cost).
  with lowering.using('matmul'):
    jaxpr = str(jax.make_jaxpr(jax.grad(lambda x: jnp.sum(conv_matmul.conv_s1(x, kern) ** 2)))(x))
  assert conv_matmul._grads(x.shape, kern.shape, jnp.float32) == 'matmul'
  assert 'rev[' not in jaxpr


def _dots(fn, x):
  """dot_generals in the jaxpr of ``fn``'s gradient (forward and backward passes)."""
  with lowering.using('matmul'):
    return str(jax.make_jaxpr(jax.grad(lambda x: jnp.sum(fn(x))))(x)).count('dot_general')


def test_loss_network_keeps_winograd_from_128_channels(monkeypatch):
  """64-channel 3x3 convs: Winograd's 16 matmuls in G, XLA's conv inside the VGG."""
  x, kern = _data(0, (1, 36, 36, 64), (3, 3, 64, 64))
  assert conv_matmul.pick_s1(x.shape, kern.shape, jnp.float32) == 'winograd'
  conv = lambda x: layers.conv2d(x, kern, 1, 1)
  assert _dots(conv, x) >= 16
  with lowering.winograd_from(conv_matmul.WINOGRAD_MIN_CHANNELS_LOSS_NET):
    assert _dots(conv, x) == 0
  picks = []
  pick = conv_matmul.pick_s1
  monkeypatch.setattr(conv_matmul, 'pick_s1', lambda *a: picks.append((a[1], pick(*a))) or picks[-1][1])
  net = vgg.VGG('vgg16')
  img = jnp.zeros((1, 32, 32, 3))
  params = net.init(jax.random.key(0), img)
  _dots(lambda img: sum(jnp.sum(f) for f in net.apply(params, img)), img)  # forward and backward
  assert ((3, 3, 64, 64), 'xla') in picks and ((3, 3, 128, 128), 'winograd') in picks
  assert all(kind != 'winograd' for w, kind in picks if min(w[2:]) < 128), picks


def test_banded_matmuls_agree(monkeypatch):
  """Patch matrices larger than PATCH_BYTES are built band by band."""
  monkeypatch.setattr(conv_bands, "PATCH_BYTES", 24 << 10)
  for k, s, p, cout in ((4, 1, 2, 20), (7, 1, 3, 2), (7, 1, 3, 20)):
    x, kern = _data(k + s, (1, 15, 11, 3), (k, k, 3, cout))
    _check(layers.conv2d, x, kern, s, p)
  x, kern = _data(5, (1, 6, 5, 4), (3, 3, 4, 3))
  _check(layers.conv_transpose2d, x, kern, 2, 1, 1)


@pytest.mark.parametrize('h,w,k,s,p,op', [(4, 6, 3, 2, 1, 1), (5, 3, 3, 2, 1, 1), (4, 4, 4, 2, 1, 0),
                                          (3, 5, 5, 3, 2, 1), (1, 1, 3, 2, 1, 1), (4, 6, 3, 2, 0, 0)])
def test_conv_transpose_lowerings_agree(h, w, k, s, p, op):
  x, kern = _data(h * 10 + k, (2, h, w, 3), (k, k, 3, 4))
  _check(layers.conv_transpose2d, x, kern, s, p, op)


def test_switch_resolves_per_backend(monkeypatch):
  monkeypatch.delenv(lowering.ENV, raising=False)
  cpu = jax.default_backend() == 'cpu'
  assert lowering.resolve(flops=1e12) == ('matmul' if cpu else 'xla')
  assert lowering.resolve(flops=1e3) == 'xla'   # tiny convs keep XLA's conv under 'auto'
  monkeypatch.setenv(lowering.ENV, 'xla')
  assert lowering.resolve() == 'xla'
  with lowering.using('matmul'):
    assert lowering.resolve(flops=1e3) == 'matmul'
  with pytest.raises(ValueError, match='not known'):
    lowering.resolve('cudnn')


def test_config_option_selects_the_lowering(monkeypatch):
  from conftest import tiny_model
  from hdgan_jax import config as config_lib, models
  monkeypatch.delenv(lowering.ENV, raising=False)
  try:
    models.make_generator(tiny_model(conv_lowering='xla'))
    assert lowering.resolve(flops=1e12) == 'xla'
    models.make_discriminator(tiny_model(conv_lowering='matmul'))
    assert lowering.resolve(flops=1e3) == 'matmul'
  finally:
    lowering.set_default('auto')
  c = config_lib.get_config()
  c.model.conv_lowering = 'cudnn'
  with pytest.raises(config_lib.ConfigError, match='conv_lowering'):
    config_lib.validate(c)


def _input_grad_channels(monkeypatch, fn, *args):
  """Channels of every strided conv's input gradient in ``fn``: XLA's (lhs-dilated) or phase-wise."""
  out = []
  phases = conv_strided.input_grad

  def recorded(dy, w, x_shape, s, p):
    out.append(x_shape[-1])
    return phases(dy, w, x_shape, s, p)
  monkeypatch.setattr(conv_strided, 'input_grad', recorded)
  for eqn in jax.make_jaxpr(fn)(*args).jaxpr.eqns:
    if eqn.primitive.name == 'conv_general_dilated' and tuple(eqn.params['lhs_dilation']) != (1, 1):
      out.append(eqn.outvars[0].aval.shape[-1])
  return out


def test_discriminator_takes_its_condition_apart(monkeypatch):
  """D(img, cond) is D(concat(cond, img)); on CPU only the image gets an input gradient."""
  d = models.MultiscaleDiscriminator(ndf=8, n_layers=2, num_D=2)
  r = np.random.default_rng(0)
  cond = jnp.asarray(r.random((1, 24, 32, 6)) < 0.3, jnp.float32)
  img = jnp.asarray(r.standard_normal((1, 24, 32, 3)), jnp.float32)
  params = d.init(jax.random.key(0), jnp.concatenate([cond, img], -1))
  score = lambda out: sum(jnp.sum(f * jnp.cos(jnp.arange(f.size).reshape(f.shape))) for s in out for f in s)
  joint = lambda p, img: score(d.apply(p, jnp.concatenate([cond, img], -1)))
  split = lambda p, img: score(d.apply(p, img, cond))
  for kind in ('xla', 'matmul'):
    with lowering.using(kind):
      want = jax.jit(jax.grad(joint, argnums=(0, 1)))(params, img)
      got = jax.jit(jax.grad(split, argnums=(0, 1)))(params, img)
      np.testing.assert_allclose(jax.jit(joint)(params, img), jax.jit(split)(params, img), rtol=1e-5)
      scale = max(float(jnp.max(jnp.abs(a))) for a in jax.tree_util.tree_leaves(want))
      for a, b in zip(jax.tree_util.tree_leaves(want), jax.tree_util.tree_leaves(got)):
        # one scale for all: biases before an instance norm have pure-rounding gradients
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-6 * scale)
  with lowering.using('matmul'):
    channels = _input_grad_channels(monkeypatch, jax.grad(split, argnums=1), params, img)
  assert 3 in channels and 9 not in channels and 6 not in channels, channels


def test_cook_toom_transforms_are_exact():
  """A^T [(G g) * (B^T d)] is the 2-output correlation of d with g, for both tile sizes."""
  r = np.random.default_rng(0)
  for k, (bt, g, at) in conv_winograd.TRANSFORMS.items():
    for _ in range(5):
      kern, d = r.standard_normal(k), r.standard_normal(k + 1)
      want = [d[i:i + k] @ kern for i in range(2)]
      np.testing.assert_allclose(at @ ((g @ kern) * (bt @ d)), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('h,w', [(8, 12), (7, 9)])  # even and odd output sizes
@pytest.mark.parametrize('grad_tiles,kgrad_tiles', [(1, 1), (1, 10 ** 6), (10 ** 6, 10 ** 6)])
def test_four_by_four_winograd_agrees(monkeypatch, h, w, grad_tiles, kgrad_tiles):
  """D's wide stride-1 4x4 convs: F(2x2, 4x4) forward and input gradient, Winograd or matmul kernel grad."""
  assert conv_matmul.pick_s1((1, 36, 68, 256), (4, 4, 256, 512), jnp.float32) == 'winograd'
  assert conv_matmul._grads((1, 36, 68, 256), (4, 4, 256, 512), jnp.float32) == 'winograd_matmul'
  assert conv_matmul.pick_s1((1, 21, 37, 128), (4, 4, 128, 256), jnp.float32) == 'im2col'
  monkeypatch.setattr(conv_matmul, 'WINOGRAD4_MIN_CHANNELS', 4)
  monkeypatch.setattr(conv_matmul, 'WINOGRAD4_MIN_TILES', 1)
  monkeypatch.setattr(conv_matmul, 'WINOGRAD4_MIN_GRAD_TILES', grad_tiles)
  monkeypatch.setattr(conv_matmul, 'WINOGRAD4_MIN_KGRAD_TILES', kgrad_tiles)
  x, kern = _data(h + w, (2, h, w, 6), (4, 4, 6, 10))
  xp_shape = (2, h + 4, w + 4, 6)  # layers.conv2d pads 2 on each side
  assert conv_matmul.pick_s1(xp_shape, kern.shape, jnp.float32) == 'winograd'
  assert conv_matmul._grads(xp_shape, kern.shape, jnp.float32) == (
      'winograd_matmul' if grad_tiles == 1 else 'matmul')
  _check(layers.conv2d, x, kern, 1, 2)
  # 25 matmuls each: the forward, the Winograd input gradient, the Winograd kernel gradient
  # (the per-tap kernel gradient has 16)
  passes = 1 + (grad_tiles == 1) + (grad_tiles == 1 and kgrad_tiles == 1)
  assert _dots(lambda x: layers.conv2d(x, kern, 1, 2), x) >= 25 * passes


@pytest.mark.parametrize('r', [3, 4])
@pytest.mark.parametrize('h,w', [(9, 12), (8, 7)])  # even and odd output sizes
def test_winograd_kernel_grad_equals_float64(r, h, w):
  """conv_winograd.kernel_grad is sum_p window(x, i, j)^T dy, against a float64 reference."""
  rng = np.random.default_rng(r * 100 + h)
  x = rng.standard_normal((2, h, w, 5)).astype(np.float32)
  dy = rng.standard_normal((2, h - r + 1, w - r + 1, 7)).astype(np.float32)
  got = jax.jit(conv_winograd.kernel_grad, static_argnums=2)(x, dy, r)
  want = np.stack([np.stack([np.einsum('nhwc,nhwo->co', x[:, i:i + dy.shape[1], j:j + dy.shape[2]]
                                       .astype(np.float64), dy.astype(np.float64))
                             for j in range(r)]) for i in range(r)])
  assert got.shape == want.shape
  np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize('first', [0.5, -0.0, np.inf, np.nan])
def test_after_is_exactly_x(first):
  """``after(x, dy)`` is x bit for bit where dy's first element is finite, else not finite."""
  x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 3, 4, 5)), jnp.float32)
  x = x.at[0, 0, 0, :2].set(jnp.asarray([-0.0, np.finfo(np.float32).max]))
  dy = jnp.full((2, 3, 4, 6), 1.0, jnp.bfloat16).at[0, 0, 0, 0].set(first)
  y = jax.jit(conv_defer.after)(x, dy)
  if np.isfinite(first):
    np.testing.assert_array_equal(np.asarray(y)[0, 0, 0, 1:], np.asarray(x)[0, 0, 0, 1:])
    np.testing.assert_array_equal(np.asarray(y).ravel()[5:], np.asarray(x).ravel()[5:])
    assert float(y[0, 0, 0, 0]) == 0.0  # -0 + 0 = +0: the only change, and it multiplies the same
  else:
    assert not np.isfinite(np.asarray(y)).any()


def test_kernel_gradients_do_not_keep_forward_windows(monkeypatch):
  """The deferral is what keeps the im2col windows out of the forward pass (XLA's temp).

  Three of G1's residual-style convs (3x3 on 512 channels at a small map: im2col
  forward, matmul gradients), then a larger stage whose backward pass comes
  first and sets the peak, as D's does in the train step. Without
  :func:`conv_defer.after` XLA keeps each conv's patch matrix (1.2 MB here) from
  the forward pass through that peak; with it they are built one at a time in
  the convs' own backward pass (2.6 patch matrices less temp when written).
  """
  x, w = _data(0, (1, 8, 8, 512), (3, 3, 512, 512))

  def loss(x, ws):
    for w in ws:
      x = jnp.maximum(layers.conv2d(x, w * 0.02, 1, 1), 0.0)
    z = jnp.tile(x, (1, 8, 8, 1))
    z = jnp.sin(z) * z
    return jnp.sum(z * jnp.cos(z))

  def temp():
    with lowering.using('matmul'):
      c = jax.jit(jax.grad(loss, argnums=1)).lower(x, [w, w * 0.5, w * 0.25]).compile()
    return c.memory_analysis().temp_size_in_bytes

  deferred = temp()
  monkeypatch.setattr(conv_defer, 'after', lambda x, dy: x)
  jax.clear_caches()  # conv_s1's jit would hand back the backward pass traced above
  kept = temp()
  patch = 8 * 8 * 9 * 512 * 4
  assert deferred + 2 * patch <= kept, (deferred, kept)
