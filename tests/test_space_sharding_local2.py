"""Local G with 2 enhancers split over 8 devices: the same losses as 1 device.

The global part runs at a quarter of the height (16 rows, 2 per device) and
the coarsest maps are shorter than the 'space' axis, so they are kept whole
while the finer ones are split. Runs in its own 8-device subprocess
(tests/space_sharding_case.py).
"""

from space_sharding_case import check_case, run_case


def test_local_generator_with_two_enhancers_split_over_8_devices_equals_unsharded():
  check_case(run_case(dict(netG='local', n_local_enhancers=2, n_downsample_global=1, num_D=1),
                      mesh=(1, 8)), min_constraints=20)
