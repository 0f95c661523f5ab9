"""Global G, one image split over 8 devices along its height: the same losses as 1 device.

The 'space' axis holds all 8 devices, so every activation band is 8 rows of a
64-row image; the discriminator runs at 2 scales, so the average-pooled
pyramid between them is split too. Runs in its own 8-device subprocess
(tests/space_sharding_case.py).
"""

from space_sharding_case import check_case, run_case


def test_global_generator_split_over_8_devices_equals_unsharded():
  check_case(run_case(dict(netG='global', num_D=2), mesh=(1, 8)), min_constraints=20)
