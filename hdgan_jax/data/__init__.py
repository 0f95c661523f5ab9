"""Real-data input pipeline: sources, preprocessing, grain loading, tfds packing, checks.

Stable API (the trainer's entry points) lives in :mod:`hdgan_jax.data.pipeline`:
``make_train_iterator``, ``make_eval_examples``, ``dataset_size``,
``requires_no_instance`` and ``load_pair``; the start-of-run data check is
:func:`hdgan_jax.data.check.run_checks`.

Modules, leaves first (each imports only modules above it, at the top):

* ``errors`` (:class:`DataError`) and ``cityscapes`` (Cityscapes' label table):
  no project imports;
* ``palette`` (colour-coded label maps), ``preprocess`` (the original's
  resize/crop/flip), ``demo`` (built-in synthetic scenes), ``decode`` (one
  file -> numpy, using the model's label-id check);
* ``tfds_source`` (reading prepared tfds datasets), then ``sources`` (file
  layouts and the source registry) and ``user_files`` (a user's maps for
  generation);
* ``pipeline`` (grain), then ``check`` (the data check) and ``build`` (tfds
  ArrayRecord packing);
* ``cli``: command-line plumbing (one-line errors, ``--verbose``) shared by
  the ``check``, ``build``, ``convert`` and ``edit`` commands.

Label and instance maps must be lossless (PNG, BMP, TIFF): JPEG maps are
refused wherever they are read, unless ``data.allow_lossy_maps`` (see ``decode``).

The package itself imports only ``errors``, so ``import hdgan_jax.data`` stays light.
"""

from hdgan_jax.data.errors import DataError

__all__ = ['DataError']
