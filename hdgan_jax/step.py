"""The train state and the one pure train step ``(state, batch, rng) -> (state, metrics)``.

One step does what one iteration of the original does: G produces the fake,
the multi-scale D scores real and fake, G is updated on GAN + feature matching
+ perceptual losses and D on 0.5 (real + fake), both against the same D weights.
The original runs D on the fake twice (detached for D, attached for G); here D
runs once on the real and once on the fake pair, and the two losses are pulled
back through one VJP each, which gives the same gradients (``tests/test_step.py``
proves it; ``tests/test_losses.py`` matches the original's losses over three
iterations). Real and fake are deliberately not stacked into one batch: on XLA
CPU that variant's D gradients drifted up to 10% from float64 truth at the
coarsest scale, while separate calls match PyTorch to 1e-3.

Scale (``hdgan_jax/mesh.py``, ``models/remat.py``): the step runs over a
('data', 'space') mesh; with ``config.mesh.space`` > 1 every image is split into
bands of rows over that axis and the results equal the unsharded step
(``tests/test_space_sharding.py``). ``model.dtype`` is the compute dtype:
parameters and Adam state stay float32, instance-norm statistics and every
loss are float32 (``tests/test_precision.py``). ``model.remat`` trades
recomputation for the activations kept for the backward pass.

Progressive training: with ``niter_fix_global`` the global part G1 of a local
generator is held (zero updates, Adam moments untouched) for that many epochs
while its enhancers train; the original instead rebuilds Adam afterwards and
loses the enhancers' moments.
"""

from typing import Any, Callable, Dict, NamedTuple

import flax
import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from hdgan_jax import losses, mesh as mesh_lib, models
from hdgan_jax.models import lowering, vgg

PyTree = Any


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  g_params: PyTree          # {'G': ..., ['E': ...]}
  d_params: PyTree
  g_opt: PyTree
  d_opt: PyTree
  g_ema: PyTree = None      # moving average of g_params (config.g_ema_decay > 0), else None


def sampling_params(state: TrainState) -> PyTree:
  """The generator-side parameters to sample and evaluate with: the average if kept."""
  return state.g_params if state.g_ema is None else state.g_ema


def ema_update(config, ema, params):
  """``ema`` moved towards ``params`` by ``config.g_ema_decay`` (it starts at the initial weights).

  No warm-up: with min(decay, (1 + step) / (10 + step)) the demo's 600-step run
  scored 0.718 held-out pixel accuracy against 0.724 without it (the initial
  weights' share after n steps is decay ** n: 0.2 % after 600 steps at 0.99).
  """
  decay = jnp.float32(config.g_ema_decay)
  return jax.tree_util.tree_map(lambda e, p: decay * e + (1.0 - decay) * p, ema, params)


def lr_schedule(config, steps_per_epoch: int) -> Callable[[jax.Array], jax.Array]:
  """The original's schedule: lr for ``niter`` epochs, then linear decay over ``niter_decay``.

  Like the original, epoch niter + 1 still runs at the full rate and the decay
  is applied per epoch, not per step.
  """
  def fn(step):
    epoch = step // max(steps_per_epoch, 1)
    k = jnp.maximum(epoch - config.niter, 0)
    frac = 1.0 - k / max(config.niter_decay, 1)
    return config.lr * jnp.clip(frac, 0.0, 1.0)
  return fn


class HoldState(NamedTuple):
  count: jax.Array
  inner: PyTree


def hold_until(inner: optax.GradientTransformation, start_step: int) -> optax.GradientTransformation:
  """Zero updates and a frozen inner state before ``start_step``, then ``inner``."""
  def init(params):
    return HoldState(jnp.zeros([], jnp.int32), inner.init(params))

  def update(updates, state, params=None):
    new_updates, new_inner = inner.update(updates, state.inner, params)
    active = state.count >= start_step
    pick = lambda a, b: jax.tree_util.tree_map(lambda x, y: jnp.where(active, x, y), a, b)
    out = pick(new_updates, jax.tree_util.tree_map(jnp.zeros_like, new_updates))
    return out, HoldState(state.count + 1, pick(new_inner, state.inner))
  return optax.GradientTransformation(init, update)


def _adam(config, schedule, hold_steps: int = 0):
  adam = optax.scale_by_adam(config.beta1, config.beta2, eps=1e-8)
  if hold_steps > 0:
    adam = hold_until(adam, hold_steps)
  return optax.chain(adam, optax.scale_by_schedule(lambda s: -schedule(s)))


def make_optimizers(config, steps_per_epoch: int):
  """(G optimizer, D optimizer): Adam(lr, beta1, beta2) with the original's schedule.

  With ``niter_fix_global`` (netG local) only the outermost enhancer (and E)
  train during the first epochs, as the original's ``model{n}*`` filter; every
  other part of G is held with its Adam moments untouched.
  """
  schedule = lr_schedule(config, steps_per_epoch)
  fix = config.niter_fix_global * steps_per_epoch if config.model.netG == 'local' else 0
  if fix <= 0:
    g_tx = _adam(config, schedule)
  else:
    outer = f'enhancer_{config.model.n_local_enhancers}'

    def labels(params):
      out = jax.tree_util.tree_map(lambda _: 'train', params)
      out['G'] = {k: jax.tree_util.tree_map(lambda _: 'train' if k == outer else 'held', v)
                  for k, v in params['G'].items()}
      return out
    g_tx = optax.multi_transform({'held': _adam(config, schedule, fix),
                                  'train': _adam(config, schedule)}, labels)
  return g_tx, _adam(config, schedule)


class Nets(NamedTuple):
  """The modules and fixed pieces one step needs (static under jit)."""
  G: Any
  D: Any
  E: Any
  vgg: Any
  vgg_vars: Any
  vgg_source: str
  g_tx: Any
  d_tx: Any
  steps_per_epoch: int


def build(config, steps_per_epoch: int) -> Nets:
  """Modules, perceptual backbone and optimizers for ``config`` (validated here)."""
  m = config.model
  if m.norm != 'instance':
    raise NotImplementedError(
        f"training with model.norm={m.norm!r} is not supported (running batch statistics are "
        "not threaded through the step); use norm='instance', the original's default. "
        'Batch-norm checkpoints still convert and run for inference.')
  if config.data.load_features and not m.use_features:
    raise ValueError('data.load_features=True needs model.use_features=True (the feature '
                     'channels are part of the generator input)')
  if m.label_feat and not m.use_features:
    raise ValueError('model.label_feat=True needs model.use_features=True')
  if m.get('dtype', 'float32') == 'float16':
    raise ValueError("model.dtype='float16' is not supported for training (no loss scaling: small "
                     "gradients underflow to zero); use --config.model.dtype=bfloat16 (float32's "
                     'range, same memory) or float32. float16 is fine for generation.')
  vgg_mod, vgg_vars, vgg_source = None, None, ''
  if not config.no_vgg_loss:
    vgg_mod, vgg_vars, vgg_source = vgg.load_backbone(
        config.perceptual_backbone, config.vgg19_path,
        dtype=models.resolve_dtype(m.get('dtype', 'float32')), remat_policy=models.remat_policy(m))
  g_tx, d_tx = make_optimizers(config, steps_per_epoch)
  return Nets(models.make_generator(m), models.make_discriminator(m),
              models.make_encoder(m) if m.use_features and not config.data.load_features else None,
              vgg_mod, vgg_vars, vgg_source, g_tx, d_tx, steps_per_epoch)


def init_state(nets: Nets, config, rng, *, height: int, width: int, mesh=None) -> TrainState:
  """A fresh state (float32 parameters and Adam moments, whatever ``model.dtype``).

  Parameters do not depend on the image size, so the networks are initialised
  on the smallest inputs they accept, passed as arguments (XLA would otherwise
  constant-fold whole forward passes at compile time). With ``mesh`` the state
  is born on the mesh: shapes come from ``jax.eval_shape`` and each
  ``jit(..., out_shardings=...)`` writes its leaves straight into their
  sharding, never through one device.

  Two executables, so that the random initialisers' scratch never coexists with
  the optimizer state: XLA keeps the random bits of every large kernel live at
  once (938 MiB of temp for the 182 M-parameter G, 1.3x the parameters), and
  in one executable that came on top of parameters plus Adam moments and set
  the whole training run's peak RSS (4045 against 3450 MiB in the 128x256
  ngf-64 benchmark's steps). The parameters come first; the moments (zeros)
  and the moving average (a copy) follow from them. The values are the same.
  """
  del height, width  # kept for callers; any valid size gives the same parameters
  m = config.model
  dummies = {n: models.make_module_and_inputs(n, m)[1] for n in ('G', 'D', 'E')}

  def init_params(rng, dummies):
    kg, kd, ke = jax.random.split(rng, 3)
    g_params = {'G': nets.G.init(kg, *dummies['G'])['params']}
    if nets.E is not None:
      g_params['E'] = nets.E.init(ke, *dummies['E'])['params']
    return g_params, nets.D.init(kd, *dummies['D'])['params']

  def init_rest(g_params, d_params):
    g_ema = jax.tree_util.tree_map(jnp.copy, g_params) if config.get('g_ema_decay', 0) else None
    return (jnp.zeros([], jnp.int32), nets.g_tx.init(g_params), nets.d_tx.init(d_params), g_ema)

  def assemble(params, rest):
    step, g_opt, d_opt, g_ema = rest
    return TrainState(step, *params, g_opt, d_opt, g_ema)

  if isinstance(rng, jax.core.Tracer):  # inside eval_shape / jit: nothing is compiled here
    params = init_params(rng, dummies)
    return assemble(params, init_rest(*params))
  opts = _INIT_COMPILE_OPTIONS.get(jax.default_backend())
  sharded = lambda fn, *args: jax.jit(fn, out_shardings=None if mesh is None else state_shardings(
      mesh, jax.eval_shape(fn, *args))).lower(*args).compile(opts)(*args)
  params = sharded(init_params, rng, dummies)
  return assemble(params, sharded(init_rest, *params))


# Init runs once, on dummy inputs of a few pixels: XLA:CPU's backend optimisations
# only cost compile time there (9.8 s against 1.1 s for a tiny G's init).
_INIT_COMPILE_OPTIONS = {'cpu': {'xla_backend_optimization_level': 0}}


def abstract_state(nets: Nets, config, mesh, *, height: int, width: int):
  """The train state's shapes and dtypes with its shardings (replicated over ``mesh``).

  What ``step_fn.precompile`` compiles for before the state exists (training and
  ``benchmarks/train_step.py``).
  """
  shapes = jax.eval_shape(lambda k: init_state(nets, config, k, height=height, width=width),
                          jax.random.PRNGKey(0))
  return jax.tree_util.tree_map(
      lambda x, sh: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh), shapes,
      state_shardings(mesh, shapes))


def state_shardings(mesh, state):
  """Shardings of the train state (a pytree like ``state``): replicated over the mesh.

  A parameter axis does not pay here: the 182 M-parameter local G with its
  Adam moments is ~2.2 GB (``benchmarks/memory.py``).
  """
  return jax.tree_util.tree_map(lambda _: mesh_lib.replicated(mesh), state)


def generator_forward(nets: Nets, config, g_params, batch):
  """(condition, fake): D's conditioning input and G's image for a batch."""
  m = config.model
  cond = models.encode_input(batch['label'], batch.get('inst'), m)
  x = cond
  if 'feat' in batch:  # precomputed or cluster-sampled features take precedence
    x = jnp.concatenate([cond, batch['feat']], axis=-1)
  elif nets.E is not None:
    segments = batch['label'] if m.label_feat else batch['inst']  # label_feat pools per class
    feat = nets.E.apply({'params': g_params['E']}, batch['image'], segments)
    x = jnp.concatenate([cond, feat], axis=-1)
  fake = nets.G.apply({'params': g_params['G']}, x)
  return cond, fake.astype(jnp.float32)


def discriminator_fn(nets: Nets, cond, real):
  """``(d_params, fake) -> (D(cond, real), D(cond, fake))``: D once on each, never stacked."""
  def d_fn(dp, fake_img):
    apply = lambda img: nets.D.apply({'params': dp}, img, cond)  # D(concat(cond, img))
    return apply(real), apply(fake_img)
  return d_fn


def perceptual_fn(nets: Nets, config, real):
  """``fake -> VGG loss against real``; under ``model.remat='full'`` it keeps only ``fake``."""
  def vgg_loss(f):
    pre = lambda x: vgg.preprocess(x, nets.vgg_source, config.perceptual_normalize)
    return losses.perceptual(nets.vgg.apply(nets.vgg_vars, pre(f)),
                             nets.vgg.apply(nets.vgg_vars, pre(real)), lambda_vgg=config.lambda_vgg)
  if models.remat_policy(config.model) == 'full':  # VGG on both images is recomputed
    return jax.checkpoint(vgg_loss, policy=jax.checkpoint_policies.nothing_saveable)
  return vgg_loss


def compute_grads(nets: Nets, config, state: TrainState, batch: Dict[str, jax.Array]):
  """(G grads, D grads, metrics) of one iteration: D runs once on real, once on fake."""
  m = config.model
  mode = losses.gan_mode(m, config.gan_mode)
  real = batch['image'].astype(jnp.float32)

  (cond, fake), g_vjp = jax.vjp(lambda gp: generator_forward(nets, config, gp, batch), state.g_params)
  outs, d_vjp = jax.vjp(discriminator_fn(nets, cond, real), state.d_params, fake)

  def g_losses(o):
    pred_real, pred_fake = o
    gan = losses.gan_loss(pred_fake, True, mode, for_discriminator=False)
    fm = jnp.float32(0.0)
    if not m.no_ganFeat_loss:
      fm = losses.feature_matching(pred_fake, pred_real, num_D=m.num_D, n_layers_D=m.n_layers_D,
                                   lambda_feat=config.lambda_feat)
    return gan + fm, (gan, fm)

  def d_losses(o):
    pred_real, pred_fake = o
    d_real = losses.gan_loss(pred_real, True, mode)
    d_fake = losses.gan_loss(pred_fake, False, mode)
    return 0.5 * (d_real + d_fake), (d_real, d_fake)

  (_, (g_gan, g_fm)), ct_g = jax.value_and_grad(g_losses, has_aux=True)(outs)
  (d_total, (d_real, d_fake)), ct_d = jax.value_and_grad(d_losses, has_aux=True)(outs)
  _, dfake = d_vjp(ct_g)
  d_grads, _ = d_vjp(ct_d)

  g_vgg = jnp.float32(0.0)
  if nets.vgg is not None:
    g_vgg, dvgg = jax.value_and_grad(perceptual_fn(nets, config, real))(fake)
    dfake = dfake + dvgg
  (g_grads,) = g_vjp((jnp.zeros_like(cond), dfake))
  metrics = {'G_GAN': g_gan, 'G_GAN_Feat': g_fm, 'G_VGG': g_vgg, 'D_real': d_real,
             'D_fake': d_fake, 'G_total': g_gan + g_fm + g_vgg, 'D_total': d_total}
  return g_grads, d_grads, metrics


def train_step(nets: Nets, config, state: TrainState, batch: Dict[str, jax.Array], rng):
  """One G update and one D update; returns the new state and scalar metrics."""
  del rng  # the networks are deterministic; kept in the signature for dropout/pooling
  g_grads, d_grads, metrics = compute_grads(nets, config, state, batch)
  g_upd, g_opt = nets.g_tx.update(g_grads, state.g_opt, state.g_params)
  d_upd, d_opt = nets.d_tx.update(d_grads, state.d_opt, state.d_params)
  g_params = optax.apply_updates(state.g_params, g_upd)
  g_ema = None if state.g_ema is None else ema_update(config, state.g_ema, g_params)
  new = TrainState(state.step + 1, g_params, optax.apply_updates(state.d_params, d_upd),
                   g_opt, d_opt, g_ema)
  metrics['lr'] = lr_schedule(config, nets.steps_per_epoch)(state.step)
  # The losses describe the parameters before this update; this flag covers the new
  # ones, so a checkpoint is never written from parameters that just turned NaN.
  finite = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves((new.g_params, new.d_params))]
  metrics['params_finite'] = jnp.all(jnp.stack(finite)).astype(jnp.float32)
  return new, metrics


def make_mesh(config=None, devices=None):
  """The ('data', 'space') mesh of ``config.mesh`` (without a config: every device on 'data')."""
  return mesh_lib.make_mesh(config.get('mesh') if config is not None else None, devices)


def jit_train_step(nets: Nets, config, mesh, state: TrainState):
  """``train_step`` under ``jax.jit``: batch over 'data' (rows over 'space'), state replicated, donated.

  Returns ``step(state, batch, rng) -> (state, metrics)``. The perceptual
  backbone's weights enter as a replicated argument, not as constants baked
  into the compiled program (VGG19 is ~50 MB). With a 'space' axis > 1 the
  networks' activations are pinned to bands of rows (``mesh.constrain``).
  """
  repl = NamedSharding(mesh, P())
  state_sh = state_shardings(mesh, state)
  vgg_sh = jax.tree_util.tree_map(lambda _: repl, nets.vgg_vars)

  def fn(s, b, r, vgg_vars):
    mesh_lib.check_batch(mesh, *b['label'].shape[:2])
    with mesh_lib.activation_sharding(mesh):
      return train_step(nets._replace(vgg_vars=vgg_vars), config, s, b, r)
  jitted = jax.jit(fn, in_shardings=(state_sh, mesh_lib.batch_sharding(mesh), repl, vgg_sh),
                   out_shardings=(state_sh, repl), donate_argnums=(0,),
                   compiler_options=lowering.compiler_options())
  vgg_vars = jax.device_put(nets.vgg_vars, vgg_sh)
  compiled = {}

  def precompile(s, b, r=None):
    """Compile now for (abstract) state and batch, e.g. before the state exists.

    XLA's compile-time memory (about 1.2 GB for the 128x256 ngf-64 model) is then
    gone before the state and the step's buffers take theirs; compiled on the
    first call instead, it came on top of the state, and the run peaked there
    (4525 against 4060 MiB). Calls whose arguments match run this executable;
    any other call goes through ``jax.jit`` as before.
    """
    compiled[_signature(s, b, r)] = jitted.lower(s, b, r, vgg_vars).compile()

  def step_fn(s, b, r):
    exe = compiled.get(_signature(s, b, r)) if compiled else None
    if exe is None:
      return jitted(s, b, r, vgg_vars)
    step_fn.precompiled_calls += 1
    return exe(s, b, r, vgg_vars)
  step_fn.lower = lambda s, b, r: jitted.lower(s, b, r, vgg_vars)
  step_fn.vgg_vars = vgg_vars  # the 4th argument of ``step_fn.lower(...).compile()``'s executable
  step_fn.precompile = precompile
  step_fn.precompiled_calls = 0
  return step_fn


def _signature(*trees):
  """What an executable compiled for ``trees`` needs of them: structure, shapes, dtypes, shardings."""
  leaves, treedef = jax.tree_util.tree_flatten(trees)
  return treedef, tuple((x.shape, jnp.dtype(x.dtype), getattr(x, 'sharding', None)) for x in leaves)
