r"""How well instance-feature clusters recover the demo's car palettes (paper Sec. 3.4).

Needs a run trained with ``experiments/demo_features.py`` and its clusters
(``--mode=encode_features``). Two measurements:

1. Cluster purity: every car instance of the training scenes is encoded,
   assigned to its nearest K-means centre, and compared with the palette
   colour the scene generator actually painted it (red/blue/white/black/silver).
2. Generation: held-out cars (``--cars``) are regenerated with each cluster;
   the median colour of each car's pixels is matched to the nearest palette
   colour, and the colour most cars get is the cluster's generated colour.

  .venv/bin/python benchmarks/demo_styles.py --workdir=runs/demo_feat
"""

import collections
import json

from absl import app, flags
import jax
import numpy as np

from hdgan_jax import features, models, reporting, run
from hdgan_jax.data import demo

flags.DEFINE_string('workdir', None, 'A run of experiments/demo_features.py with clusters.')
flags.DEFINE_integer('cars', 8, 'Held-out cars regenerated with every cluster.')
FLAGS = flags.FLAGS


def nearest_palette(rgb):
  names = list(demo.PALETTES[demo.CAR])
  cols = np.array([demo.PALETTES[demo.CAR][n] for n in names], np.float32)
  return names[int(np.argmin(np.linalg.norm(cols - rgb, axis=1)))]


def main(_):
  r = run.from_workdir(FLAGS.workdir)
  cfg, g_params = r.config, r.params
  m, d = cfg.model, cfg.data
  clusters = r.require_clusters()
  centers = clusters[demo.CAR].centers
  E = models.make_encoder(m)
  enc = jax.jit(lambda im, inst: E.apply({'params': g_params['E']}, im, inst))
  G = models.make_generator(m)
  gen = jax.jit(lambda x: G.apply({'params': g_params['G']}, x))

  # 1. purity over the training scenes
  table = collections.defaultdict(collections.Counter)
  for i in range(d.demo_num_images):
    s = demo.render_scene(i, height=d.demo_height, width=d.demo_width, seed=cfg.seed)
    img = s['image'][None].astype(np.float32) / 127.5 - 1.0
    feats = np.asarray(enc(img, s['inst'][None]))[0]
    for f in features.instance_features(feats, s['inst']):
      if f.class_id == demo.CAR:
        k = int(np.argmin(np.linalg.norm(centers - f.vector, axis=1)))
        table[k][s['styles'][f.instance_id][1]] += 1
  total = sum(sum(c.values()) for c in table.values())
  purity = sum(max(c.values()) for c in table.values()) / max(total, 1)
  majority = {k: c.most_common(1)[0][0] for k, c in table.items()}

  # 2. regenerate held-out cars with every cluster; vote over the cars
  cars = []
  for i in range(400):
    if len(cars) >= FLAGS.cars:
      break
    s = demo.render_scene(i, height=d.demo_height, width=d.demo_width, seed=cfg.seed + 999)
    big = [k for k in s['styles'] if k // 1000 == demo.CAR and (s['inst'] == k).mean() > 0.02]
    if big:
      cars.append((s, max(big, key=lambda k: (s['inst'] == k).sum())))
  rows = []
  for k in range(len(centers)):
    votes = collections.Counter()
    for s, car in cars:
      feat = features.feature_map_from_clusters(s['inst'], clusters, feat_num=m.feat_num, rng=0,
                                                choices={car: k})[None]
      x = models.encode_input(s['label'][None], s['inst'][None], m, feat_map=feat)
      img = reporting.to_uint8(np.asarray(gen(x))[0]).astype(np.float32)
      # the median, like the demo's own palette test: windows and wheels are not the paint
      votes[nearest_palette(np.median(img[s['inst'] == car], axis=0))] += 1
    got, n = votes.most_common(1)[0]
    rows.append({'cluster': k, 'members': int(clusters[demo.CAR].counts[k]),
                 'training_majority': majority.get(k), 'generated_colour': got,
                 'vote_share': n / len(cars)})
  agree = [r for r in rows if r['training_majority'] is not None]
  res = {'car_instances': total, 'cluster_purity': purity,
         'palette_colours_in_generation': sorted({r['generated_colour'] for r in rows}),
         'generated_matches_cluster_majority': sum(r['generated_colour'] == r['training_majority']
                                                   for r in agree) / max(len(agree), 1),
         'clusters': rows}
  for r in rows:
    print(f"cluster {r['cluster']}: {r['members']:3d} cars, mostly {r['training_majority']!s:7s} "
          f"in training -> generated cars are {r['generated_colour']} ({r['vote_share']:.0%})")
  print(f'purity {purity:.2f} over {total} cars; distinct generated colours: '
        f"{res['palette_colours_in_generation']}")
  print('RESULT ' + json.dumps(res))


if __name__ == '__main__':
  flags.mark_flag_as_required('workdir')
  app.run(main)
