"""Every hdgan_jax module imports, and module-level imports form no cycle.

Library modules import at the top of the file, so an import cycle would show
as a "partially initialized module" error rather than hide in a function. Two
checks: a static one over the source (module-level imports must form a DAG,
whatever order modules are first imported in), and one fresh interpreter that
imports every module, sorted by name.
"""

import ast
import os
import pkgutil
import subprocess
import sys

import hdgan_jax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.dirname(hdgan_jax.__file__)


def all_modules():
  names = [m.name for m in pkgutil.walk_packages(hdgan_jax.__path__, 'hdgan_jax.')]
  return sorted(['hdgan_jax'] + names)


def _path(module):
  base = os.path.join(os.path.dirname(PKG), *module.split('.'))
  return os.path.join(base, '__init__.py') if os.path.isdir(base) else base + '.py'


def _is_main_guard(node):
  return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
          and isinstance(node.test.left, ast.Name) and node.test.left.id == '__name__')


def _top_level_imports(module, known):
  """Project modules that ``module`` imports while it is being imported."""
  with open(_path(module), encoding='utf-8') as f:
    tree = ast.parse(f.read())
  package = module if _path(module).endswith('__init__.py') else module.rpartition('.')[0]
  out, todo = set(), list(tree.body)
  while todo:
    node = todo.pop()
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
      continue
    if _is_main_guard(node):   # runs only as a script (python -m), never on import
      continue
    if isinstance(node, ast.Import):
      out.update(a.name for a in node.names if a.name in known)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:
        base = '.'.join(package.split('.')[:len(package.split('.')) - node.level + 1]
                        + ([base] if base else []))
      for a in node.names:   # `from pkg import submodule` depends on the submodule
        sub = f'{base}.{a.name}'
        out.add(sub if sub in known else base)
    todo.extend(ast.iter_child_nodes(node))
  return {m for m in out if m in known and m != module}


def test_module_level_imports_form_a_dag():
  known = set(all_modules())
  graph = {m: _top_level_imports(m, known) for m in known}
  state, stack = {}, []

  def visit(m):
    state[m] = 'open'
    stack.append(m)
    for n in sorted(graph[m]):
      if state.get(n) == 'open':
        cycle = stack[stack.index(n):] + [n]
        raise AssertionError('module-level import cycle: ' + ' -> '.join(cycle))
      if n not in state:
        visit(n)
    stack.pop()
    state[m] = 'done'

  for m in sorted(known):
    if m not in state:
      visit(m)


# Imports every module in turn; flags that script modules (hdgan_jax.main,
# hdgan_jax.convert.__main__) define on import are dropped after each, so two
# scripts' --config flags do not collide.
_SCRIPT = r'''
import importlib, sys, traceback
from absl import flags
failed = []
for name in sys.argv[1:]:
  before = set(flags.FLAGS)
  try:
    importlib.import_module(name)
  except Exception:  # pylint: disable=broad-except
    failed.append(name + ':\n' + traceback.format_exc(limit=3))
  for flag in set(flags.FLAGS) - before:
    delattr(flags.FLAGS, flag)
print('\n'.join(failed) if failed else 'OK')
sys.exit(1 if failed else 0)
'''


def test_every_module_imports_in_a_fresh_interpreter():
  mods = all_modules()
  assert 'hdgan_jax.data.cityscapes' in mods and 'hdgan_jax.edit_cli' in mods
  r = subprocess.run([sys.executable, '-c', _SCRIPT, *mods], capture_output=True, text=True,
                     cwd=ROOT, timeout=120, check=False)
  assert r.returncode == 0, r.stdout + r.stderr[-3000:]


def test_leaf_modules_import_no_project_code():
  """data.errors and data.cityscapes are leaves: any module may import them."""
  known = set(all_modules())
  for leaf in ('hdgan_jax.data.errors', 'hdgan_jax.data.cityscapes'):
    assert _top_level_imports(leaf, known) == set(), leaf


def test_edit_api_does_not_import_its_command_line():
  known = set(all_modules())
  assert 'hdgan_jax.edit_cli' not in _top_level_imports('hdgan_jax.edit', known)
  assert 'hdgan_jax.edit' in _top_level_imports('hdgan_jax.edit_cli', known)
