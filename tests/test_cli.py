"""Command-line surface: console scripts resolve, --help stays light, one log file, no chatter."""

import ast
import importlib.util
import os
import subprocess
import sys
import tomllib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def scripts():
  with open(os.path.join(REPO, 'pyproject.toml'), 'rb') as f:
    return tomllib.load(f)['project']['scripts']


def test_console_scripts_point_at_functions():
  """Each target is a top-level function of an existing module (read, not imported: the
  command-line modules each define their absl flags; tests/test_imports.py imports them)."""
  for name, target in sorted(scripts().items()):
    module, func = target.split(':')
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, (name, module)
    with open(spec.origin, encoding='utf-8') as f:
      tree = ast.parse(f.read())
    names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert func in names, (name, target)


def test_main_help_does_not_import_jax_or_tensorflow():
  code = ('import sys; import hdgan_jax.main; '
          'print(sorted(m for m in ("jax", "tensorflow", "flax") if m in sys.modules))')
  r = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True,
                     timeout=120)
  assert r.returncode == 0, r.stderr
  assert r.stdout.strip() == '[]', r.stdout


def test_generate_needs_a_model_and_says_so(tmp_path):
  r = subprocess.run([sys.executable, '-m', 'hdgan_jax.main', '--config=experiments/demo.py',
                      '--mode=generate', f'--labels={tmp_path}'], cwd=REPO, capture_output=True,
                     text=True, timeout=120)
  assert r.returncode != 0
  assert '--workdir=RUN or --checkpoint=latest_net_G.pth' in r.stderr, r.stderr
  assert 'Traceback' not in r.stderr
