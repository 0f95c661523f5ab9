"""Fuzzed label and instance maps through every reader: a clean error or success, inputs untouched.

Random sizes (1x1, 100x37, ...), ids (beyond label_nc, negative in 32-bit
TIFFs), dtypes (uint8, uint16, int32, 1-bit) and broken files (empty, garbage,
truncated, JPEG, JPEG data under a .png name, RGB pictures) go through

* the data check (``hdgan_jax.data.check.run_checks``),
* the generation input path (``user_files.pair_inputs`` + ``pipeline.load_pair``),
* the editor (``edit_cli.prepare``: reading, validating and editing the maps),

and, for a few fixed cases, the command lines. Each must succeed or raise a
ValueError (DataError, EditError) or FileNotFoundError whose message names an
input file (the broken one, when one file is broken for sure); any other
exception fails the test. Input files must be byte-identical afterwards.
"""

import contextlib
import hashlib
import io
import os
import subprocess
import sys
import tempfile
import types

from hypothesis import HealthCheck, event, given, settings, strategies as st
import numpy as np
from PIL import Image

from conftest import tiny_model
from hdgan_jax import config as config_lib
from hdgan_jax import edit_cli
from hdgan_jax.data import check, pipeline, user_files
from test_data_fixtures import make_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPECTED = (ValueError, FileNotFoundError)   # DataError and EditError are ValueErrors
SURE_BROKEN = ('empty', 'garbage', 'jpeg', 'jpeg_as_png')   # never read as a map
KINDS = ('png', 'png', 'png', 'tiff', 'bmp', 'rgb', 'truncated') + SURE_BROKEN
FUZZ = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])

sizes = st.sampled_from([(1, 1), (1, 7), (100, 37), (37, 100), (3, 2)]) | st.tuples(
    st.integers(1, 40), st.integers(1, 40))


@st.composite
def map_spec(draw):
  """How one map file is made: its kind, size, dtype, id range and seed."""
  return {'kind': draw(st.sampled_from(KINDS)), 'size': draw(sizes),
          'dtype': draw(st.sampled_from(['uint8', 'uint16', 'int32', 'bool'])),
          'high': draw(st.sampled_from([1, 4, 34, 40, 255, 30000, 2**31 - 1])),
          'seed': draw(st.integers(0, 2**16))}


@st.composite
def pairs(draw):
  """Specs of a label and an instance map, and whether the ids are consistent.

  Half the pairs are well-formed (lossless files of one size, label ids 0..4,
  instance ids equal to them) so that the success path sees odd sizes too.
  """
  label, inst = draw(map_spec()), draw(map_spec())
  if draw(st.booleans()):
    lossless = st.sampled_from(['png', 'tiff', 'bmp'])
    label.update(kind=draw(lossless), dtype=draw(st.sampled_from(['uint8', 'uint16'])), high=4)
    inst.update(kind=draw(lossless), size=label['size'])
    return label, inst, True
  if draw(st.booleans()):
    inst['size'] = label['size']
  return label, inst, draw(st.booleans())


def _array(spec):
  h, w = spec['size']
  rng = np.random.default_rng(spec['seed'])
  dtype = np.dtype(spec['dtype'])
  if dtype == bool:
    return rng.integers(0, 2, (h, w)).astype(bool)
  top = min(spec['high'], np.iinfo(dtype).max)
  low = -3 if dtype == np.int32 and spec['seed'] % 3 == 0 else 0
  return rng.integers(low, top + 1, (h, w), dtype=np.int64).astype(dtype)


def _encode(arr, fmt):
  buf = io.BytesIO()
  Image.fromarray(arr).save(buf, format=fmt)
  return buf.getvalue()


def write_map(stem, spec, arr=None):
  """Writes the map ``spec`` describes at ``stem`` + an extension; returns the path."""
  arr = _array(spec) if arr is None else arr
  kind, rng = spec['kind'], np.random.default_rng(spec['seed'] + 1)
  ext, data = '.png', None
  as_8bit = np.clip(arr.astype(np.int64), 0, 255).astype(np.uint8)
  if kind in ('png', 'truncated'):
    fmt = 'TIFF' if arr.dtype == np.int32 else 'PNG'   # PNG has no 32-bit grey
    ext, data = ('.tif' if fmt == 'TIFF' else '.png'), _encode(arr, fmt)
    if kind == 'truncated':
      data = data[:max(1, len(data) // 2)]
  elif kind == 'tiff':
    ext, data = '.tif', _encode(arr, 'TIFF')
  elif kind == 'bmp':
    ext, data = '.bmp', _encode(as_8bit, 'BMP')
  elif kind == 'rgb':
    data = _encode(rng.integers(0, 256, arr.shape + (3,), dtype=np.uint8), 'PNG')
  elif kind == 'empty':
    data = b''
  elif kind == 'garbage':
    data = rng.bytes(int(rng.integers(1, 300)))
  else:   # 'jpeg' (a .jpg file) or 'jpeg_as_png' (JPEG data under a .png name)
    ext, data = ('.jpg' if kind == 'jpeg' else '.png'), _encode(as_8bit, 'JPEG')
  with open(stem + ext, 'wb') as f:
    f.write(data)
  return stem + ext


def write_pair(label_stem, inst_stem, label, inst, consistent):
  arr = _array(label)
  inst_arr = None
  if consistent and arr.dtype != bool and arr.min() >= 0 and arr.max() < 65536:
    inst_arr = arr.astype(np.uint16)   # stuff everywhere: instance id == label id
    inst = dict(inst, size=label['size'])
  return write_map(label_stem, label, arr), write_map(inst_stem, inst, inst_arr)


def hashes(paths):
  return {p: hashlib.sha256(open(p, 'rb').read()).hexdigest() for p in paths}


def assert_clean(fn, files, broken=()):
  """``fn()`` succeeds or raises an expected error naming a file; ``files`` stay the same."""
  before = hashes(files)
  try:
    fn()
    event('success')
  except EXPECTED as e:
    msg = str(e)
    event(f'{type(e).__name__} {getattr(e, "kind", "")}'.strip())
    named = [p for p in (broken or files) if str(p) in msg]
    assert named, f'{type(e).__name__} names none of {broken or files}: {msg}'
  assert hashes(files) == before, 'an input file was modified'


def sure_broken(paths_specs):
  return [p for p, s in paths_specs if s['kind'] in SURE_BROKEN]


# ------------------------------------------------------------- (a) the data check

@FUZZ
@given(pair=pairs(), photo_jpeg=st.booleans())
def test_data_check_on_fuzzed_maps(pair, photo_jpeg):
  label, inst, consistent = pair
  with tempfile.TemporaryDirectory() as root:
    for d in ('train_label', 'train_inst', 'train_img'):
      os.makedirs(os.path.join(root, d))
    lp, ip = write_pair(os.path.join(root, 'train_label', 's_gtFine_labelIds'),
                        os.path.join(root, 'train_inst', 's_gtFine_instanceIds'),
                        label, inst, consistent)
    h, w = label['size']
    photo = os.path.join(root, 'train_img', 's_leftImg8bit' + ('.jpg' if photo_jpeg else '.png'))
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(photo)
    files = [lp, ip, photo]
    assert_clean(lambda: check.run_checks(make_config(root), full=True), files)


# ------------------------------------------------------------- (b) generation inputs

def _generation_config():
  c = config_lib.get_config()
  c.model = tiny_model()
  c.data.resize_or_crop = 'none'
  return c


def _generate_inputs(labels, instances, config):
  for lp, ip in user_files.pair_inputs(labels, instances):
    batch = pipeline.load_pair(lp, ip, config)
    assert batch['label'].shape[0] == 1 and batch['label'].shape[1:3] == batch['inst'].shape[1:3]


@FUZZ
@given(pair=pairs(), folders=st.booleans())
def test_generation_inputs_on_fuzzed_maps(pair, folders):
  label, inst, consistent = pair
  config = _generation_config()
  with tempfile.TemporaryDirectory() as root:
    ld, idir = (os.path.join(root, 'L'), os.path.join(root, 'I')) if folders else (root, root)
    os.makedirs(ld, exist_ok=True)
    os.makedirs(idir, exist_ok=True)
    lp, ip = write_pair(os.path.join(ld, 's_labelIds'), os.path.join(idir, 's_instanceIds'),
                        label, inst, consistent)
    args = (ld, idir) if folders else (lp, ip)
    assert_clean(lambda: _generate_inputs(*args, config), [lp, ip])


@FUZZ
@given(good=map_spec(), bad=map_spec(), broken_role=st.sampled_from(['label', 'inst']))
def test_one_broken_file_is_the_one_named(good, bad, broken_role):
  """With a valid partner, the error names exactly the broken file."""
  good = dict(good, kind='png', dtype='uint8', high=4)
  bad = dict(bad, kind=SURE_BROKEN[bad['seed'] % len(SURE_BROKEN)], size=good['size'])
  label, inst = (bad, good) if broken_role == 'label' else (good, bad)
  config = _generation_config()
  with tempfile.TemporaryDirectory() as root:
    lp = write_map(os.path.join(root, 's_labelIds'), label)
    ip = write_map(os.path.join(root, 's_instanceIds'), inst)
    broken = [lp if broken_role == 'label' else ip]
    state = types.SimpleNamespace(raised=False)

    def run():
      try:
        _generate_inputs(lp, ip, config)
      except EXPECTED:
        state.raised = True
        raise

    assert_clean(run, [lp, ip], broken)
    assert state.raised


# ------------------------------------------------------------- (c) the editor

def _edit_flags(root, lp, ip, ops):
  ops_path = os.path.join(root, 'ops.json')
  with open(ops_path, 'w', encoding='utf-8') as f:
    f.write(ops)
  out = os.path.join(root, 'out')
  os.makedirs(out, exist_ok=True)
  return types.SimpleNamespace(
      labels=lp, instances=ip, ops=ops_path, styles=None, clusters=None,
      out_label=os.path.join(out, 'l.png'), out_inst=os.path.join(out, 'i.png'),
      out_styles=None, label_nc=35, thing_classes=['24', '26'], allow_lossy_maps=False), ops_path


@FUZZ
@given(pair=pairs(), ops=st.sampled_from(['[]', '[{"op": "remove", "instance": 7}]',
                                          '[{"op": "change_class", "instance": 3, "to": 26}]',
                                          '[{"op": "add", "mask": [[1]], "class": 26, '
                                          '"at": [0, 0]}]', '[{"op": ']))
def test_editor_on_fuzzed_maps(pair, ops):
  label, inst, consistent = pair
  with tempfile.TemporaryDirectory() as root:
    lp, ip = write_pair(os.path.join(root, 'l'), os.path.join(root, 'i'), label, inst, consistent)
    flags_, ops_path = _edit_flags(root, lp, ip, ops)
    assert_clean(lambda: edit_cli.prepare(flags_), [lp, ip, ops_path])
    assert os.listdir(os.path.join(root, 'out')) == []   # prepare never writes


# ------------------------------------------------------------- the command lines

def _cli(*args):
  return subprocess.run([sys.executable, '-m', *args], capture_output=True, text=True, cwd=ROOT,
                        timeout=180, check=False)


def _folder_dataset(root, label_kind='png'):
  spec = {'kind': label_kind, 'size': (32, 64), 'dtype': 'uint8', 'high': 30, 'seed': 1}
  paths = []
  for d, stem, s in (('train_label', 's_gtFine_labelIds', spec),
                     ('train_inst', 's_gtFine_instanceIds', dict(spec, kind='png'))):
    os.makedirs(os.path.join(root, d))
    paths.append(write_map(os.path.join(root, d, stem), s))
  os.makedirs(os.path.join(root, 'train_img'))
  paths.append(os.path.join(root, 'train_img', 's_leftImg8bit.png'))
  Image.fromarray(np.zeros((32, 64, 3), np.uint8)).save(paths[-1])
  return paths


def _config_args(root):
  return [f'--config={os.path.join(ROOT, "experiments", "cityscapes.py")}',
          '--config.data.source=folder', f'--config.data.root={root}']


def test_data_check_cli_reports_a_garbage_map_and_leaves_it(tmp_path):
  paths = _folder_dataset(tmp_path, 'garbage')
  before = hashes(paths)
  r = _cli('hdgan_jax.data.check', *_config_args(tmp_path))
  assert r.returncode == 1 and 'Traceback' not in r.stdout + r.stderr
  assert paths[0] in r.stdout and 'unreadable' in r.stdout
  assert hashes(paths) == before and sorted(os.listdir(tmp_path)) == [
      'train_img', 'train_inst', 'train_label']


def test_data_build_cli_refuses_a_jpeg_label_in_one_line(tmp_path):
  paths = _folder_dataset(tmp_path / 'data', 'jpeg')
  before = hashes(paths)
  r = _cli('hdgan_jax.data.build', *_config_args(tmp_path / 'data'), f'--out={tmp_path / "out"}')
  lines = r.stderr.strip().splitlines()
  assert r.returncode == 1 and 'Traceback' not in r.stderr and len(lines) == 1, r.stderr
  assert lines[0].startswith(f'error: {paths[0]}: label maps must be lossless')
  assert 'invents classes' in lines[0] and 'PNG' in lines[0]
  assert hashes(paths) == before and not (tmp_path / 'out').exists()


def test_edit_cli_names_an_empty_instance_map(tmp_path):
  spec = {'kind': 'png', 'size': (4, 5), 'dtype': 'uint8', 'high': 20, 'seed': 2}
  lp = write_map(str(tmp_path / 'l'), spec)
  ip = write_map(str(tmp_path / 'i'), dict(spec, kind='empty'))
  (tmp_path / 'ops.json').write_text('[]')
  files = [lp, ip, str(tmp_path / 'ops.json')]
  before = hashes(files)
  r = _cli('hdgan_jax.edit', f'--labels={lp}', f'--instances={ip}',
           f'--ops={tmp_path / "ops.json"}', f'--out_label={tmp_path / "o.png"}',
           f'--out_inst={tmp_path / "oi.png"}')
  lines = r.stderr.strip().splitlines()
  assert r.returncode == 1 and 'Traceback' not in r.stderr and len(lines) == 2, r.stderr
  assert lines[0].startswith(f'error: {ip}: cannot read the image')
  assert hashes(files) == before
  with contextlib.suppress(FileNotFoundError):
    assert not os.listdir(tmp_path / 'out')
  assert not (tmp_path / 'o.png').exists()
