"""hdgan_jax sets XLA:CPU's flags on import, only where jaxlib knows them."""

import os

from hdgan_jax import xla_cpu


def test_flags_are_appended_for_a_tested_jaxlib(monkeypatch):
  monkeypatch.setattr(xla_cpu, '_jaxlib_version', lambda: xla_cpu.TESTED[0])
  env = {'XLA_FLAGS': '--xla_force_host_platform_device_count=8'}
  assert xla_cpu.apply(env) == xla_cpu.FLAGS
  assert env['XLA_FLAGS'].split() == ['--xla_force_host_platform_device_count=8', *xla_cpu.FLAGS]
  assert xla_cpu.apply(env) == ()  # idempotent


def test_users_flags_and_opt_out_win(monkeypatch):
  monkeypatch.setattr(xla_cpu, '_jaxlib_version', lambda: xla_cpu.TESTED[0])
  mine = '--xla_cpu_experimental_ynn_fusion_type=individual_dot'
  env = {'XLA_FLAGS': mine}
  assert xla_cpu.apply(env) == () and env['XLA_FLAGS'] == mine
  env = {xla_cpu.ENV: '0'}
  assert xla_cpu.apply(env) == () and 'XLA_FLAGS' not in env


def test_unknown_jaxlib_is_left_alone(monkeypatch):
  """XLA aborts at start-up on a flag it does not know, so untested versions get none."""
  monkeypatch.setattr(xla_cpu, '_jaxlib_version', lambda: (99, 0))
  env = {}
  assert xla_cpu.apply(env) == () and env == {}


def test_this_process_got_them_before_jax_started():
  if xla_cpu._jaxlib_version() in xla_cpu.TESTED:
    assert all(f in os.environ.get('XLA_FLAGS', '') for f in xla_cpu.FLAGS)
