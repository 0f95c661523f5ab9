r"""Convert weights between NVIDIA's pix2pixHD and hdgan_jax.

Commands (the first argument):
  check   report how an original state_dict fits a config (missing, unexpected,
          mis-shaped keys); exits 1 if it does not fit.
  import  original .pth/.npz state_dict -> hdgan_jax variables (.npz).
  export  hdgan_jax variables (.npz) -> original state_dict (.pth with torch, or .npz).
  vgg19   torchvision vgg19-dcbb9e9d.pth or Keras VGG19 .h5 -> perceptual-loss weights
          (checks the file's SHA-256/MD5; no --config needed).
  pth2npz any .pth state_dict -> .npz (numpy only), for machines without torch.

Examples:
  python -m hdgan_jax.convert vgg19 --from=vgg19-dcbb9e9d.pth --out=third_party_weights/vgg19.npz
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
import jax
from ml_collections import config_flags

# Importing the package (``hdgan_jax.convert``) already loads jax and the models, so
# nothing is gained by importing these late.
from hdgan_jax import convert, models
from hdgan_jax.convert import io, pix2pixhd, vgg

COMMANDS = ('check', 'import', 'export', 'vgg19', 'pth2npz')

config_flags.DEFINE_config_file('config', None, 'Experiment config file (its model options are used).')
flags.DEFINE_enum('net', 'G', ['G', 'D', 'E'], 'Which network the weights belong to.')
flags.DEFINE_string('from', None, 'Input weight file.')
flags.DEFINE_string('out', None, 'Output weight file.')
flags.DEFINE_bool('strict', True, 'Refuse any missing/unexpected/mis-shaped key. '
                  '--nostrict loads what fits into freshly initialised weights.')
flags.DEFINE_integer('seed', 0, 'Seed for the weights --nostrict initialises.')
flags.DEFINE_bool('allow_unverified', False, 'vgg19: convert a file whose hash is not the official one.')
FLAGS = flags.FLAGS


def _usage(msg: str) -> None:
  raise app.UsageError(f'{msg}\n\n{__doc__}')


def main(argv):
  if len(argv) != 2 or argv[1] not in COMMANDS:
    _usage(f'give one command out of {COMMANDS}')
  command, src = argv[1], FLAGS['from'].value
  if command == 'vgg19':
    return _vgg19(src)
  if command == 'pth2npz':
    return _pth2npz(src)
  if FLAGS.config is None:
    _usage('--config is required (an experiment file such as experiments/cityscapes.py)')
  if not src:
    _usage('--from is required')
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


def _pth2npz(src):
  if not src or not FLAGS.out:
    _usage('pth2npz needs --from and --out')
  try:
    sd = io.load_state_dict(src)
    io.save_state_dict(sd, FLAGS.out)
  except io.WeightFileError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(f'wrote {len(sd)} tensors to {FLAGS.out}')
  return 0


def _vgg19(src):
  if not src or not FLAGS.out:
    _usage('vgg19 needs --from and --out')
  try:
    sha = vgg.convert_vgg19(src, FLAGS.out, allow_unverified=FLAGS.allow_unverified)
  except io.WeightFileError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(f'{src}: sha256 {sha}\nwrote {FLAGS.out}')
  return 0


if __name__ == '__main__':
  app.run(main)
