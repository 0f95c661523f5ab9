"""Object-level editing: pure ops keeping the Cityscapes id encoding, and the CLI."""

import json
import os
import subprocess
import sys

from absl import flags
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from PIL import Image

from hdgan_jax import edit, edit_cli, editor_shapes
from hdgan_jax.data import cityscapes
from hdgan_jax.edit import EditError
from hdgan_jax.features import instance_class

THING = cityscapes.THING_IDS
KW = dict(label_nc=35, thing_classes=THING)
CLASSES = [7, 8, 11, 21, 23, 24, 26, 33]   # road .. sky are stuff; 24, 26, 33 things


@st.composite
def states(draw):
  """A random small valid map: thing pixels get ids class*1000 + k, k in 0..2."""
  h, w = draw(st.integers(2, 7)), draw(st.integers(2, 7))
  cells = st.tuples(st.sampled_from(CLASSES), st.integers(0, 2))
  grid = draw(st.lists(cells, min_size=h * w, max_size=h * w))
  label = np.array([c for c, _ in grid]).reshape(h, w)
  k = np.array([k for _, k in grid]).reshape(h, w)
  inst = np.where(np.isin(label, THING), label * 1000 + k, label)
  return edit.EditState.create(label, inst)


def assert_encoding(state):
  edit.check_state(state)
  assert not set(state.styles) - set(np.unique(state.inst).tolist())


def frozen(state):
  return state.label.copy(), state.inst.copy(), dict(state.styles)


def unchanged(state, copy):
  np.testing.assert_array_equal(state.label, copy[0])
  np.testing.assert_array_equal(state.inst, copy[1])
  assert state.styles == copy[2]


@settings(max_examples=60, deadline=None)
@given(states(), st.data(), st.sampled_from(CLASSES + [0, 34]))
def test_change_class_keeps_encoding(state, data, new_class):
  inst_id = data.draw(st.sampled_from(np.unique(state.inst).tolist()))
  state = edit.set_style(state, inst_id, 1)
  before = frozen(state)
  out = edit.change_class(state, inst_id, new_class, **KW)
  unchanged(state, before)
  assert_encoding(out)
  mask = before[1] == inst_id
  assert (out.label[mask] == new_class).all()
  np.testing.assert_array_equal(out.inst[~mask], before[1][~mask])
  if new_class in THING and new_class != instance_class(inst_id):
    new_id = out.inst[mask][0]
    assert new_id not in before[1] and (out.inst[mask] == new_id).all()
    assert inst_id not in out.styles


@settings(max_examples=60, deadline=None)
@given(states(), st.data())
def test_remove_fills_from_nearest_stuff(state, data):
  inst_id = data.draw(st.sampled_from(np.unique(state.inst).tolist()))
  mask = state.inst == inst_id
  source = ~mask & ~np.isin(state.label, THING)
  before = frozen(state)
  if not source.any():
    with pytest.raises(EditError, match='no stuff pixel'):
      edit.remove_instance(state, inst_id, thing_classes=THING)
    return
  out = edit.remove_instance(state, inst_id, thing_classes=THING)
  unchanged(state, before)
  assert_encoding(out)
  assert inst_id not in out.inst
  assert not np.isin(out.label[mask], THING).any()
  np.testing.assert_array_equal(out.inst[~mask], state.inst[~mask])
  ys, xs = np.nonzero(source)
  for y, x in zip(*np.nonzero(mask)):     # the filled label is one at the nearest distance
    d = (ys - y) ** 2 + (xs - x) ** 2
    assert out.label[y, x] in state.label[ys[d == d.min()], xs[d == d.min()]]


@settings(max_examples=60, deadline=None)
@given(states(), st.data(), st.sampled_from(CLASSES))
def test_add_object_clips_and_keeps_encoding(state, data, cls):
  h, w = state.label.shape
  mh, mw = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
  mask = np.array(data.draw(st.lists(st.booleans(), min_size=mh * mw, max_size=mh * mw)))
  mask = mask.reshape(mh, mw)
  y, x = data.draw(st.integers(-5, h + 1)), data.draw(st.integers(-5, w + 1))
  full = np.zeros((h + 20, w + 20), bool)        # the mask placed on a padded canvas
  full[y + 10:y + 10 + mh, x + 10:x + 10 + mw] = mask
  placed = full[10:10 + h, 10:10 + w]
  before = frozen(state)
  if not placed.any():
    with pytest.raises(EditError, match='outside|no object'):
      edit.add_object(state, mask, cls, (y, x), **KW)
    return
  out = edit.add_object(state, mask, cls, (y, x), style=2, **KW)
  unchanged(state, before)
  assert_encoding(out)
  assert (out.label[placed] == cls).all()
  np.testing.assert_array_equal(out.inst[~placed], state.inst[~placed])
  new_id = int(out.inst[placed][0])
  assert out.styles[new_id] == 2
  if cls in THING:
    assert new_id // 1000 == cls and new_id not in state.inst


def small():
  label = np.array([[7, 7, 26, 26], [7, 24, 26, 26], [23, 23, 23, 23]])
  inst = np.array([[7, 7, 26000, 26000], [7, 24000, 26000, 26000], [23, 23, 23, 23]])
  return edit.EditState.create(label, inst)


def test_fresh_ids_and_stuff_targets():
  s = small()
  assert edit.fresh_instance_id(s.inst, 26) == 26001
  assert edit.fresh_instance_id(s.inst, 27) == 27000
  out = edit.change_class(s, 26000, 7, **KW)          # stuff: merges into road
  assert (out.inst[:2, 2:] == 7).all()
  full = np.full((1, 1000), 26000) + np.arange(1000)
  with pytest.raises(EditError, match='1000 instances'):
    edit.fresh_instance_id(full, 26)
  assert edit.change_class(s, 26000, 26, **KW) is s    # own class: nothing to do


def test_errors_are_clear():
  s = small()
  with pytest.raises(EditError, match='class 35 does not exist'):
    edit.change_class(s, 26000, 35, **KW)
  with pytest.raises(EditError, match='instance 26005 is not in the instance map'):
    edit.remove_instance(s, 26005, thing_classes=THING)
  with pytest.raises(EditError, match='entirely outside'):
    edit.add_object(s, np.ones((2, 2)), 26, (3, 0), **KW)
  with pytest.raises(EditError, match='cluster index'):
    edit.set_style(s, 26000, -1)
  with pytest.raises(EditError, match='out of range'):
    edit.set_style(s, 26000, 4, clusters={26: np.zeros((4, 3))})
  with pytest.raises(EditError, match='break the Cityscapes id encoding'):
    edit.EditState.create([[7, 26]], [[7, 27000]])
  assert issubclass(EditError, ValueError)


def test_apply_edits_json_ops(tmp_path):
  Image.fromarray(np.array([[255, 0], [255, 255]], np.uint8)).save(tmp_path / 'm.png')
  ops = [{'op': 'style', 'instance': 26000, 'cluster': 3},
         {'op': 'change_class', 'instance': 24000, 'to': 25, 'style': [0.5, 1, 2]},
         {'op': 'add', 'mask': 'm.png', 'class': 26, 'at': [1, 0], 'style': 1},
         {'op': 'add', 'mask': [[1]], 'class': 8, 'at': [0, 0]},
         {'op': 'remove', 'instance': 23}]
  s = small()
  out = edit.apply_edits(s, json.loads(json.dumps(ops)), base_dir=str(tmp_path), **KW)
  np.testing.assert_array_equal(out.inst, [[8, 7, 26000, 26000], [26001, 25000, 26000, 26000],
                                           [26001, 26001, 7, 7]])
  assert out.styles == {26000: 3, 25000: (0.5, 1.0, 2.0), 26001: 1}
  assert edit.styles_to_json(out.styles) == {'25000': [0.5, 1.0, 2.0], '26000': 3, '26001': 1}
  with pytest.raises(EditError, match=r"operation 1 \('remove'\): instance 23 is not"):
    edit.apply_edits(s, [{'op': 'remove', 'instance': 23}, {'op': 'remove', 'instance': 23}],
                     **KW)
  with pytest.raises(EditError, match='needs keys'):
    edit.apply_edits(s, [{'op': 'add', 'mask': [[1]], 'class': 26}], **KW)
  with pytest.raises(EditError, match='"op" must be one of'):
    edit.apply_edits(s, [{'op': 'explode'}], **KW)


def run_cli(tmp_path, ops, *extra, module='hdgan_jax.edit'):
  (tmp_path / 'ops.json').write_text(json.dumps(ops))
  args = [sys.executable, '-m', module, f'--label={tmp_path / "l.png"}',
          f'--inst={tmp_path / "i.png"}', f'--ops={tmp_path / "ops.json"}',
          f'--out_label={tmp_path / "out" / "l.png"}', f'--out_inst={tmp_path / "out" / "i.png"}',
          f'--out_styles={tmp_path / "out" / "s.json"}', *extra]
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  return subprocess.run(args, capture_output=True, text=True, cwd=root, check=False)


@pytest.fixture
def files(tmp_path):
  s = small()
  Image.fromarray(s.label.astype(np.uint8)).save(tmp_path / 'l.png')
  Image.fromarray(s.inst.astype(np.uint16)).save(tmp_path / 'i.png')
  (tmp_path / 'out').mkdir()
  return {p: (tmp_path / p).read_bytes() for p in ('l.png', 'i.png')}


@pytest.mark.parametrize('module', ['hdgan_jax.edit', 'hdgan_jax.edit_cli'])
def test_cli_success(tmp_path, files, module):
  r = run_cli(tmp_path, [{'op': 'change_class', 'instance': 24000, 'to': 27, 'style': 2}],
              module=module)
  assert r.returncode == 0, r.stderr
  label, inst = edit_cli.read_maps(tmp_path / 'out' / 'l.png', tmp_path / 'out' / 'i.png')
  assert inst[1, 1] == 27000 and label[1, 1] == 27
  assert Image.open(tmp_path / 'out' / 'i.png').mode.startswith('I')
  assert json.loads((tmp_path / 'out' / 's.json').read_text()) == {'27000': 2}
  assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == ['i.png', 'l.png', 's.json']
  assert {p: (tmp_path / p).read_bytes() for p in files} == files


@pytest.mark.parametrize('ops,extra,message', [
    ([{'op': 'style', 'instance': 26000, 'cluster': 0}, {'op': 'remove', 'instance': 99}],
     (), 'instance 99 is not in the instance map'),
    ([], ('--out_label={l}',), 'refusing to overwrite an input'),
])
def test_cli_failure_writes_nothing(tmp_path, files, ops, extra, message):
  extra = [e.format(l=tmp_path / 'l.png') for e in extra]
  r = run_cli(tmp_path, ops, *extra)
  assert r.returncode == 1 and message in r.stderr and 'Traceback' not in r.stderr
  assert list((tmp_path / 'out').iterdir()) == []
  assert {p: (tmp_path / p).read_bytes() for p in files} == files


def test_importing_defines_no_flags():
  assert 'out_label' not in flags.FLAGS and 'thing_classes' not in flags.FLAGS


def test_malformed_json_files_name_the_file_and_place(tmp_path):
  ops = tmp_path / 'ops.json'
  ops.write_text('[{"op": "remove",\n  "instance": 26000,}]')
  with pytest.raises(EditError, match=r'ops.json: not valid JSON at line 2, column 21'):
    edit.load_ops(str(ops))
  ops.write_text('{"op": "remove"}')
  with pytest.raises(EditError, match='JSON list of operations'):
    edit.load_ops(str(ops))
  styles = tmp_path / 'styles.json'
  for text, where in (('{"26000": 3,\n"26001": }', 'line 2, column'),
                      ('{"car": 3}', "key 'car'"), ('{"26000": -1}', 'instance 26000'),
                      ('[3]', 'JSON object')):
    styles.write_text(text)
    with pytest.raises(EditError) as e:
      edit.load_styles(str(styles))
    assert str(styles) in str(e.value) and where in str(e.value)
  styles.write_bytes(b'\xff\xfe\x00')
  with pytest.raises(EditError, match='styles.json: not a UTF-8'):
    edit.load_styles(str(styles))


def test_load_state_names_the_files(tmp_path, files):
  with pytest.raises(EditError) as e:
    edit_cli.load_state(tmp_path / 'l.png', tmp_path / 'i.png', label_nc=10)
  assert 'l.png: label ids' in str(e.value) and '--label_nc=10' in str(e.value)
  Image.fromarray(np.full((3, 4), 26000, np.uint16)).save(tmp_path / 'j.png')
  with pytest.raises(EditError) as e:
    edit_cli.load_state(tmp_path / 'l.png', tmp_path / 'j.png')
  assert 'l.png' in str(e.value) and 'j.png' in str(e.value) and 'encoding' in str(e.value)


def test_cli_flag_names_match_main_and_errors_are_short(tmp_path, files):
  (tmp_path / 'ops.json').write_text('[]')
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  base = [sys.executable, '-m', 'hdgan_jax.edit', f'--labels={tmp_path / "l.png"}',
          f'--instances={tmp_path / "i.png"}', f'--ops={tmp_path / "ops.json"}',
          f'--out_label={tmp_path / "out" / "l.png"}', f'--out_inst={tmp_path / "out" / "i.png"}']
  r = subprocess.run(base, capture_output=True, text=True, cwd=root, check=False)
  assert r.returncode == 0, r.stderr
  Image.fromarray(small().label.astype(np.uint8)).save(tmp_path / 'l.jpg')
  bad = [a.replace('l.png', 'l.jpg') if a.startswith('--labels') else a for a in base]
  bad[-2:] = [f'--out_label={tmp_path / "o.png"}', f'--out_inst={tmp_path / "oi.png"}']
  r = subprocess.run(bad, capture_output=True, text=True, cwd=root, check=False)
  lines = r.stderr.strip().splitlines()
  assert r.returncode == 1 and 'Traceback' not in r.stderr and len(lines) == 2
  assert lines[0].startswith(f'error: {tmp_path / "l.jpg"}: label maps must be lossless')
  assert 'invents classes' in lines[0] and lines[1] == 'Nothing was written.'
  r = subprocess.run(bad + ['--verbose'], capture_output=True, text=True, cwd=root, check=False)
  assert r.returncode == 1 and 'Traceback' in r.stderr
  r = subprocess.run(bad + ['--allow_lossy_maps'], capture_output=True, text=True, cwd=root,
                     check=False)
  # read with a warning; JPEG has changed some ids here, which the encoding check then finds
  assert 'allow_lossy_maps' in r.stderr and 'must be lossless' not in r.stderr, r.stderr
  assert {p: (tmp_path / p).read_bytes() for p in files} == files


# ------------------------------------------------------------- drawing tools (the editor's)

def test_stroke_mask_is_the_set_of_pixels_near_the_polyline():
  m = editor_shapes.stroke_mask((20, 30), [[5, 3], [5, 20], [15, 20]], 2)
  yy, xx = np.mgrid[0:20, 0:30]
  d1 = np.where((xx >= 3) & (xx <= 20), abs(yy - 5), np.inf)  # distance to each segment
  d1 = np.minimum(d1, np.minimum(np.hypot(yy - 5, xx - 3), np.hypot(yy - 5, xx - 20)))
  d2 = np.where((yy >= 5) & (yy <= 15), abs(xx - 20), np.inf)
  d2 = np.minimum(d2, np.minimum(np.hypot(yy - 5, xx - 20), np.hypot(yy - 15, xx - 20)))
  np.testing.assert_array_equal(m, np.minimum(d1, d2) <= 2)
  dot = editor_shapes.stroke_mask((9, 9), [[4, 4]], 1.5)
  assert dot.sum() == 9 and dot[4, 4] and not dot[4, 6]
  assert editor_shapes.stroke_mask((5, 5), [[-10, -10], [-10, 30]], 2).sum() == 0  # off-image
  with pytest.raises(ValueError, match='radius'):
    editor_shapes.stroke_mask((5, 5), [[1, 1]], 0)


@settings(max_examples=40, deadline=None)
@given(states(), st.data(), st.sampled_from(CLASSES))
def test_paint_changes_exactly_the_stroke(state, data, cls):
  h, w = state.label.shape
  pts = data.draw(st.lists(st.tuples(st.integers(-2, h + 1), st.integers(-2, w + 1)),
                           min_size=1, max_size=4))
  radius = data.draw(st.sampled_from([0.5, 1, 1.5, 3]))
  mask = editor_shapes.stroke_mask((h, w), pts, radius)
  before = frozen(state)
  if not mask.any():
    with pytest.raises(EditError, match='outside'):
      edit.paint(state, pts, cls, radius, **KW)
    return
  out = edit.paint(state, [list(p) for p in pts], cls, radius, **KW)
  unchanged(state, before)
  assert_encoding(out)
  assert (out.label[mask] == cls).all()
  np.testing.assert_array_equal(out.label[~mask], state.label[~mask])
  np.testing.assert_array_equal(out.inst[~mask], state.inst[~mask])
  ids = np.unique(out.inst[mask])
  assert len(ids) == 1
  if cls in THING:   # one new instance of the painted class
    assert ids[0] // 1000 == cls and ids[0] not in state.inst
  else:              # stuff: id = class
    assert ids[0] == cls


def test_fill_takes_the_connected_region_of_one_label():
  label = np.array([[7, 7, 8, 7], [7, 8, 8, 7], [8, 8, 7, 7], [26, 26, 7, 7]])
  inst = np.where(label == 26, 26000, label)
  s = edit.EditState.create(label, inst)
  out = edit.fill(s, (0, 0), 23, **KW)          # the top-left road region only (4-connected)
  region = np.zeros_like(label, bool)
  region[0, :2] = region[1, 0] = True
  np.testing.assert_array_equal(out.label, np.where(region, 23, label))
  np.testing.assert_array_equal(out.inst, np.where(region, 23, inst))
  out = edit.fill(s, (0, 3), 24, **KW)          # a thing: one new person instance
  right = (label == 7) & ~region
  assert (out.inst[right] == 24000).all() and (out.label[right] == 24).all()
  assert_encoding(out)
  with pytest.raises(EditError, match='already class 7'):
    edit.fill(s, (0, 0), 7, **KW)
  with pytest.raises(EditError, match='outside'):
    edit.fill(s, (4, 0), 23, **KW)


@pytest.mark.parametrize('shape,cls', [('car', 26), ('person', 24)])
def test_stamp_pastes_a_silhouette_as_a_new_instance(shape, cls):
  m = editor_shapes.silhouette(shape, 40)
  assert m.shape == (40, round(40 * editor_shapes.ASPECT[shape]))
  assert 0.35 < m.mean() < 0.95 and m[-1].any() and m[0].any()  # touches ground and top
  label = np.full((64, 128), 7)
  s = edit.EditState.create(label, label)
  s = edit.add_object(s, np.ones((3, 3)), cls, (0, 0), **KW)   # an existing instance cls*1000
  out = edit.stamp(s, shape, (30, 60), 40, style=1, **KW)
  new_id = cls * 1000 + 1
  placed = out.inst == new_id
  y0, x0 = 30 - m.shape[0] // 2, 60 - m.shape[1] // 2
  np.testing.assert_array_equal(placed[y0:y0 + m.shape[0], x0:x0 + m.shape[1]], m)
  assert placed.sum() == m.sum() and out.styles == {new_id: 1}
  assert (out.inst == cls * 1000).sum() == 9
  truck = edit.stamp(s, 'car', (30, 60), 20, new_class=27, **KW)
  assert 27000 in truck.inst and (truck.label[truck.inst == 27000] == 27).all()
  with pytest.raises(EditError, match='unknown shape'):
    edit.stamp(s, 'tree', (3, 3), 10, **KW)
  with pytest.raises(EditError, match='size'):
    edit.stamp(s, 'car', (3, 3), 2, **KW)


def test_blank_scene_and_ops_in_apply_edits():
  s = edit.blank_state(8, 12, (23, 7), 0.25)
  assert (s.label[:2] == 23).all() and (s.label[2:] == 7).all()
  np.testing.assert_array_equal(s.label, s.inst)
  assert (edit.blank_state(4, 4, [21]).label == 21).all()
  for classes, why in (((26,), 'has instances'), ((7, 8, 9), 'one class or two'),
                       ((40,), 'does not exist')):
    with pytest.raises(EditError, match=why):
      edit.blank_state(4, 4, classes)
  out = edit.apply_edits(s, [{'op': 'paint', 'points': [[5, 1], [5, 3]], 'class': 24,
                              'radius': 1},
                             {'op': 'stamp', 'shape': 'car', 'at': [5, 8], 'size': 4},
                             {'op': 'fill', 'at': [0, 0], 'class': 21}], **KW)
  assert 24000 in out.inst and 26000 in out.inst and (out.label[:2] == 21).all()
  assert_encoding(out)
  with pytest.raises(EditError, match=r"operation 0 \('paint'\): stroke"):
    edit.apply_edits(s, [{'op': 'paint', 'points': [], 'class': 24, 'radius': 1}], **KW)
