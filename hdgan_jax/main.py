r"""hdgan_jax entry point: train, generate, or encode instance features.

  python -m hdgan_jax.main --config=experiments/cityscapes.py --workdir=runs/city
  python -m hdgan_jax.main --config=experiments/demo.py --workdir=runs/demo \
      --mode=generate --labels=path/to/labels --instances=path/to/insts --out=results
  python -m hdgan_jax.main --config=experiments/cityscapes.py --mode=generate \
      --checkpoint=latest_net_G.pth --labels=test_label/ --instances=test_inst/ --out=results/
  python -m hdgan_jax.main --config=experiments/demo.py --workdir=runs/demo --mode=encode_features

Multi-host training: the same command on every host with
``--coordinator_address=HOST:PORT --num_processes=N --process_id=I``, or
``--distributed`` on a TPU pod or SLURM (see :mod:`hdgan_jax.distributed`).

A trained model comes from ``--workdir`` (one of our runs) or ``--checkpoint``
(NVIDIA's ``latest_net_G.pth``, an ``.npz``, or an original checkpoint
folder); see :mod:`hdgan_jax.run`. Any config field can be overridden:
--config.model.ngf=32 --config.batch_size=8. Unknown keys are rejected.

Heavy modules (JAX, TensorFlow) are imported inside :func:`main` so that
``--help`` answers at once.
"""

import json
import os
import tempfile

from absl import app, flags
from ml_collections import config_flags

from hdgan_jax import console, distributed, host_memory

config_flags.DEFINE_config_file('config', None, 'Experiment config file (experiments/*.py).',
                                lock_config=True)
flags.DEFINE_enum('mode', 'train', ['train', 'generate', 'encode_features', 'evaluate'],
                  'What to do.')
flags.DEFINE_string('workdir', None, 'Run directory: checkpoints, samples, logs. For generate and '
                    'encode_features, the trained run to use (or give --checkpoint).')
flags.DEFINE_string('checkpoint', None, 'generate/encode_features: weights instead of a workdir: '
                    "NVIDIA's latest_net_G.pth, an .npz, or an original checkpoint folder "
                    '(latest_net_G.pth, latest_net_E.pth, features_clustered_010.npy).')
flags.DEFINE_integer('step', None, 'generate/encode_features: the checkpoint step of --workdir '
                     '(default: the latest).')
flags.DEFINE_string('clusters', None, 'Feature clusters to use: our clusters.npz or the '
                    "original's features_clustered_010.npy (default: the run's own).")
flags.DEFINE_string('labels', None, 'generate: a label-id PNG or a folder of them.')
flags.DEFINE_string('instances', None, 'generate: instance PNG(s) matching --labels (same names).')
flags.DEFINE_string('out', None, 'generate: output folder (default WORKDIR/generated); '
                    'encode_features: cluster file (.npz ours, .npy the original format).')
flags.DEFINE_integer('num_samples', 1, 'generate: diverse outputs per label map (use_features).')
flags.DEFINE_string('styles', None, 'generate: JSON {instance id: cluster index} for chosen styles.')
flags.DEFINE_integer('seed', 0, 'generate: seed for sampling styles.')
flags.DEFINE_integer('num_images', 0, 'evaluate: images of the split to use (0 = all).')
flags.DEFINE_string('segmentation', None, 'evaluate: a folder of label maps predicted by your '
                    'segmenter on the generated images (<name>_synthesized_image.png), for '
                    'pixel accuracy and mIoU.')
flags.DEFINE_integer('diversity_samples', 4, 'evaluate: styles per map for LPIPS diversity '
                     '(feature models).')
flags.DEFINE_bool('verbose', False, 'Library logs and tracebacks on the terminal, not only in '
                  'the log file.')
flags.adopt_module_key_flags(distributed)  # the multi-host flags show in --help
FLAGS = flags.FLAGS


def _log_dir() -> str:
  if FLAGS.mode == 'train' or (FLAGS.workdir and not FLAGS.checkpoint):
    return FLAGS.workdir
  if FLAGS.mode in ('generate', 'evaluate') and FLAGS.out:
    return FLAGS.out
  if FLAGS.mode == 'encode_features' and FLAGS.out:
    return os.path.dirname(os.path.abspath(FLAGS.out))
  return os.path.join(tempfile.gettempdir(), 'hdgan_jax')


def _validate() -> None:
  if FLAGS.config is None and (FLAGS.mode == 'train' or FLAGS.checkpoint):
    raise app.UsageError(f'--mode={FLAGS.mode}{" with --checkpoint" if FLAGS.checkpoint else ""} '
                         'needs --config=experiments/<name>.py')
  if FLAGS.mode == 'train':
    if not FLAGS.workdir:
      raise app.UsageError('--mode=train needs --workdir (where checkpoints and samples go)')
    if FLAGS.checkpoint:
      raise app.UsageError('--checkpoint is for generate/encode_features; to start training '
                           'from weights use --config.init_from=FILE_OR_WORKDIR')
    return
  if not (FLAGS.workdir or FLAGS.checkpoint):
    raise app.UsageError(f'--mode={FLAGS.mode} needs a trained model: --workdir=RUN or '
                         '--checkpoint=latest_net_G.pth (or an original checkpoint folder)')
  if FLAGS.mode == 'generate':
    if not FLAGS.labels:
      raise app.UsageError('--mode=generate needs --labels (a PNG or a folder)')
    if not FLAGS.out:
      if not FLAGS.workdir or FLAGS.checkpoint:
        raise app.UsageError('--mode=generate with --checkpoint needs --out=FOLDER')
      FLAGS.out = os.path.join(FLAGS.workdir, 'generated')


def _devices() -> str:
  import jax  # lazy: keeps --help fast
  devs = jax.devices()
  kinds = sorted({d.device_kind for d in devs})
  procs = f' in {jax.process_count()} processes' if jax.process_count() > 1 else ''
  return f'{len(devs)} {jax.default_backend()} device{"s" * (len(devs) != 1)} ({", ".join(kinds)}){procs}'


def _train(config) -> None:
  from hdgan_jax import train  # lazy: keeps --help fast
  config_name = os.path.basename(FLAGS['config'].config_filename or 'config')
  console.say(f'hdgan_jax: training {config_name} on {_devices()}')
  console.say(f'  results: {FLAGS.workdir}/ (index.html, samples/, metrics.jsonl, checkpoints/)'
              + (f'; log: {console.log_path()}' if console.log_path() else ''))
  train.train_and_evaluate(config, FLAGS.workdir)


def _load_run(config):
  from hdgan_jax import run as run_lib  # lazy: keeps --help fast
  r = run_lib.load(config, workdir=FLAGS.workdir, checkpoint_path=FLAGS.checkpoint,
                   step=FLAGS.step, clusters=FLAGS.clusters)
  console.say(f'hdgan_jax: {FLAGS.mode} with {r.describe()}, on {_devices()}')
  return r


def _generate(config) -> None:
  from tqdm import tqdm  # lazy: keeps --help fast
  from hdgan_jax import generate  # lazy: keeps --help fast
  r = _load_run(config)
  written = generate.generate(
      r, labels=FLAGS.labels, instances=FLAGS.instances, out=FLAGS.out,
      num_samples=FLAGS.num_samples, styles=FLAGS.styles, seed=FLAGS.seed,
      progress=lambda xs: tqdm(xs, desc='generate', unit='map', dynamic_ncols=True),
      notify=console.say)
  console.say(f'wrote {len(written)} images to {FLAGS.out}/')


def _encode(config) -> None:
  from hdgan_jax import encode  # lazy: keeps --help fast
  r = _load_run(config)
  data_cfg = config if FLAGS.checkpoint else None  # a workdir brings its own data config
  res = encode.encode_features(r, data_config=data_cfg, n_clusters=config.n_clusters,
                               out=FLAGS.out)
  console.say(f'wrote {res["path"]}: instances per class {json.dumps(res["instances"])}')


def _evaluate(config) -> None:
  from tqdm import tqdm  # lazy: keeps --help fast
  from hdgan_jax import run_evaluation as evaluation  # lazy: keeps --help fast
  r = _load_run(config)
  data_cfg = config if config is not None else r.config  # --config picks the split to score
  res = evaluation.evaluate_run(
      r, data_cfg, num_images=FLAGS.num_images, segmenter=FLAGS.segmentation,
      diversity_samples=FLAGS.diversity_samples, out_dir=FLAGS.out, seed=FLAGS.seed,
      progress=lambda n: tqdm(total=n, desc='generate', unit='img', dynamic_ncols=True))
  for k, v in res.items():
    console.say(f'  {k}: {v:.4f}')
  print(json.dumps({k.split('/')[-1]: v for k, v in res.items()}), flush=True)


def _distributed_spec():
  """The multi-host settings (None: one process); bad combinations are usage errors."""
  try:
    spec = distributed.spec_from_flags(FLAGS)
  except distributed.DistributedSetupError as e:
    raise app.UsageError(str(e)) from None
  if spec is not None and FLAGS.mode != 'train':
    raise app.UsageError(f'--mode={FLAGS.mode} runs in one process; --coordinator_address and '
                         '--distributed are for --mode=train')
  return spec


def _multi_host(spec, job) -> None:
  """Joins the other processes, then runs ``job``; a failure ends this process at once.

  The log file is set up before joining when the process id is known (so
  the coordinator's messages land in it), after joining when it is detected.
  A failed process exits without JAX's shutdown barrier (it would wait for a
  dead peer); a lost peer is reported as such, with how to resume.
  """
  if spec.process_id is not None:
    console.setup(FLAGS.workdir, verbose=FLAGS.verbose, process_index=spec.process_id)

  def start_and_run():
    try:
      index, _ = distributed.initialize(spec)
      if spec.process_id is None:
        console.setup(FLAGS.workdir, verbose=FLAGS.verbose, process_index=index)
      job()
    except Exception as e:  # pylint: disable=broad-except  # only peer failures are renamed
      if distributed.is_peer_failure(e):
        raise distributed.peer_lost(e, FLAGS.workdir) from e
      raise

  try:
    console.run_cli(start_and_run)
  except SystemExit as e:
    distributed.exit_now(e.code)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  _validate()
  if FLAGS.mode == 'train':  # before JAX loads; only training gains (host_memory)
    host_memory.reexec_with_huge_pages()
  else:  # inference only: XLA:CPU's memory-minimising scheduler (host_memory)
    host_memory.use_memory_scheduler()
  spec = _distributed_spec()
  config = FLAGS.config
  job = {'train': _train, 'generate': _generate, 'encode_features': _encode,
         'evaluate': _evaluate}[FLAGS.mode]
  if spec is not None:
    _multi_host(spec, lambda: job(config))
    return
  console.setup(_log_dir(), verbose=FLAGS.verbose)
  console.run_cli(lambda: job(config))


def run() -> None:
  """Console script ``hdgan-jax``."""
  console.quiet_native_logs()
  app.run(main, flags_parser=console.parse_flags)


if __name__ == '__main__':
  run()
