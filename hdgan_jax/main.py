r"""hdgan_jax entry point: train, generate, or encode instance features.

  python -m hdgan_jax.main --config=experiments/cityscapes.py --workdir=runs/city
  python -m hdgan_jax.main --config=experiments/demo.py --workdir=runs/demo \
      --mode=generate --labels=path/to/labels --instances=path/to/insts --out=results
  python -m hdgan_jax.main --config=experiments/demo.py --workdir=runs/demo --mode=encode_features

Any config field can be overridden: --config.model.ngf=32 --config.batch_size=8.
Unknown keys are rejected.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

config_flags.DEFINE_config_file('config', None, 'Experiment config file (experiments/*.py).',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Run directory: checkpoints, samples, logs.')
flags.DEFINE_enum('mode', 'train', ['train', 'generate', 'encode_features'], 'What to do.')
flags.DEFINE_string('labels', None, 'generate: a label-id PNG or a folder of them.')
flags.DEFINE_string('instances', None, 'generate: instance PNG(s) matching --labels (same names).')
flags.DEFINE_string('out', None, 'generate: output folder (default WORKDIR/generated).')
flags.DEFINE_integer('num_samples', 1, 'generate: diverse outputs per label map (use_features).')
flags.DEFINE_string('styles', None, 'generate: JSON {instance id: cluster index} for chosen styles.')
flags.DEFINE_integer('seed', 0, 'generate: seed for sampling styles.')
flags.mark_flags_as_required(['config', 'workdir'])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.INFO)
  config = FLAGS.config
  if FLAGS.mode == 'train':
    from hdgan_jax import train  # pylint: disable=import-outside-toplevel
    train.train_and_evaluate(config, FLAGS.workdir)
  elif FLAGS.mode == 'generate':
    from hdgan_jax import generate  # pylint: disable=import-outside-toplevel
    if not FLAGS.labels:
      raise app.UsageError('--mode=generate needs --labels (a PNG or a folder)')
    generate.generate(config, FLAGS.workdir, labels=FLAGS.labels, instances=FLAGS.instances,
                      out=FLAGS.out, num_samples=FLAGS.num_samples, styles=FLAGS.styles,
                      seed=FLAGS.seed)
  else:
    from hdgan_jax import generate  # pylint: disable=import-outside-toplevel
    generate.encode_features(config, FLAGS.workdir)


def parse_flags(argv):
  """absl flag parsing that turns a bad --config.* override into one clear line."""
  try:
    return FLAGS(argv)
  except flags.Error as e:
    sys.exit(f'error: {e}\nRun with --help for the flags.')
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    detail = str(e).replace('\\n', ' ').replace('\n', ' ').replace("\\'", '').replace("'", '')
    sys.exit(f'error: bad --config override ({detail}). Fields and defaults: '
             'hdgan_jax/config.py and the experiment file.')


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
