r"""Convert weights between NVIDIA's pix2pixHD and hdgan_jax.

Commands (the first argument):
  check   report how an original state_dict fits a config (missing, unexpected,
          mis-shaped keys); exits 1 if it does not fit.
  import  original .pth/.npz state_dict -> hdgan_jax variables (.npz).
  export  hdgan_jax variables (.npz) -> original state_dict (.pth with torch, or .npz).

Examples:
  python -m hdgan_jax.convert import --config=experiments/cityscapes.py \
      --net=G --from=checkpoints/label2city_1024p/latest_net_G.pth --out=G.npz
  python -m hdgan_jax.convert export --config=experiments/cityscapes.py \
      --net=G --from=G.npz --out=latest_net_G.pth
  # trained global G into a local G (progressive training), keeping the rest:
  python -m hdgan_jax.convert import --config=experiments/cityscapes.py \
      --net=G --from=global_G.pth --out=G.npz --nostrict
"""

import sys

from absl import app, flags
from ml_collections import config_flags

COMMANDS = ('check', 'import', 'export')

config_flags.DEFINE_config_file('config', None, 'Experiment config file (its model options are used).')
flags.DEFINE_enum('net', 'G', ['G', 'D', 'E'], 'Which network the weights belong to.')
flags.DEFINE_string('from', None, 'Input weight file.')
flags.DEFINE_string('out', None, 'Output weight file.')
flags.DEFINE_bool('strict', True, 'Refuse any missing/unexpected/mis-shaped key. '
                  '--nostrict loads what fits into freshly initialised weights.')
flags.DEFINE_integer('seed', 0, 'Seed for the weights --nostrict initialises.')
FLAGS = flags.FLAGS


def _usage(msg: str) -> None:
  raise app.UsageError(f'{msg}\n\n{__doc__}')


def main(argv):
  if len(argv) != 2 or argv[1] not in COMMANDS:
    _usage(f'give one command out of {COMMANDS}')
  command, src = argv[1], FLAGS['from'].value
  if FLAGS.config is None:
    _usage('--config is required (an experiment file such as experiments/cityscapes.py)')
  if not src:
    _usage('--from is required')
  import jax  # pylint: disable=import-outside-toplevel
  from hdgan_jax import convert, models  # pylint: disable=import-outside-toplevel
  from hdgan_jax.convert import io  # pylint: disable=import-outside-toplevel
  from hdgan_jax.convert import pix2pixhd  # pylint: disable=import-outside-toplevel
  cfg = FLAGS.config.model
  try:
    if command in ('check', 'import'):
      sd = io.load_state_dict(src)
      report = convert.Report(FLAGS.net)
      if command == 'check':
        convert.from_pix2pixhd(sd, FLAGS.net, cfg, strict=False,
                               base=pix2pixhd.abstract_variables(FLAGS.net, cfg), report=report)
        print(report)
        return 0 if report.ok else 1
      if not FLAGS.out:
        _usage('--out is required')
      base = None
      if not FLAGS.strict:
        base = models.init_variables(FLAGS.net, cfg, jax.random.PRNGKey(FLAGS.seed))
      variables = convert.from_pix2pixhd(sd, FLAGS.net, cfg, strict=FLAGS.strict,
                                         base=base, report=report)
      io.save_variables(variables, FLAGS.out)
      print(report)
      print(f'wrote {FLAGS.out}')
    else:
      if not FLAGS.out:
        _usage('--out is required')
      sd = convert.to_pix2pixhd(io.load_variables(src), FLAGS.net, cfg)
      io.save_state_dict(sd, FLAGS.out)
      print(f'wrote {len(sd)} tensors to {FLAGS.out}')
  except (io.WeightFileError, convert.CheckpointMismatchError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  app.run(main)
