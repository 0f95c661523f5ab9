r"""The dataset check: find bad data before a long run trips on it.

This file owns scanning a configured dataset and reporting what would break
or silently spoil training: example counts, a class histogram, files without
a partner, maps of one example that differ in size, label ids >= label_nc
(or colours not in the palette, instance ids beyond 16 bits), unreadable or
truncated files, and sizes the generator cannot take after preprocessing.

Training calls :func:`run_checks` at start: with ``data.check='sample'`` it
decodes an evenly spaced sample of examples (pairing is always checked in
full), with ``'full'`` every example, with ``'off'`` nothing. Problems raise
:class:`DataError` whose message names the files and the fix.

  python -m hdgan_jax.data.check --config=experiments/cityscapes.py \
      --config.data.root=/data/cityscapes [--full] [--verbose]

The check only reads: it never writes into the dataset (nor anywhere else).
"""

import collections
import dataclasses
import sys

from absl import flags
from absl import logging
from ml_collections import config_flags
import numpy as np

from hdgan_jax import console
from hdgan_jax.data import cityscapes, pipeline, sources
from hdgan_jax.data.errors import DataError

SAMPLE_SIZE = 16      # examples decoded by a 'sample' check
MAX_LISTED = 20       # files listed per kind of problem
KINDS = {'unpaired': 'files without a partner',
         'names': 'two files of one role with the same scene name',
         'lossy': 'lossy (JPEG/WebP) label / instance maps',
         'unreadable': 'unreadable or truncated files',
         'size': 'size problems', 'ids': 'label / instance ids out of range',
         'setup': 'set-up problems'}

__all__ = ['DataError', 'Report', 'run_checks']


@dataclasses.dataclass
class Report:
  """What a check found. ``problems`` maps a kind (see KINDS) to messages."""
  source: str = ''
  root: str = ''
  phase: str = ''
  num_examples: int = 0
  num_checked: int = 0
  full: bool = False
  skipped: bool = False
  sizes: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  class_histogram: dict = dataclasses.field(default_factory=dict)
  num_instances: int = 0
  problems: dict = dataclasses.field(default_factory=lambda: collections.defaultdict(list))
  notes: list = dataclasses.field(default_factory=list)

  @property
  def ok(self) -> bool:
    return not any(self.problems.values())

  def add(self, kind, message):
    self.problems[kind].append(message)

  @property
  def unpaired(self):
    return list(self.problems.get('unpaired', []))

  @property
  def unreadable(self):
    return list(self.problems.get('unreadable', []))

  @property
  def size_mismatches(self):
    return list(self.problems.get('size', []))

  @property
  def bad_ids(self):
    return list(self.problems.get('ids', []))

  def problem_text(self) -> str:
    lines = []
    for kind, title in KINDS.items():
      msgs = self.problems.get(kind, [])
      if msgs:
        lines.append(f'{title} ({len(msgs)}):')
        lines += [f'  {m}' for m in msgs[:MAX_LISTED]]
        if len(msgs) > MAX_LISTED:
          lines.append(f'  ... and {len(msgs) - MAX_LISTED} more')
    return '\n'.join(lines)

  def format(self, class_names=None) -> str:
    """A human-readable report."""
    if self.skipped:
      return 'data check skipped (data.check=off)'
    what = 'all' if self.num_checked == self.num_examples else 'a sample of'
    lines = [f'data.source={self.source} root={self.root or "-"} phase={self.phase}',
             f'examples: {self.num_examples} ({what} {self.num_checked} decoded)']
    if self.sizes:
      lines.append('sizes (WxH): ' + ', '.join(f'{s}: {n}' for s, n in self.sizes.most_common()))
    if self.class_histogram:
      total = sum(self.class_histogram.values()) or 1
      lines.append('class histogram (pixels of the decoded examples):')
      for cid, count in sorted(self.class_histogram.items()):
        name = f' {class_names[cid]}' if class_names and cid in class_names else ''
        lines.append(f'  {cid:4d}{name:22s} {count:12d}  {100.0 * count / total:6.2f}%')
      lines.append(f'instances (ids >= 1000, Cityscapes things): {self.num_instances}')
    lines += [f'note: {n}' for n in self.notes]
    lines.append(self.problem_text() if not self.ok else 'no problems found')
    return '\n'.join(lines)


def _sample(n, full):
  if full or n <= SAMPLE_SIZE:
    return list(range(n))
  return sorted(set(np.linspace(0, n - 1, SAMPLE_SIZE).round().astype(int).tolist()))


def _list_source(config, report):
  """The source to decode, recording listing problems; None when nothing can be read."""
  d = config.data
  source = sources.make_source(config, allow_unpaired=True)
  report.notes += getattr(source, 'notes', [])
  for msg in getattr(source, 'unpaired', []):
    report.add('unpaired', msg + ': add the missing partner file or remove this one')
  for msg in getattr(source, 'duplicates', []):
    report.add('names', msg)
  if not d.get('allow_lossy_maps', False):
    for path, what in getattr(source, 'lossy', []):
      report.add('lossy', f'{path}: {what} stored in a lossy format; export it as PNG (lossy '
                 'compression changes ids and invents classes)')
  if d.source in ('cityscapes', 'folder') and not len(source):
    report.add('setup', f'no paired examples under {d.root} (data.phase={d.phase})')
    return None
  return source


def _check_example(source, i, config, prep, report, out_sizes):
  try:
    ex = source[i]
  except DataError as e:
    report.add(e.kind if e.kind in KINDS else 'setup', str(e))
    return
  h, w = ex['label'].shape[:2]
  report.sizes[f'{w}x{h}'] += 1
  if config.model.label_nc:
    for cid, count in enumerate(np.bincount(ex['label'].ravel())):
      if count:
        report.class_histogram[cid] = report.class_histogram.get(cid, 0) + int(count)
  if 'inst' in ex:
    present = np.bincount(ex['inst'].ravel(), minlength=1000)[1000:]  # 16-bit: a cheap table
    report.num_instances += int(np.count_nonzero(present))
  try:
    out_sizes[pipeline.check_output_size(prep, (w, h), ex['name'])] += 1
  except DataError as e:
    report.add('size', str(e))


def run_checks(config, full=None) -> Report:
  """Checks the configured dataset; raises DataError listing every problem found.

  Args:
    config: the full config (``data.*`` and ``model.*`` are read).
    full: True decodes every example, False a sample of ``SAMPLE_SIZE``;
      None follows ``data.check`` ('off' returns a skipped report at once).

  Returns:
    the :class:`Report` when no problem was found.
  """
  d = config.data
  if d.check not in ('off', 'sample', 'full'):
    raise ValueError(f"data.check={d.check!r}: use 'off', 'sample' or 'full'")
  report = Report(source=d.source, root=d.root, phase=d.phase)
  if full is None:
    if d.check == 'off':
      report.skipped = True
      return report
    full = d.check == 'full'
  report.full = bool(full)
  try:
    prep = pipeline.make_prep(config)
    source = _list_source(config, report)
  except DataError as e:
    report.add(e.kind if e.kind in KINDS else 'setup', str(e))
    source = None
  except ValueError as e:
    report.add('setup', str(e))
    source = None
  if source is not None:
    report.num_examples = len(source)
    indices = _sample(len(source), full)
    report.num_checked = len(indices)
    out_sizes = collections.Counter()
    for i in indices:
      _check_example(source, i, config, prep, report, out_sizes)
    if len(out_sizes) > 1 and config.batch_size > 1:
      report.add('size', f'examples have different sizes after preprocessing '
                 f'({", ".join(f"{w}x{h}" for w, h in out_sizes)}) and batch_size='
                 f'{config.batch_size} > 1: use a crop mode or --config.batch_size=1')
    if report.num_examples < config.batch_size:
      report.add('setup', f'{report.num_examples} examples, fewer than batch_size='
                 f'{config.batch_size}: lower --config.batch_size or add data')
    if not config.model.no_instance and not source.has_inst:
      report.notes.append('the source has no instance maps: set --config.model.no_instance=True')
  logging.info('data check: %d examples, %d decoded, %s', report.num_examples,
               report.num_checked, 'ok' if report.ok else 'PROBLEMS')
  if not report.ok:
    err = DataError(f'the data check (data.check={d.check}, --config.data.check=off skips it) '
                    f'found problems in data.source={d.source} root={d.root}:\n'
                    + report.problem_text())
    err.report = report
    raise err
  return report


def _class_names(config):
  """Cityscapes' class names for a 35-class model (the report's histogram), else None."""
  if config.model.label_nc == cityscapes.LABEL_NC:
    return dict(cityscapes.NAMES)
  return None


def _check(config, full) -> None:
  """Prints the report; a dataset with problems prints it too and exits with status 1."""
  try:
    report = run_checks(config, full=full)
  except DataError as e:
    report = getattr(e, 'report', None)
    if report is None:
      raise
    print(report.format(_class_names(config)))
    sys.exit(1)
  print(report.format(_class_names(config)))


def _check_from_flags() -> None:
  config = flags.FLAGS.config
  _check(config, flags.FLAGS.full or config.data.check == 'full')


main = console.tool_main(_check_from_flags)


def _define_flags() -> None:
  config_flags.DEFINE_config_file(
      'config', None, 'Experiment file (e.g. experiments/cityscapes.py); data.* and model.* '
      'say what to check, e.g. --config.data.root=/data/cityscapes.', lock_config=True)
  flags.DEFINE_bool('full', False, f'Decode every example (default: an evenly spaced sample '
                    f'of {SAMPLE_SIZE}, or all with data.check=full). Pairing is always '
                    'checked in full.')
  flags.DEFINE_bool('verbose', False, 'Library logs and tracebacks on the terminal.')
  flags.mark_flags_as_required(['config'])


def run() -> None:
  """Console script ``hdgan-data-check`` (flags are defined here, not on import)."""
  console.run_tool(main, _define_flags)


if __name__ == '__main__':
  run()
