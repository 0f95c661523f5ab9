"""The run page's loss curves: inline SVG from metrics rows."""

import math
import xml.etree.ElementTree as ET

from hdgan_jax import plots, reporting


def test_charts_group_losses_and_skip_non_finite(tmp_path):
  rows = [{'step': s, 'G_GAN': 1.0 / (s + 1), 'G_VGG': 3.0, 'G_total': 9.0, 'D_real': 0.5,
           'D_fake': math.nan if s == 2 else 0.4} for s in range(5)]
  rows.append({'step': 4, 'eval/semantic_pixel_acc': 0.7})
  rows.append({'step': 4, 'eval/fid': 300.0})
  charts = plots.run_charts(rows)
  assert len(charts) == 4
  for svg in charts:
    ET.fromstring(svg)  # well-formed XML
  g, d, f, e = charts
  assert 'FID' in f and 'semantic' not in f
  assert 'G_GAN' in g and 'G_VGG' in g and 'G_total' not in g
  assert 'D_fake' in d and 'nan' not in d.lower()
  assert 'semantic_pixel_acc' in e and '<circle' in e  # one point: a dot, not a line
  assert plots.line_chart({'x': ([1], [math.inf])}, 't') == ''


def test_index_html_embeds_the_curves(tmp_path):
  with open(tmp_path / 'metrics.jsonl', 'w') as f:
    f.write('{"step": 1, "G_GAN": 1.0, "D_real": 0.5}\n{"step": 2, "G_GAN": 0.5, "D_real": 0.4}\n')
  page = open(reporting.write_index(str(tmp_path), 'run')).read()
  assert page.count('<svg') == 2 and 'generator losses' in page
