"""Default configuration shared by every experiment file.

Model options use the names and defaults of NVIDIA's pix2pixHD command line
(``options/base_options.py`` and ``train_options.py``) so that a flag such as
``--ngf 32`` there is ``--config.model.ngf=32`` here. Experiments in
``experiments/`` start from :func:`get_config` and override fields.
"""

import ml_collections


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
  m.dtype = 'float32'        # compute dtype ('float32' | 'bfloat16' | 'float16')
  return m


def get_config() -> ml_collections.ConfigDict:
  """Full default config: model options plus run-level settings."""
  c = ml_collections.ConfigDict()
  c.model = model_config()
  return c
