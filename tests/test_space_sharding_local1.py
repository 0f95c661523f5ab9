"""Local G (1 enhancer) with the instance feature encoder E on a 2 x 4 (data, space) mesh.

Two images, one per 'data' device pair, each split into 4 bands of rows: E's
per-instance average pooling and the enhancer must give the 1-device losses.
Runs in its own 8-device subprocess (tests/space_sharding_case.py).
"""

from space_sharding_case import check_case, run_case


def test_local_generator_with_encoder_on_data_and_space_equals_unsharded():
  check_case(run_case(dict(netG='local', n_local_enhancers=1, use_features=True, num_D=1),
                      mesh=(2, 4), batch=2), min_constraints=20)
