"""Converted NVIDIA weights reproduce NVIDIA's outputs (vectors in tests/data).

The network tests run under both conv lowerings: plain XLA convs (GPU, TPU)
and the CPU matmul rewrites, forced here for every conv size.
"""

import numpy as np
import pytest

from conftest import ref, ref_state_dict, tiny_model
from hdgan_jax import convert, models
from hdgan_jax.models import lowering

TOL = 1e-4


@pytest.fixture(params=['xla', 'matmul'])
def conv_lowering(request):
  with lowering.using(request.param):
    yield request.param


def test_edges_and_encoded_input_match_original():
  z = ref('inputs_edges.npz')
  edges = np.asarray(models.instance_edges(z['inst']))
  assert edges.shape == z['edges'].shape
  np.testing.assert_array_equal(edges, z['edges'])
  enc = models.encode_input(z['label'], z['inst'], tiny_model(label_nc=5))
  np.testing.assert_array_equal(np.asarray(enc), z['encoded'])


def test_global_generator_parity(conv_lowering):
  z = ref('global_G.npz')
  cfg = tiny_model(netG='global', ngf=int(z['ngf']), n_downsample_global=int(z['n_downsample_global']),
                   n_blocks_global=int(z['n_blocks_global']))
  v = convert.from_pix2pixhd(ref_state_dict(z), 'G', cfg)
  y = np.asarray(models.make_generator(cfg).apply(v, z['x']))
  assert y.shape == z['y'].shape
  assert np.abs(y - z['y']).max() <= TOL


def test_local_enhancer_parity_with_two_enhancers(conv_lowering):
  z = ref('local_G.npz')
  cfg = tiny_model(netG='local', ngf=int(z['ngf']), n_downsample_global=int(z['n_downsample_global']),
                   n_blocks_global=int(z['n_blocks_global']),
                   n_local_enhancers=int(z['n_local_enhancers']), n_blocks_local=int(z['n_blocks_local']))
  v = convert.from_pix2pixhd(ref_state_dict(z), 'G', cfg)
  y = np.asarray(models.make_generator(cfg).apply(v, z['x']))
  assert np.abs(y - z['y']).max() <= TOL


def test_multiscale_discriminator_parity_every_feature(conv_lowering):
  z = ref('multiscale_D.npz')
  cfg = tiny_model(ndf=int(z['ndf']), n_layers_D=int(z['n_layers_D']), num_D=int(z['num_D']))
  v = convert.from_pix2pixhd(ref_state_dict(z), 'D', cfg)
  out = models.make_discriminator(cfg).apply(v, z['x'])
  assert len(out) == cfg.num_D
  for i, scale in enumerate(out):
    assert len(scale) == cfg.n_layers_D + 2
    for j, f in enumerate(scale):
      want = z[f'out_{i}_{j}']
      assert f.shape == want.shape, (i, j)
      assert np.abs(np.asarray(f) - want).max() <= TOL, (i, j)


def test_encoder_pooled_parity(conv_lowering):
  z = ref('encoder.npz')
  cfg = tiny_model(nef=int(z['nef']), n_downsample_E=int(z['n_downsample_E']),
                   feat_num=int(z['feat_num']))
  v = convert.from_pix2pixhd(ref_state_dict(z), 'E', cfg)
  y = np.asarray(models.make_encoder(cfg).apply(v, z['image'], z['inst']))
  assert np.abs(y - z['y']).max() <= TOL


@pytest.mark.parametrize('dtype', ['bfloat16'])
def test_low_precision_compute_stays_close(dtype):
  z = ref('global_G.npz')
  cfg = tiny_model(netG='global', ngf=8, n_downsample_global=2, n_blocks_global=2, dtype=dtype)
  v = convert.from_pix2pixhd(ref_state_dict(z), 'G', cfg)
  y = np.asarray(models.make_generator(cfg).apply(v, z['x']), np.float32)
  assert np.abs(y - z['y']).max() < 0.1


CONV_CASES = [(8, 12, 3, 2, 1), (7, 9, 3, 2, 1), (16, 32, 4, 2, 2), (5, 9, 4, 2, 2), (3, 5, 4, 2, 2),
              (9, 17, 4, 1, 2), (8, 8, 7, 1, 0), (10, 11, 5, 3, 2), (1, 1, 4, 2, 2)]


@pytest.mark.parametrize('h,w,k,s,p', CONV_CASES)
def test_space_to_depth_conv_equals_strided_conv(h, w, k, s, p):
  import jax
  from hdgan_jax.models import layers
  r = np.random.default_rng(h * 100 + w)
  x = r.standard_normal((2, h, w, 3)).astype(np.float32)
  kern = r.standard_normal((k, k, 3, 4)).astype(np.float32)
  want = jax.lax.conv_general_dilated(x, kern, (s, s), ((p, p), (p, p)),
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  got = layers.conv2d(x, kern, s, p)
  assert got.shape == want.shape
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=2e-5)


@pytest.mark.parametrize('h,w,k,s,p,op', [(4, 6, 3, 2, 1, 1), (5, 3, 3, 2, 1, 1), (4, 4, 4, 2, 1, 0),
                                          (3, 5, 5, 3, 2, 1), (1, 1, 3, 2, 1, 1), (4, 6, 3, 2, 0, 0)])
def test_phase_conv_transpose_equals_dilated_form(h, w, k, s, p, op):
  import jax
  from hdgan_jax.models import layers
  r = np.random.default_rng(h * 10 + k)
  x = r.standard_normal((2, h, w, 3)).astype(np.float32)
  kern = r.standard_normal((k, k, 3, 4)).astype(np.float32)
  lo = k - 1 - p
  want = jax.lax.conv_general_dilated(x, kern[::-1, ::-1], (1, 1), ((lo, lo + op), (lo, lo + op)),
                                      lhs_dilation=(s, s), dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  got = layers.conv_transpose2d(x, kern, s, p, op)
  assert got.shape == want.shape
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=2e-5)
