r"""Export a trained generator for serving: one ``jax.export`` file, maps in, image out.

  python -m hdgan_jax.export --workdir=runs/demo --out=demo.jaxexport
  python -m hdgan_jax.export --config=experiments/cityscapes.py \
      --checkpoint=latest_net_G.pth --out=city.jaxexport [--height=1024 --width=2048]

The file holds ``f(label, inst) -> image`` as serialized StableHLO for CPU and
CUDA, with the weights inside, so a server needs only ``jax`` and ``numpy``::

  exp = jax.export.deserialize(open('city.jaxexport', 'rb').read())
  image = exp.call(label, inst)   # (N, H, W) int32 each -> (N, H, W, 3) uint8

Inside the function, as ``--mode=generate`` does it (:class:`render.Renderer`):
the one-hot labels and instance edges (``models.encode_input``, jittable), the
generator, and the original's truncating uint8 conversion, so the pixels are
generate's. N is symbolic; H and W are fixed (``--height/--width``, by default
the run's training size when the config determines it) or, with
``--any_size``, any multiples of ``models.required_multiple`` (netG=global
only for now). Maps are taken as given: preprocess them as training did.

Feature models (``use_features``) get a fixed style per class, decided at
export time: the class's most populated cluster (cluster 0 when the counts
are unknown, as in the original's .npy files), or the cluster ``--styles``
names ({"class id": cluster index}); classes without clusters get zeros.
A pixel's class is its label, so every label-homogeneous instance gets the
feature vector that :class:`render.Renderer` gives it with those choices.

Label ids outside [0, label_nc) cannot be refused inside the function: the
pixels they reach (with instance norm, their whole image) come out black (0)
rather than undefined, so check ids before calling.
``FILE.json`` beside the artefact describes inputs, outputs, model, origin
and styles. ``--saved_model=DIR`` also writes a TF SavedModel (``jax2tf``).
Flags are defined only when run as a script, so importing this module
defines none.
"""

import hashlib
import json
import os
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import config_flags

from hdgan_jax import console, fileutil, models
from hdgan_jax.data import preprocess
from hdgan_jax.run import Run, load as load_run

FORMAT = 'hdgan_jax.export/1'
PLATFORMS = ('cpu', 'cuda')
CITYSCAPES_RAW_SIZE = (2048, 1024)   # (W, H) of every Cityscapes photo and map


class ExportError(ValueError):
  """The export cannot be made as asked (the message says what to fix)."""


# --------------------------------------------------------------------------- sizes

def _raw_size(data) -> Optional[Tuple[int, int]]:
  """(W, H) of the run's training maps before preprocessing, where the config says it."""
  if data.source == 'demo':
    return int(data.demo_width), int(data.demo_height)
  if data.source == 'cityscapes' or (data.source == 'tfds'
                                     and str(data.tfds_name).startswith('cityscapes')):
    return CITYSCAPES_RAW_SIZE
  return None


def training_size(config) -> Optional[Tuple[int, int]]:
  """(H, W) the generator was trained at, or None when the config does not determine it.

  Known when the source's raw size is known (demo, Cityscapes), or when the
  preprocessing makes every example the same size whatever its raw size
  (resize_and_crop; scale_width_and_crop with loadSize > fineSize).
  """
  d = config.data
  multiple = models.required_multiple(config.model)
  raw = _raw_size(d)
  if raw is None:
    fixed = (d.resize_or_crop == 'resize_and_crop' or
             (d.resize_or_crop == 'scale_width_and_crop' and d.loadSize > d.fineSize))
    if not fixed:
      return None
    raw = (d.loadSize, d.loadSize)   # any size gives the same result in these modes
  w, h = preprocess.output_size(d, raw, multiple)
  return (h, w) if h % multiple == 0 and w % multiple == 0 else None


def check_size(height: int, width: int, multiple: int) -> None:
  """ExportError unless both sides are positive multiples of the generator's multiple."""
  if height <= 0 or width <= 0 or height % multiple or width % multiple:
    raise ExportError(f'--height={height} --width={width}: this generator needs positive '
                      f'multiples of {multiple} (models.required_multiple)')


def _dims(height: Optional[int], width: Optional[int], multiple: int):
  """(N, H, W) as a shape spec and its constraints: fixed H, W or multiples of ``multiple``."""
  if height is None:
    # reflect padding at the bottleneck needs at least 2 pixels there
    return f'b, {multiple}*h, {multiple}*w', ('h >= 2', 'w >= 2')
  return f'b, {height}, {width}', ()


def input_shape(height: Optional[int], width: Optional[int], multiple: int):
  """The symbolic (N, H, W) of both inputs (N always symbolic)."""
  spec, constraints = _dims(height, width, multiple)
  return jax.export.symbolic_shape(spec, constraints=constraints)


# --------------------------------------------------------------------------- styles

def style_choices(run: Run, styles: Optional[Mapping] = None) -> Dict[int, int]:
  """{class id: cluster index} for every class with clusters (see the module docstring)."""
  clusters = run.require_clusters()
  styles = {} if styles is None else dict(styles)
  out = {}
  for cls, value in sorted(clusters.items()):
    counts = np.asarray(value.counts)
    out[int(cls)] = int(np.argmax(counts)) if counts.size and counts.max() > 0 else 0
  for key, idx in styles.items():
    try:
      cls = int(key)
    except (TypeError, ValueError):
      raise ExportError(f'--styles: class {key!r} is not an integer') from None
    if cls not in clusters:
      raise ExportError(f'--styles: class {cls} has no feature clusters (classes with '
                        f'clusters: {sorted(clusters)[:20]})')
    k = len(clusters[cls].centers)
    if isinstance(idx, bool) or not isinstance(idx, int) or not 0 <= idx < k:
      raise ExportError(f'--styles: class {cls} has clusters 0..{k - 1}; got {idx!r}')
    out[cls] = idx
  return out


def style_table(run: Run, choices: Mapping[int, int]) -> np.ndarray:
  """(label_nc, feat_num) float32: each class's chosen centre, zeros without clusters."""
  m = run.model
  table = np.zeros((m.label_nc, m.feat_num), np.float32)
  for cls, idx in choices.items():
    if 0 <= cls < m.label_nc:
      table[cls] = np.asarray(run.clusters[cls].centers, np.float32)[idx]
  return table


def load_styles(path: str) -> Dict[str, int]:
  """The ``--styles`` JSON file: {"class id": cluster index}."""
  try:
    with open(path, encoding='utf-8') as f:
      styles = json.load(f)
  except (OSError, ValueError) as e:
    raise ExportError(f'--styles={path}: cannot read it as JSON ({e})') from None
  if not isinstance(styles, dict):
    raise ExportError(f'--styles={path}: expected {{"class id": cluster index}}, '
                      f'got a {type(styles).__name__}')
  return styles


# --------------------------------------------------------------------------- the function

def to_uint8(images: jax.Array) -> jax.Array:
  """``reporting.to_uint8`` in jnp (truncating, float32); NaN pixels become 0."""
  x = jnp.nan_to_num(images.astype(jnp.float32), nan=-1.0)
  return jnp.clip((x + np.float32(1.0)) / np.float32(2.0) * np.float32(255.0),
                  0, 255).astype(jnp.uint8)


def serving_fn(run: Run, choices: Optional[Mapping[int, int]] = None,
               params=None) -> Callable:
  """``f(label, inst) -> image``: (N, H, W) int32 maps to (N, H, W, 3) uint8, jnp only.

  ``params`` (G's) defaults to the run's, closed over as constants. With
  ``use_features`` the class style table of ``choices`` is a constant too.
  """
  m = run.model
  if m.label_nc == 0:
    raise ExportError('model.label_nc=0 (RGB input maps) is not supported by the export; '
                      'it takes label id maps')
  G = models.make_generator(m)
  params = jax.device_get(run.params['G']) if params is None else params
  table = None
  if m.use_features:
    table = jnp.asarray(style_table(run, style_choices(run) if choices is None else choices))

  def f(label, inst):
    feat = None
    if table is not None:   # a pixel's style is its class's: label ids index the table
      feat = table[jnp.clip(label, 0, m.label_nc - 1)]
    x = models.encode_input(label, None if m.no_instance else inst, m, feat_map=feat)
    return to_uint8(G.apply({'params': params}, x))

  return f


def export(run: Run, *, height: Optional[int] = None, width: Optional[int] = None,
           choices: Optional[Mapping[int, int]] = None,
           platforms: Sequence[str] = PLATFORMS) -> jax.export.Exported:
  """The serving function exported for ``platforms``; H, W symbolic when not given."""
  multiple = models.required_multiple(run.model)
  if (height is None) != (width is None):
    raise ExportError('give both --height and --width, or neither')
  if height is not None:
    check_size(height, width, multiple)
  shape = input_shape(height, width, multiple)
  spec = jax.ShapeDtypeStruct(shape, jnp.int32)
  try:
    return jax.export.export(jax.jit(serving_fn(run, choices)),
                             platforms=tuple(platforms))(spec, spec)
  except (TypeError, ValueError) as e:
    if height is not None:
      raise
    first = (str(e).strip().splitlines() or [''])[0][:300]
    raise ExportError(f'this generator (netG={run.model.netG}) cannot be exported for any '
                      f'size ({type(e).__name__}: {first}); give --height and --width') from e


def sidecar(run: Run, exported: jax.export.Exported, *, artefact: str, data: bytes,
            choices: Optional[Mapping[int, int]]) -> dict:
  """The JSON description written beside the artefact (FILE.json)."""
  m = run.model
  shape = [str(d) for d in exported.in_avals[0].shape]
  inst_note = ('ignored (model.no_instance); pass zeros' if m.no_instance else
               'instance ids; edges between different ids are the boundary input')
  info = {
      'format': FORMAT,
      'file': os.path.basename(artefact),
      'sha256': hashlib.sha256(data).hexdigest(),
      'load': (f"exp = jax.export.deserialize(open('{os.path.basename(artefact)}', 'rb')"
               '.read()); image = exp.call(label, inst)'),
      'inputs': [
          {'name': 'label', 'dtype': 'int32', 'shape': shape,
           'meaning': f'class ids in [0, {m.label_nc}); other ids turn their image black'},
          {'name': 'inst', 'dtype': 'int32', 'shape': shape, 'meaning': inst_note}],
      'outputs': [{'name': 'image', 'dtype': 'uint8', 'shape': shape + ['3'],
                   'meaning': 'RGB, the original\'s truncating conversion of [-1, 1]'}],
      'size_multiple': models.required_multiple(m),
      'platforms': list(exported.platforms),
      'label_nc': m.label_nc,
      'model': m.to_dict(),
      'origin': run.origin,
      'step': run.step,
      'jax_version': jax.__version__,
      'calling_convention_version': exported.calling_convention_version,
  }
  if m.use_features:
    info['styles'] = {'rule': 'one cluster per class, by the pixel\'s label; zeros for classes '
                              'without clusters',
                      'clusters_origin': run.clusters_origin,
                      'class_to_cluster': {str(k): v for k, v in sorted(choices.items())}}
  return info


def write(run: Run, out: str, *, height: Optional[int] = None, width: Optional[int] = None,
          styles: Optional[Mapping] = None, platforms: Sequence[str] = PLATFORMS) -> dict:
  """Exports ``run`` to ``out`` and ``out + '.json'`` (each written atomically); the sidecar."""
  choices = style_choices(run, styles) if run.model.use_features else None
  if styles and not run.model.use_features:
    raise ExportError('--styles needs a model trained with model.use_features=True')
  exported = export(run, height=height, width=width, choices=choices, platforms=platforms)
  data = exported.serialize()
  info = sidecar(run, exported, artefact=out, data=data, choices=choices)
  fileutil.atomic_write_bytes(out, data)
  fileutil.atomic_write_text(out + '.json', json.dumps(info, indent=1) + '\n')
  return info


def write_saved_model(run: Run, path: str, *, height: Optional[int] = None,
                      width: Optional[int] = None, choices: Optional[Mapping[int, int]] = None,
                      platforms: Sequence[str] = PLATFORMS) -> None:
  """The same function as a TF SavedModel (``jax2tf``; weights as tf.Variables)."""
  import tensorflow as tf  # lazy: heavy, and only this option needs it
  from jax.experimental import jax2tf  # lazy: imports TensorFlow
  multiple = models.required_multiple(run.model)
  dims, constraints = _dims(height, width, multiple)
  params = jax.device_get(run.params['G'])
  fn = lambda p, label, inst: serving_fn(run, choices, params=p)(label, inst)
  converted = jax2tf.convert(fn, polymorphic_shapes=[None, dims, dims],
                             polymorphic_constraints=constraints, with_gradient=False,
                             native_serialization_platforms=tuple(platforms))
  module = tf.Module()
  module.params = tf.nest.map_structure(tf.Variable, params)
  spec = tf.TensorSpec([None, height, width], tf.int32)
  module.serve = tf.function(lambda label, inst: converted(module.params, label, inst),
                             input_signature=[spec, spec], autograph=False)
  tf.saved_model.save(module, path)


# --------------------------------------------------------------------------- command line

def define_flags():
  """Defines the command's flags (only when run as a script); returns FLAGS."""
  config_flags.DEFINE_config_file('config', None, 'Experiment config (experiments/*.py); '
                                  'needed with --checkpoint, optional with --workdir.',
                                  lock_config=True)
  flags.DEFINE_string('workdir', None, 'A trained run (its latest checkpoint, or --step).')
  flags.DEFINE_string('checkpoint', None, "Weights instead of a workdir: NVIDIA's "
                      'latest_net_G.pth, an .npz, or an original checkpoint folder.')
  flags.DEFINE_integer('step', None, 'The checkpoint step of --workdir (default: the latest).')
  flags.DEFINE_string('clusters', None, 'Feature clusters (.npz ours, .npy original); '
                      "default: the run's own.")
  flags.DEFINE_string('out', None, 'The artefact to write; its description goes to OUT.json.')
  flags.DEFINE_integer('height', None, 'Input height (default: the training size if known).')
  flags.DEFINE_integer('width', None, 'Input width (default: the training size if known).')
  flags.DEFINE_bool('any_size', False, 'Accept any multiple of the generator\'s size multiple '
                    '(netG=global) instead of one fixed size.')
  flags.DEFINE_string('styles', None, 'Feature models: JSON file {"class id": cluster index} '
                      '(default: each class\'s most populated cluster).')
  flags.DEFINE_list('platforms', list(PLATFORMS), 'Platforms to export for.')
  flags.DEFINE_string('saved_model', None, 'Also write a TF SavedModel to this folder.')
  flags.DEFINE_bool('verbose', False, 'Library logs and tracebacks on the terminal.')
  flags.mark_flag_as_required('out')
  return flags.FLAGS


def _size(flags_, run: Run) -> Tuple[Optional[int], Optional[int]]:
  """(H, W) from the flags, the run's training size, or (None, None) for --any_size."""
  if flags_.any_size:
    return None, None
  if flags_.height is not None:
    return flags_.height, flags_.width
  size = training_size(run.config)
  if size is None:
    raise ExportError(f'the training size of {run.origin} is not known from its config '
                      f'(data.source={run.config.data.source}, resize_or_crop='
                      f'{run.config.data.resize_or_crop}); give --height and --width')
  return size


def _run(flags_) -> None:
  out = flags_.out
  if os.path.isdir(out):
    raise ExportError(f'--out={out} is a folder; give a file name')
  if not os.path.isdir(os.path.dirname(os.path.abspath(out))):
    raise ExportError(f'output directory of {out} does not exist; create it first')
  given = (flags_.height is not None) + (flags_.width is not None)
  if given == 1 or (given and flags_.any_size):
    raise ExportError('give both --height and --width, or --any_size, or neither (the '
                      'training size)')
  bad = sorted(set(flags_.platforms) - {'cpu', 'cuda', 'rocm', 'tpu'})
  if bad:
    raise ExportError(f'--platforms: unknown {bad}; use cpu, cuda, rocm or tpu')
  styles = load_styles(flags_.styles) if flags_.styles else None
  r = load_run(flags_.config, workdir=flags_.workdir, checkpoint_path=flags_.checkpoint,
                step=flags_.step, clusters=flags_.clusters)
  height, width = _size(flags_, r)
  console.say(f'hdgan_jax: exporting {r.describe()}')
  info = write(r, out, height=height, width=width, styles=styles, platforms=flags_.platforms)
  size = f'{height}x{width}' if height else f'any multiple of {info["size_multiple"]}'
  console.say(f'wrote {out} ({os.path.getsize(out) / 2**20:.1f} MiB; label, inst (N, H, W) '
              f'int32 -> (N, H, W, 3) uint8 at H x W = {size}; {", ".join(info["platforms"])}) '
              f'and {out}.json')
  if flags_.saved_model:
    choices = info.get('styles', {}).get('class_to_cluster')
    write_saved_model(r, flags_.saved_model, height=height, width=width,
                      choices=None if choices is None else {int(k): v for k, v in choices.items()},
                      platforms=flags_.platforms)
    console.say(f'wrote TF SavedModel {flags_.saved_model}/ (signature serve(label, inst))')


main = console.tool_main(lambda: _run(flags.FLAGS))


def run() -> None:
  """Console script ``hdgan-export`` (and ``python -m hdgan_jax.export``)."""
  console.run_tool(main, define_flags)


if __name__ == '__main__':
  run()
