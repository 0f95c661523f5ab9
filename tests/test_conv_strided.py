"""Strided convs' phase-wise gradients (CPU lowering) equal lax's, for every kind and shape."""

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hdgan_jax.models import conv_bands, conv_defer, conv_strided

_DN = ('NHWC', 'HWIO', 'NHWC')


def _lax_grads(x, w, s, p, dy):
  conv = lambda x, w: jax.lax.conv_general_dilated(x, w, (s, s), ((p, p),) * 2,
                                                   precision='highest', dimension_numbers=_DN)
  return jax.vjp(conv, x, w)[1](dy)


def _numpy_grads(x, w, s, p, dy):
  """Both gradients in float64 from the definition, tap by tap.

  XLA's own transposed conv is no reference at every geometry: at width 1 with
  k=2, s=2, p=1 XLA:CPU aborts while compiling it.
  """
  x, w, dy = (np.asarray(a, np.float64) for a in (x, w, dy))
  k, oh, ow = w.shape[0], dy.shape[1], dy.shape[2]
  xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
  dxp, dw = np.zeros_like(xp), np.zeros_like(w)
  for i in range(k):
    for j in range(k):
      rows, cols = slice(i, i + s * (oh - 1) + 1, s), slice(j, j + s * (ow - 1) + 1, s)
      dw[i, j] = np.einsum('nhwc,nhwo->co', xp[:, rows, cols], dy)
      dxp[:, rows, cols] += np.einsum('nhwo,co->nhwc', dy, w[i, j])
  return dxp[:, p:p + x.shape[1], p:p + x.shape[2]], dw


def _data(seed, x_shape, k, cout, s, p):
  r = np.random.default_rng(seed)
  x = jnp.asarray(r.standard_normal(x_shape), jnp.float32)
  w = jnp.asarray(r.standard_normal((k, k, x_shape[-1], cout)) * 0.1, jnp.float32)
  oh = (x_shape[1] + 2 * p - k) // s + 1
  ow = (x_shape[2] + 2 * p - k) // s + 1
  dy = jnp.asarray(r.standard_normal((x_shape[0], oh, ow, cout)), jnp.float32)
  return x, w, dy


def _close(got, want, name):
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  scale = float(np.max(np.abs(want))) or 1.0
  err = float(np.max(np.abs(got - want))) / scale
  assert got.shape == want.shape, name
  assert err <= 2e-6, f'{name}: relative error {err:.2e}'


@pytest.mark.parametrize('dx_kind', ['phases', 'xla'])
@pytest.mark.parametrize('dw_kind', ['shifted', 'xla'])
@pytest.mark.parametrize('h,w,k,s,p', [
    (9, 13, 4, 2, 2),   # D's downsampling convs (k % s == 0), odd sizes
    (8, 10, 3, 2, 1),   # G's and E's: the kernel zero-padded to 4x4
    (11, 7, 5, 3, 2),   # stride 3, kernel padded to 6x6
])
def test_custom_vjp_equals_lax(monkeypatch, dx_kind, dw_kind, h, w, k, s, p):
  """``conv`` under jax.grad: forward and both gradients as lax's, for each gradient kind."""
  monkeypatch.setattr(conv_strided, 'grad_kinds', lambda *a: (dx_kind, dw_kind))
  x, kern, dy = _data(h * w + k, (2, h, w, 5), k, 6, s, p)
  y, vjp = jax.vjp(lambda x, w: conv_strided.conv(x, w, s, p), x, kern)
  want_y = jax.lax.conv_general_dilated(x, kern, (s, s), ((p, p),) * 2, dimension_numbers=_DN)
  _close(y, want_y, 'y')
  for name, got, want in zip(('dx', 'dw'), jax.jit(vjp)(dy), _lax_grads(x, kern, s, p, dy)):
    _close(got, want, name)
  for name, got, want in zip(('dx', 'dw'), jax.jit(vjp)(dy), _numpy_grads(x, kern, s, p, dy)):
    _close(got, want, name)


@hypothesis.settings(deadline=None, max_examples=40)
@hypothesis.given(h=st.integers(1, 12), w=st.integers(1, 12), k=st.integers(1, 5),
                  s=st.integers(2, 3), p=st.integers(0, 2), cin=st.integers(1, 4),
                  n=st.integers(1, 2), patch=st.sampled_from([None, 600]))
def test_phase_gradients_property(h, w, k, s, p, cin, n, patch):
  """input_grad and kernel_grad equal lax's for any geometry, whole or banded over rows."""
  hypothesis.assume(h + 2 * p >= k and w + 2 * p >= k)
  x, kern, dy = _data(h + 13 * w, (n, h, w, cin), k, 3, s, p)
  want_dx, want_dw = _numpy_grads(x, kern, s, p, dy)
  orig = conv_bands.PATCH_BYTES
  conv_bands.PATCH_BYTES = patch or orig  # bands of one or two dy rows
  try:
    # a fresh function per example: a shared one would reuse a trace banded (or not) before
    got_dw = jax.jit(lambda x, dy: conv_strided.kernel_grad(x, dy, k, s, p))(x, dy)
  finally:
    conv_bands.PATCH_BYTES = orig
  got_dx = jax.jit(lambda dy, w: conv_strided.input_grad(dy, w, x.shape, s, p))(dy, kern)
  _close(got_dx, want_dx, 'dx')
  _close(got_dw, want_dw, 'dw')


def test_kernel_gradient_reads_x_after_dy(monkeypatch):
  """The space-to-depth copy of ``x`` waits for ``dy`` (conv_defer.after), not built in the forward."""
  seen = []
  monkeypatch.setattr(conv_defer, 'after', lambda x, dy: seen.append((x.shape, dy.shape)) or x)
  x, kern, dy = _data(0, (1, 9, 9, 4), 4, 5, 2, 2)
  conv_strided.kernel_grad(x, dy, 4, 2, 2)
  assert seen == [((1, 9, 9, 4), (1, 5, 5, 5))]


def test_grad_kinds_follow_the_measurements():
  """The table in grad_kinds' docstring, at the 256x512 model's shapes."""
  kinds = lambda x, w, s=2, p=2: conv_strided.grad_kinds(x, w, s, p)
  assert kinds((1, 129, 257, 64), (4, 4, 64, 128)) == ('phases', 'shifted')   # D layer 1
  assert kinds((1, 65, 129, 128), (4, 4, 128, 256)) == ('phases', 'shifted')  # D layer 2
  assert kinds((1, 256, 512, 3), (4, 4, 3, 64)) == ('phases', 'xla')          # D's image part
  assert kinds((1, 33, 65, 128), (4, 4, 128, 256)) == ('phases', 'xla')       # small map
  assert kinds((1, 256, 512, 32), (3, 3, 32, 64), p=1) == ('phases', 'shifted')  # G's down_0
  assert kinds((1, 128, 256, 16), (3, 3, 16, 32), p=1) == ('phases', 'xla')   # under 1 GFLOP
  assert kinds((1, 32, 64, 256), (3, 3, 256, 512), p=1) == ('xla', 'xla')     # G's down_3


@pytest.mark.parametrize('k,s,p,op', [(3, 2, 1, 1), (3, 2, 1, 0), (4, 2, 1, 0), (3, 3, 0, 2)])
@pytest.mark.parametrize('phases,shifted', [(True, False), (False, True), (True, True)])
def test_transposed_conv_equals_lax(monkeypatch, k, s, p, op, phases, shifted):
  """conv_transpose (phase-wise or XLA's forward; per-tap or shifted kernel gradient) and both
  gradients equal lax's, in float64."""
  monkeypatch.setattr(conv_strided, 'phases_win', lambda *a: phases)
  monkeypatch.setattr(conv_strided, 'TRANSPOSED_SHIFTED_MIN_PIXELS', 0 if shifted else 1 << 40)
  monkeypatch.setattr(conv_strided, 'TRANSPOSED_BAND_BYTES', 1024)  # several bands when shifted
  r = np.random.default_rng(k * 10 + op)
  x = jnp.asarray(r.standard_normal((2, 5, 7, 4)), jnp.float32)
  kern = jnp.asarray(r.standard_normal((k, k, 4, 6)) * 0.1, jnp.float32)  # (k, k, in, out)
  y, vjp = jax.vjp(lambda x, w: conv_strided.conv_transpose(x, w, s, p, op), x, kern)
  # The transposed conv is the adjoint of the strided conv of its output: the float64 reference.
  dy = np.asarray(r.standard_normal(y.shape))
  want_y, _ = _numpy_grads(np.zeros(y.shape), np.asarray(kern).transpose(0, 1, 3, 2), s, p, np.asarray(x))
  _close(y, want_y, 'y')
  got_dx, got_dw = jax.jit(vjp)(jnp.asarray(dy, jnp.float32))
  xp = np.pad(dy, ((0, 0), (p, p), (p, p), (0, 0)))
  oh, ow = x.shape[1], x.shape[2]
  want_dx = sum(np.einsum('nhwo,oc->nhwc', xp[:, i:i + s * (oh - 1) + 1:s, j:j + s * (ow - 1) + 1:s],
                          np.asarray(kern, np.float64)[i, j].T) for i in range(k) for j in range(k))
  _close(got_dx, want_dx, 'dx')
  _, want_dw = _numpy_grads(dy, np.asarray(kern).transpose(0, 1, 3, 2), s, p, np.asarray(x))
  _close(got_dw, want_dw.transpose(0, 1, 3, 2), 'dw')


def test_channel_major_is_the_transpose_exactly():
  """The identity matmul moves channels first bit for bit (finite inputs, any magnitude)."""
  r = np.random.default_rng(3)
  a = r.standard_normal((2, 5, 7, 9)) * np.exp(r.uniform(-30, 30, (2, 5, 7, 9)))
  a = jnp.asarray(a, jnp.float32)
  got = jax.jit(conv_defer.channel_major)(a)
  np.testing.assert_array_equal(np.asarray(got), np.asarray(a).transpose(3, 0, 1, 2))
