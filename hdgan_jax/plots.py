"""Loss curves as inline SVG: the run page shows them with no plotting library and no server.

:func:`line_chart` draws several named series over a shared step axis, with
axis ticks and a legend, as a self-contained ``<svg>`` string that
``reporting.write_index`` embeds in ``index.html``. Non-finite values are
skipped (a diverged step must not break the page).
"""

import html
import math
from typing import Dict, List, Sequence, Tuple

COLOURS = ('#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2',
           '#17becf')
Series = Dict[str, Tuple[Sequence[float], Sequence[float]]]


def _ticks(lo: float, hi: float, n: int = 5) -> List[float]:
  """About ``n`` round tick values covering [lo, hi]."""
  if hi <= lo:
    return [lo]
  raw = (hi - lo) / max(n - 1, 1)
  mag = 10 ** math.floor(math.log10(raw))
  step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=10 * mag)
  start = math.ceil(lo / step) * step
  return [start + i * step for i in range(int((hi - start) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
  return f'{v:.3g}' if abs(v) < 1e4 else f'{v:.2e}'


def line_chart(series: Series, title: str, *, width: int = 560, height: int = 260) -> str:
  """An SVG chart of ``{name: (steps, values)}``; empty string when there is nothing to plot."""
  clean = {}
  for name, (xs, ys) in series.items():
    pts = [(float(x), float(y)) for x, y in zip(xs, ys) if math.isfinite(float(y))]
    if pts:
      clean[name] = pts
  if not clean:
    return ''
  xs = [x for pts in clean.values() for x, _ in pts]
  ys = [y for pts in clean.values() for _, y in pts]
  x0, x1 = min(xs), max(xs)
  y0, y1 = min(ys), max(ys)
  if x1 == x0:
    x1 = x0 + 1
  if y1 == y0:
    y0, y1 = y0 - 0.5, y1 + 0.5
  left, right, top, bottom = 56, 170, 28, 34
  pw, ph = width - left - right, height - top - bottom
  sx = lambda x: left + (x - x0) / (x1 - x0) * pw
  sy = lambda y: top + (1 - (y - y0) / (y1 - y0)) * ph
  out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
         f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
         f'<rect width="{width}" height="{height}" fill="white"/>',
         f'<text x="{left}" y="16" font-size="13" font-weight="bold">{html.escape(title)}</text>',
         f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="white" stroke="#bbb"/>']
  for t in _ticks(y0, y1):
    y = sy(t)
    out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
               f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
  for t in _ticks(x0, x1):
    x = sx(t)
    out.append(f'<text x="{x:.1f}" y="{top + ph + 14}" text-anchor="middle">{_fmt(t)}</text>')
  out.append(f'<text x="{left + pw / 2:.1f}" y="{height - 4}" text-anchor="middle">step</text>')
  for i, (name, pts) in enumerate(sorted(clean.items())):
    colour = COLOURS[i % len(COLOURS)]
    path = ' '.join(f'{sx(x):.1f},{sy(y):.1f}' for x, y in pts)
    if len(pts) == 1:
      out.append(f'<circle cx="{sx(pts[0][0]):.1f}" cy="{sy(pts[0][1]):.1f}" r="2.5" fill="{colour}"/>')
    else:
      out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{path}"/>')
    ly = top + 12 + 15 * i
    out.append(f'<line x1="{left + pw + 8}" x2="{left + pw + 24}" y1="{ly - 4}" y2="{ly - 4}" '
               f'stroke="{colour}" stroke-width="2"/><text x="{left + pw + 28}" y="{ly}">'
               f'{html.escape(name.split("/")[-1][:24])}</text>')
  out.append('</svg>')
  return ''.join(out)


def run_charts(rows: Sequence[Dict]) -> List[str]:
  """Charts for a run's metric rows: G losses, D losses, eval metrics (those present)."""
  groups = (('generator losses', lambda k: k.startswith('G_') and k != 'G_total'),
            ('discriminator losses', lambda k: k in ('D_real', 'D_fake')),
            ('FID (lower is better)', lambda k: k == 'eval/fid'),
            ('evaluation scores', lambda k: k.startswith('eval/') and k != 'eval/fid'))
  charts = []
  for title, keep in groups:
    series: Dict[str, Tuple[List[float], List[float]]] = {}
    for r in rows:
      for k, v in r.items():
        if keep(k) and isinstance(v, (int, float)) and not isinstance(v, bool):
          xs, ys = series.setdefault(k, ([], []))
          xs.append(r['step'])
          ys.append(v)
    svg = line_chart(series, title)
    if svg:
      charts.append(svg)
  return charts
