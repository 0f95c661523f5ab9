r"""Our train step / inference against NVIDIA's original, back to back, same shapes and threads.

Each row runs ``benchmarks/train_step.py`` (ours) and ``benchmarks/original/step.py``
(the original's code from a checkout outside this repository) as separate
processes, one after the other, and prints the ratio of median times and of
peak RSS. The last line is ``RESULT {json}``. Our training rows run as
``hdgan_jax``'s training does, re-executed under glibc's huge-page malloc
(``host_memory``; inference rows are not); the original runs in the default
environment, or under the same tunable with ``--original_huge_pages`` (it does
not gain from it: README, CPU convolutions).

  .venv/bin/python benchmarks/vs_original.py --pix2pixhd=/tmp/pix2pixHD [--rows=infer512,train128]
"""

import argparse
import json
import os
import subprocess
import sys

from hdgan_jax import host_memory

HERE = os.path.dirname(os.path.abspath(__file__))
ROWS = {  # name: (shared flags, our extra flags, the original's extra flags)
    'infer512': ('--netG=global --ngf=64 --height=512 --width=1024 --infer', '', ''),
    'infer2048': ('--netG=local --ngf=32 --height=1024 --width=2048 --infer --steps=2', '', ''),
    'train128': ('--netG=global --ngf=64 --height=128 --width=256 --num_D=3', '--vgg19', '--vgg'),
    'train256': ('--netG=global --ngf=32 --height=256 --width=512', '--novgg', ''),
}


def _run(cmd, env=None):
  out = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
  lines = [l for l in out.stdout.splitlines() if l.startswith('RESULT ')]
  if out.returncode or not lines:
    sys.exit(f'error: {" ".join(cmd)} failed:\n{out.stderr[-2000:]}')
  return json.loads(lines[-1][len('RESULT '):])


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--pix2pixhd', required=True, help='checkout of NVIDIA/pix2pixHD')
  ap.add_argument('--rows', default='infer512,train128,train256')
  ap.add_argument('--steps', type=int, default=7,
                  help='timed steps per side (medians): single steps on the 2-core VM are '
                       'bimodal (README, CPU convolutions), three were too few')
  ap.add_argument('--original_huge_pages', action='store_true',
                  help="run the original under the huge-page malloc that ours re-executes "
                       'with (hdgan_jax/host_memory.py), to see whether it gains from it too')
  a = ap.parse_args()
  py = sys.executable
  results = []
  for name in a.rows.split(','):
    shared, ours_extra, orig_extra = ROWS[name]
    steps = [] if '--steps' in shared else [f'--steps={a.steps}']
    ours = _run([py, os.path.join(HERE, 'train_step.py'), *shared.split(), *ours_extra.split(),
                 *steps, '--warmup=1'])
    orig = _run([py, os.path.join(HERE, 'original', 'step.py'), f'--pix2pixhd={a.pix2pixhd}',
                 *shared.replace('--no', '--no_').split(), *orig_extra.split(), *steps],
                env=_original_env(a.original_huge_pages))
    row = dict(row=name, ours_s=ours['median_s'], original_s=orig['median_s'],
               time_ratio=ours['median_s'] / orig['median_s'], ours_rss_mib=ours['peak_rss_mib'],
               original_rss_mib=orig['peak_rss_mib'],
               rss_ratio=ours['peak_rss_mib'] / orig['peak_rss_mib'],
               ours_fraction_of_matmul=ours.get('fraction_of_matmul'),
               ours_huge_page_malloc=ours.get('huge_page_malloc'),
               original_huge_page_malloc=a.original_huge_pages,
               ours_min_s=ours.get('min_s'), original_min_s=orig.get('min_s'),
               ours_times_s=ours.get('times_s'), original_times_s=orig.get('times_s'))
    results.append(row)
    print(f"{name:10s} ours {row['ours_s']:7.2f}s  original {row['original_s']:7.2f}s  "
          f"time x{row['time_ratio']:.2f}  peak RSS {row['ours_rss_mib']:.0f} / "
          f"{row['original_rss_mib']:.0f} MiB = x{row['rss_ratio']:.2f}", flush=True)
  print('RESULT ' + json.dumps({'rows': results}))


def _original_env(huge_pages: bool):
  env = dict(os.environ)
  env.pop('GLIBC_TUNABLES', None)
  if huge_pages:
    env['GLIBC_TUNABLES'] = host_memory.HUGE_PAGE_TUNABLE
  return env


if __name__ == '__main__':
  main()
