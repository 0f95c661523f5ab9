"""notebooks/quickstart.ipynb runs top to bottom (its smoke mode: a tiny run) and shows its results.

The notebook is executed with nbclient in an IPython kernel of this test's
own interpreter (the venv), from notebooks/ as Colab-less Jupyter would,
with ``HDGAN_NOTEBOOK_SMOKE=1`` (tiny config, 4 steps) and its workdir in
tmp_path. A failing cell fails the test with that cell's source and error.
"""

import json
import os
import re
import sys

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, 'notebooks', 'quickstart.ipynb')
CELL_TIMEOUT_S = 240


def _kernel_manager(tmp_path) -> KernelManager:
  """A kernel running ``sys.executable`` (never a system-wide 'python3' kernelspec)."""
  spec_dir = tmp_path / 'kernels' / 'hdgan_test'
  spec_dir.mkdir(parents=True)
  (spec_dir / 'kernel.json').write_text(json.dumps({
      'argv': [sys.executable, '-m', 'ipykernel_launcher', '-f', '{connection_file}'],
      'display_name': 'hdgan_jax test', 'language': 'python'}))
  ksm = KernelSpecManager(kernel_dirs=[str(tmp_path / 'kernels')])
  return KernelManager(kernel_name='hdgan_test', kernel_spec_manager=ksm)


def _text(cell) -> str:
  parts = []
  for out in cell.get('outputs', []):
    parts.append(out.get('text', ''))
    parts.append(out.get('data', {}).get('text/plain', ''))
  return ''.join(parts)


def _kinds(cell) -> set:
  return {k for out in cell.get('outputs', []) for k in out.get('data', {})}


def _code_cell(nb, needle: str):
  return next(c for c in nb.cells if c.cell_type == 'code' and needle in c.source)


def test_committed_notebook_has_no_outputs():
  nb = nbformat.read(NOTEBOOK, as_version=4)
  nbformat.validate(nb)
  code = [c for c in nb.cells if c.cell_type == 'code']
  assert len(code) >= 8
  assert all(not c.outputs and c.execution_count is None for c in code), \
      'clear the outputs before committing (Jupyter: Edit > Clear outputs of all cells)'


def test_quickstart_runs_top_to_bottom(tmp_path, monkeypatch):
  monkeypatch.setenv('HDGAN_NOTEBOOK_SMOKE', '1')
  monkeypatch.setenv('HDGAN_NOTEBOOK_WORKDIR', str(tmp_path / 'run'))
  monkeypatch.setenv('TF_CPP_MIN_LOG_LEVEL', '2')
  nb = nbformat.read(NOTEBOOK, as_version=4)
  client = NotebookClient(nb, km=_kernel_manager(tmp_path), timeout=CELL_TIMEOUT_S,
                          resources={'metadata': {'path': os.path.join(ROOT, 'notebooks')}})
  try:
    client.execute()
  except CellExecutionError as e:  # names the cell's source and the traceback
    plain = re.sub(r'\x1b\[[0-9;]*m', '', str(e))  # IPython colours the traceback
    pytest.fail(f'a notebook cell failed:\n{plain}', pytrace=False)

  install = _code_cell(nb, 'REPO_URL = ')
  assert 'nothing to install' in _text(install)
  assert (tmp_path / 'run' / 'checkpoints').is_dir()
  samples = _code_cell(nb, 'plots.run_charts')
  assert _kinds(samples) >= {'image/png', 'image/svg+xml'}
  assert 'generator losses' in ''.join(o.get('data', {}).get('image/svg+xml', '')
                                       for o in samples.outputs)
  assert 'image/png' in _kinds(_code_cell(nb, 'renderer = render.Renderer(r)'))
  assert (tmp_path / 'run' / 'features' / 'clusters.npz').is_file()
  styles = _code_cell(nb, 'edit.set_style')
  assert 'style clusters' in _text(styles) and 'image/png' in _kinds(styles)
  edits = _code_cell(nb, 'edit.apply_edits')
  assert "'op': 'change_class'" in _text(edits) and 'image/png' in _kinds(edits)
  fid = _text(_code_cell(nb, 'evaluate_run'))
  assert 'eval/fid' in fid or 'FID skipped' in fid, fid
