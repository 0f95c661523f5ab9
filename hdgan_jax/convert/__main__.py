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

A bad argument or weight file is one ``error:`` line (exit status 1; --verbose
adds the traceback). ``.pth`` files are read with ``torch.load(weights_only=True)``
only: a file that fails is reported, never retried as a full pickle.
"""

from absl import flags
import jax
from ml_collections import config_flags

# Importing the package (``hdgan_jax.convert``) already loads jax and the models, so
# nothing is gained by importing these late.
from hdgan_jax import console, convert, models
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
flags.DEFINE_bool('verbose', False, 'Library logs and tracebacks on the terminal.')
FLAGS = flags.FLAGS


class UsageProblem(ValueError):
  """A missing or wrong command-line argument; shown as one line with where to look."""


def _need(ok, msg: str) -> None:
  if not ok:
    raise UsageProblem(f'{msg} (python -m hdgan_jax.convert --help shows the commands and '
                       'flags)')


def _convert(argv) -> int:
  """Runs one command; returns the exit status (check: 1 when the weights do not fit)."""
  _need(len(argv) == 2 and argv[1] in COMMANDS,
        f'give one command out of {", ".join(COMMANDS)}, got {" ".join(argv[1:]) or "none"}')
  command, src = argv[1], FLAGS['from'].value
  if command == 'vgg19':
    return _vgg19(src)
  if command == 'pth2npz':
    return _pth2npz(src)
  _need(FLAGS.config is not None, f'{command} needs --config (an experiment file such as '
        'experiments/cityscapes.py)')
  _need(src, f'{command} needs --from (the weight file to read)')
  cfg = FLAGS.config.model
  if command in ('check', 'import'):
    sd = io.load_state_dict(src)
    report = convert.Report(FLAGS.net)
    if command == 'check':
      convert.from_pix2pixhd(sd, FLAGS.net, cfg, strict=False,
                             base=pix2pixhd.abstract_variables(FLAGS.net, cfg), report=report)
      print(report)
      return 0 if report.ok else 1
    _need(FLAGS.out, 'import needs --out (the .npz to write)')
    base = None
    if not FLAGS.strict:
      base = models.init_variables(FLAGS.net, cfg, jax.random.PRNGKey(FLAGS.seed))
    variables = convert.from_pix2pixhd(sd, FLAGS.net, cfg, strict=FLAGS.strict,
                                       base=base, report=report)
    io.save_variables(variables, FLAGS.out)
    print(report)
    print(f'wrote {FLAGS.out}')
    return 0
  _need(FLAGS.out, 'export needs --out (the .pth or .npz to write)')
  sd = convert.to_pix2pixhd(io.load_variables(src), FLAGS.net, cfg)
  io.save_state_dict(sd, FLAGS.out)
  print(f'wrote {len(sd)} tensors to {FLAGS.out}')
  return 0


def _pth2npz(src) -> int:
  _need(src and FLAGS.out, 'pth2npz needs --from and --out')
  sd = io.load_state_dict(src)
  io.save_state_dict(sd, FLAGS.out)
  print(f'wrote {len(sd)} tensors to {FLAGS.out}')
  return 0


def _vgg19(src) -> int:
  _need(src and FLAGS.out, 'vgg19 needs --from and --out')
  sha = vgg.convert_vgg19(src, FLAGS.out, allow_unverified=FLAGS.allow_unverified)
  print(f'{src}: sha256 {sha}\nwrote {FLAGS.out}')
  return 0


def main(argv) -> int:
  console.setup_tool(FLAGS.verbose)
  status = []
  console.run_cli(lambda: status.append(_convert(argv)))
  return status[0]


def run() -> None:
  """Console script ``hdgan-convert``."""
  console.run_tool(main)


if __name__ == '__main__':
  run()
