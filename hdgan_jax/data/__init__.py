"""Real-data input pipeline: sources, preprocessing, grain loading, tfds packing, checks.

Stable API (the trainer's entry points) lives in :mod:`hdgan_jax.data.pipeline`:
``make_train_iterator``, ``make_eval_examples``, ``dataset_size``,
``requires_no_instance`` and ``load_pair``; the start-of-run data check is
:func:`hdgan_jax.data.check.run_checks`. Modules: ``sources`` (layouts and
decoding), ``palette`` (colour-coded label maps), ``preprocess`` (the
original's resize/crop/flip), ``build`` (tfds ArrayRecord packing), ``check``
and ``demo`` (built-in synthetic scenes). Submodules are imported on use so
that ``import hdgan_jax.data`` stays light in grain worker processes.
"""

from hdgan_jax.data.sources import DataError

__all__ = ['DataError']
