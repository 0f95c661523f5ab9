"""The editor's HTTP server under hostile and broken requests, over a fake renderer (no training).

Every bad request must get a JSON 4xx answer (or, for a body that never
arrives, an answer or a close within the timeout), leave the session as it
was, and leave the server answering good requests.
"""

import base64
import http.client
import io
import json
import re
import socket
import sys
import threading
import time
import types

import numpy as np
import pytest
from PIL import Image

from conftest import tiny_run_config
from hdgan_jax import editor, editor_server

TIMEOUT = 1.0
CAR = 26000


class FakeRenderer:
  """What Session needs of render.Renderer: label_nc, clusters and render()."""

  def __init__(self):
    self.config = tiny_run_config()  # label_nc 35, sizes in multiples of 4, no resizing
    self.clusters = {26: np.zeros((3, 2), np.float32)}
    self.calls = 0

  def render(self, label, inst, choices=None, rng=0):
    self.calls += 1
    for v in (choices or {}).values():  # like features.feature_map_from_clusters
      if np.ndim(v) == 1 and len(v) != 2:
        raise ValueError(f'style vector has {len(v)} values, the model has 2')
    img = np.zeros(label.shape + (3,), np.uint8)
    img[..., 0] = (label * 7 + int(rng)) % 256
    return img


@pytest.fixture(name='srv')
def fixture_srv(tmp_path):
  label = np.full((8, 12), 7, np.int64)  # road
  inst = label.copy()
  label[2:5, 3:7], inst[2:5, 3:7] = 26, CAR  # one car
  session = editor.Session(FakeRenderer(), label, inst, out_dir=str(tmp_path / 'out'))
  server = editor.serve(session, port=0, timeout=TIMEOUT)
  threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
  yield types.SimpleNamespace(session=session, port=server.server_address[1], tmp=tmp_path,
                              handler=server.RequestHandlerClass)
  server.shutdown()
  server.server_close()


def request(srv, method, path, body=None, headers=None, token=True):
  """(status, decoded JSON or raw bytes) over http.client, with proper Host and token."""
  conn = http.client.HTTPConnection('127.0.0.1', srv.port, timeout=5)
  hdrs = {'X-Editor-Token': srv.session.token} if token and method == 'POST' else {}
  hdrs.update(headers or {})
  data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
  if method == 'POST' and data is None:
    data = b'{}'
  conn.request(method, path, body=data, headers=hdrs)
  r = conn.getresponse()
  raw = r.read()
  conn.close()
  is_json = r.getheader('Content-Type') == 'application/json'
  return r.status, (json.loads(raw) if is_json else raw)


def raw_request(srv, data: bytes, wait=5.0) -> bytes:
  """Sends bytes as they are; returns everything until the server closes."""
  with socket.create_connection(('127.0.0.1', srv.port), timeout=wait) as s:
    s.sendall(data)
    out = b''
    while True:
      try:
        chunk = s.recv(65536)
      except ConnectionResetError:
        break
      if not chunk:
        break
      out += chunk
  return out


def status_of(resp: bytes) -> int:
  m = re.match(rb'HTTP/1\.[01] (\d{3}) ', resp)
  assert m, resp[:200]
  return int(m.group(1))


def json_of(resp: bytes):
  return json.loads(resp.split(b'\r\n\r\n', 1)[1])


def snapshot(session):
  return (session.state.label.copy(), session.state.inst.copy(), dict(session.state.styles),
          len(session.history), session.seed)


def assert_unchanged(session, before):
  after = snapshot(session)
  np.testing.assert_array_equal(after[0], before[0])
  np.testing.assert_array_equal(after[1], before[1])
  assert after[2:] == before[2:]


def assert_alive(srv):
  status, state = request(srv, 'GET', '/state')
  assert status == 200 and state['width'] == 12 and state['height'] == 8


def test_good_requests_and_page_token(srv):
  status, page = request(srv, 'GET', '/')
  assert status == 200 and srv.session.token.encode() in page
  assert b'meta name="editor-token"' in page and b'<script>' not in page  # no inline script
  status, js = request(srv, 'GET', '/static/editor.js')
  assert status == 200 and b"'X-Editor-Token': TOKEN" in js
  assert request(srv, 'GET', '/image.png?123')[1][:4] == b'\x89PNG'
  assert request(srv, 'GET', '/labels.png')[1][:4] == b'\x89PNG'
  status, info = request(srv, 'GET', '/pick?x=4&y=3')
  assert status == 200 and info['instance'] == CAR and info['clusters'] == 3
  status, out = request(srv, 'POST', '/edit', {'op': 'style', 'instance': CAR, 'cluster': 2})
  assert status == 200 and out['message'] == 'applied style'
  assert srv.session.state.styles[CAR] == 2
  status, out = request(srv, 'POST', '/edit', {'op': 'style', 'instance': CAR, 'cluster': 9})
  assert status == 200 and out['message'].startswith('not applied')  # valid shape, bad value
  status, out = request(srv, 'POST', '/edit', {'op': 'style', 'instance': CAR,
                                               'cluster': [0.5] * 7})
  assert status == 200 and out['message'].startswith('not applied')  # vector length: renderer
  assert request(srv, 'POST', '/undo')[0] == 200 and CAR not in srv.session.state.styles
  assert request(srv, 'POST', '/resample', b'')[0] == 200 and srv.session.seed == 1
  status, out = request(srv, 'POST', '/save')
  assert status == 200 and sorted(p.name for p in (srv.tmp / 'out').iterdir()) == sorted(
      editor.SAVE_NAMES)


@pytest.mark.parametrize('query', ['x=abc&y=1', 'y=1', 'x=1', '', 'x=99999999999999999999&y=1',
                                   'x=-1&y=1', 'x=12&y=0', 'x=0&y=8', 'x=1&x=2&y=1', 'x=%ff&y=1',
                                   'x=1.5&y=1', 'x=%E2%91%A0&y=1'])
def test_malformed_pick_is_400(srv, query):
  status, out = request(srv, 'GET', '/pick?' + query)
  assert status == 400 and out['error']
  assert_alive(srv)


def test_unknown_path_and_method(srv):
  status, out = request(srv, 'GET', '/etc/passwd')
  assert status == 404 and 'no such page' in out['error']
  assert request(srv, 'POST', '/nope')[0] == 404
  status, out = request(srv, 'GET', '/edit')
  assert status == 405 and out['error']
  for method in ('POST', 'PUT', 'DELETE', 'OPTIONS'):
    assert request(srv, method, '/state')[0] == 405
  status, out = request(srv, 'FROB', '/state')
  assert status == 501 and out['error']  # http.server's own errors are JSON too
  assert status_of(raw_request(srv, b'garbage\r\n\r\n')) == 400
  assert_alive(srv)


BAD_BODIES = [
    (b'\xff\xfe{not utf-8', 'not UTF-8'), (b'{"op": ', 'not JSON'), (b'[1, 2]', 'JSON object'),
    (b'"text"', 'JSON object'), (b'{"op": "explode", "instance": 1}', '"op" must be'),
    (b'{"op": "remove"}', 'needs keys'), (b'{"op": "remove", "instance": 26000, "x": 1}',
                                          'needs keys'),
    (b'{"op": "remove", "instance": "26000"}', 'integer'),
    (b'{"op": "remove", "instance": 1e999}', 'integer'),
    (b'{"op": "remove", "instance": 99999999999999999999999}', 'integer'),
    (b'{"op": "remove", "instance": true}', 'integer'),
    (b'{"op": "style", "instance": 26000, "cluster": NaN}', 'not JSON'),
    (b'{"op": "style", "instance": 26000, "cluster": [1e999]}', 'finite'),
    (b'{"op": "style", "instance": 26000, "cluster": {"a": 1}}', 'cluster index'),
    (b'{"op": "add", "mask": "/etc/passwd", "class": 26, "at": [0, 0]}', 'file paths'),
    (b'{"op": "add", "mask": [[1], [1, 1]], "class": 26, "at": [0, 0]}', 'rectangular'),
    (b'{"op": "add", "mask": [[1]], "class": 26, "at": [0]}', '[y, x]'),
    (b'[' * 100000 + b']' * 100000, 'not JSON'),
]


@pytest.mark.parametrize('body,why', BAD_BODIES)
def test_bad_edit_bodies_are_400_and_change_nothing(srv, body, why):
  before = snapshot(srv.session)
  status, out = request(srv, 'POST', '/edit', body, {'Content-Type': 'application/json'})
  assert status == 400 and why in out['error'], out
  assert_unchanged(srv.session, before)
  assert_alive(srv)


@pytest.mark.parametrize('body,why', [
    ({'path': '../../evil.png'}, 'needs keys'), ({'name': '../evil'}, 'refusing to save'),
    ({'name': '/tmp/evil'}, 'refusing to save'), ({'name': 'a/b'}, 'refusing to save'),
    ({'name': '..'}, 'refusing to save'), ({'name': ''}, 'refusing to save'),
    ({'name': 7}, 'must be a string')])
def test_save_outside_the_output_folder_is_refused(srv, body, why):
  status, out = request(srv, 'POST', '/save', body)
  assert status == 400 and why in out['error'], out
  assert not (srv.tmp / 'out').exists() and not (srv.tmp / 'evil').exists()


def test_save_name_symlink_out_is_refused(srv):
  (srv.tmp / 'out').mkdir()
  (srv.tmp / 'out' / 'x_labelIds.png').symlink_to(srv.tmp / 'elsewhere.png')
  status, out = request(srv, 'POST', '/save', {'name': 'x'})
  assert status == 400 and 'outside' in out['error']
  assert not (srv.tmp / 'elsewhere.png').exists()
  status, out = request(srv, 'POST', '/save', {'name': 'scene-1.v2'})
  assert status == 200 and (srv.tmp / 'out' / 'scene-1.v2_synthesized.png').exists()


def png(arr, bits=8):
  buf = io.BytesIO()
  Image.fromarray(np.asarray(arr).astype(np.uint8 if bits == 8 else np.uint16)).save(buf, 'PNG')
  return base64.b64encode(buf.getvalue()).decode()


def test_new_scene_load_undo_redo(srv):
  s = srv.session
  status, out = request(srv, 'POST', '/new', {'classes': [23, 7], 'split': 0.25})
  assert status == 200 and out['undo'] == 1 and out['redo'] == 0
  assert (s.state.label[:2] == 23).all() and (s.state.label[2:] == 7).all()
  np.testing.assert_array_equal(s.state.inst, s.state.label)
  for body, why in (({'classes': [26]}, 'has instances'), ({'classes': [7], 'height': 7},
                                                          'multiples'),
                    ({'classes': [99]}, 'does not exist'), ({'classes': []}, '"classes"')):
    status, out = request(srv, 'POST', '/new', body)
    assert status == 400 and why in out['error'], (body, out)
  label = np.full((8, 12), 8, np.int64)
  label[1:4, 1:5] = 24
  inst = np.where(label == 24, 24003, label)
  status, out = request(srv, 'POST', '/load', {'labels': png(label), 'instances': png(inst, 16)})
  assert status == 200 and out['undo'] == 2, out
  np.testing.assert_array_equal(s.state.inst, inst)
  bad_label = label.copy()
  bad_label[0, 0] = 40
  for body, why in (({'labels': png(bad_label), 'instances': png(inst, 16)}, 'label'),
                    ({'labels': png(label), 'instances': png(inst + 1, 16)}, 'encoding'),
                    ({'labels': 'not base64!', 'instances': png(inst, 16)}, 'base64'),
                    ({'labels': base64.b64encode(b'GIF89a').decode(), 'instances': png(inst, 16)},
                     'not an image'),
                    ({'labels': png(label), 'instances': png(inst[:, :8], 16)},
                     'uploaded labels / uploaded instances: maps differ in size'),
                    ({'labels': png(label)}, 'needs keys')):
    status, out = request(srv, 'POST', '/load', body)
    assert status == 400 and why in out['error'], (why, out)
  np.testing.assert_array_equal(s.state.inst, inst)
  assert request(srv, 'POST', '/undo')[1]['redo'] == 1
  assert (s.state.label[:2] == 23).all()
  status, out = request(srv, 'POST', '/redo')
  assert status == 200 and out['message'] == 'redone'
  np.testing.assert_array_equal(s.state.inst, inst)
  assert request(srv, 'POST', '/redo')[1]['message'] == 'nothing to redo'
  request(srv, 'POST', '/undo')
  request(srv, 'POST', '/edit', {'op': 'fill', 'at': [0, 0], 'class': 8})
  assert s.future == []  # a new edit drops the redo branch


def test_paint_fill_stamp_ops_over_http(srv):
  s = srv.session
  before = s.state.label.copy()
  status, out = request(srv, 'POST', '/edit', {'op': 'paint', 'points': [[6, 1], [6, 3]],
                                               'class': 24, 'radius': 1})
  assert status == 200 and out['message'] == 'applied paint'
  changed = s.state.label != before
  assert changed.sum() > 0 and (s.state.label[changed] == 24).all()
  assert changed[5:8, 0:5].sum() == changed.sum()
  assert set(np.unique(s.state.inst[changed]).tolist()) == {24000}
  for op, why in (({'op': 'paint', 'points': [], 'class': 24, 'radius': 1}, 'points'),
                  ({'op': 'paint', 'points': [[1, 1]], 'class': 24, 'radius': 0}, 'radius'),
                  ({'op': 'paint', 'points': [[1]], 'class': 24, 'radius': 2}, '[y, x]'),
                  ({'op': 'stamp', 'shape': 'tree', 'at': [1, 1], 'size': 9}, 'shape'),
                  ({'op': 'stamp', 'shape': 'car', 'at': [1, 1], 'size': 2}, 'size')):
    status, out = request(srv, 'POST', '/edit', op)
    assert status == 400 and why in out['error'], (op, out)
  assert request(srv, 'POST', '/edit', {'op': 'stamp', 'shape': 'car', 'at': [4, 6],
                                        'size': 6})[1]['message'] == 'applied stamp'
  assert 26001 in s.state.inst
  assert request(srv, 'POST', '/edit', {'op': 'fill', 'at': [0, 0],
                                        'class': 23})[1]['message'] == 'applied fill'
  assert s.state.label[0, 0] == 23 and s.state.inst[0, 0] == 23


def test_thumbnails_without_features_say_so(srv):
  srv.session.renderer.clusters = None
  status, out = request(srv, 'GET', f'/thumbs?instance={CAR}')
  assert status == 200 and out['thumbnails'] == [] and 'no instance features' in out['message']
  assert 'no instance features' in request(srv, 'GET', '/state')[1]['no_features']
  assert request(srv, 'GET', '/thumbs?instance=26005')[0] == 400
  assert request(srv, 'GET', '/thumbs?instance=x')[0] == 400


def test_framing_and_colab_proxy_mode(srv):
  r = raw_request(srv, f'GET / HTTP/1.0\r\nHost: 127.0.0.1:{srv.port}\r\n\r\n'.encode())
  head = r.split(b'\r\n\r\n')[0].decode()
  assert 'X-Frame-Options: DENY' in head and "frame-ancestors 'none'" in head
  assert "default-src 'self'" in head
  proxied = {'Host': 'abc-8000-colab.googleusercontent.com',
             'Origin': 'https://abc-8000-colab.googleusercontent.com'}
  assert request(srv, 'POST', '/undo', headers=proxied)[0] == 403  # not in proxy mode
  server = types.SimpleNamespace(RequestHandlerClass=type(
      'H', (editor_server.Handler,), {}))
  editor_server.Server.allow_colab_proxy(server)  # the method on a stand-in: nothing shared
  assert server.RequestHandlerClass.colab_proxy and 'colab' in \
      server.RequestHandlerClass.frame_ancestors
  srv.handler.colab_proxy = True
  try:
    assert request(srv, 'POST', '/undo', headers=proxied)[0] == 200
    assert request(srv, 'POST', '/undo', headers={**proxied, 'Origin': 'https://evil.example'}
                   )[0] == 403
    assert request(srv, 'POST', '/undo', headers=proxied, token=False)[0] == 403
  finally:
    srv.handler.colab_proxy = False


def post_head(srv, length, extra=''):
  return (f'POST /edit HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n'
          f'X-Editor-Token: {srv.session.token}\r\nContent-Length: {length}\r\n{extra}\r\n').encode()


@pytest.mark.parametrize('length,code', [('abc', 400), ('-5', 400), ('1e3', 400), ('', 400),
                                         ('5, 6', 400), (str(10 << 20), 413),
                                         ('9' * 40, 400)])
def test_bad_content_length(srv, length, code):
  before = snapshot(srv.session)
  resp = raw_request(srv, post_head(srv, length) + b'{}')
  assert status_of(resp) == code and json_of(resp)['error']
  assert_unchanged(srv.session, before)
  assert_alive(srv)


def test_oversized_body_is_413_before_reading_it(srv):
  with socket.create_connection(('127.0.0.1', srv.port), timeout=5) as s:
    s.sendall(post_head(srv, 10 << 20))  # the 10 MB never come
    resp = s.recv(65536)
  assert status_of(resp) == 413
  assert_alive(srv)


def test_chunked_body_is_411(srv):
  head = (f'POST /undo HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nX-Editor-Token: '
          f'{srv.session.token}\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n')
  assert status_of(raw_request(srv, head.encode())) == 411
  assert_alive(srv)


def test_short_body_times_out_and_is_never_applied(srv):
  good = json.dumps({'op': 'remove', 'instance': CAR}).encode()
  before = snapshot(srv.session)
  start = time.monotonic()
  with socket.create_connection(('127.0.0.1', srv.port), timeout=5) as s:
    s.sendall(post_head(srv, len(good) + 10) + good)  # complete JSON, but 10 bytes short
    resp = s.recv(65536)
    took = time.monotonic() - start
    assert resp == b'' or status_of(resp) == 408
    assert took < TIMEOUT + 2
    try:
      s.sendall(b'x' * 10)  # the rest arrives too late
    except OSError:
      pass
  time.sleep(0.2)
  assert_unchanged(srv.session, before)
  # A client that gives up half-way: the truncated body is not applied either.
  resp = raw_request(srv, post_head(srv, len(good) + 10) + good[:-3], wait=5)
  assert resp == b'' or status_of(resp) == 408
  with socket.create_connection(('127.0.0.1', srv.port), timeout=5) as s:
    s.sendall(post_head(srv, len(good) + 10) + good)
    s.shutdown(socket.SHUT_WR)
    resp = s.recv(65536)
  assert resp == b'' or status_of(resp) in (400, 408)
  assert_unchanged(srv.session, before)
  assert_alive(srv)


def test_host_origin_and_token_checks(srv):
  edit = {'op': 'remove', 'instance': CAR}
  before = snapshot(srv.session)
  for host in ('evil.example', f'evil.example:{srv.port}', '127.0.0.1:1', f'127.0.0.2:{srv.port}'):
    for method, path in (('GET', '/'), ('GET', '/state'), ('POST', '/save')):
      status, out = request(srv, method, path, headers={'Host': host})
      assert status == 403 and 'Host' in out['error'], (host, path)
  assert status_of(raw_request(srv, b'GET /state HTTP/1.0\r\n\r\n')) == 403  # no Host at all
  for origin in ('http://evil.example', 'null', f'http://localhost:{srv.port}',
                 f'https://127.0.0.1:{srv.port}'):
    status, out = request(srv, 'POST', '/edit', edit, {'Origin': origin})
    assert status == 403 and 'cross-origin' in out['error']
  assert request(srv, 'POST', '/edit', edit, token=False)[0] == 403
  status, out = request(srv, 'POST', '/edit', edit, {'X-Editor-Token': 'guess'}, token=False)
  assert status == 403 and 'X-Editor-Token' in out['error']
  status, _ = request(srv, 'POST', '/edit', edit, {'X-Editor-Token': 'é' * 43}, token=False)
  assert status == 403
  assert_unchanged(srv.session, before)
  assert not (srv.tmp / 'out').exists()
  for host in (f'localhost:{srv.port}', f'[::1]:{srv.port}'):
    assert request(srv, 'GET', '/state', headers={'Host': host})[0] == 200
  status, out = request(srv, 'POST', '/edit', edit,
                        {'Origin': f'http://127.0.0.1:{srv.port}'})
  assert status == 200 and out['message'] == 'applied remove'
  assert not (srv.session.state.inst == CAR).any()


def test_allowed_hosts_and_loopback():
  hosts = editor_server.allowed_hosts('127.0.0.1', 8765)
  assert {'127.0.0.1:8765', 'localhost:8765', '[::1]:8765'} == hosts
  assert '192.168.1.5:80' in editor_server.allowed_hosts('192.168.1.5', 80)
  assert '[fe80::1]:9' in editor_server.allowed_hosts('fe80::1', 9)
  assert 'evil:8765' not in editor_server.allowed_hosts('0.0.0.0', 8765)
  assert editor_server.is_loopback('localhost') and editor_server.is_loopback('::1')
  assert not editor_server.is_loopback('0.0.0.0') and not editor_server.is_loopback('10.0.0.1')


def test_concurrent_edits_are_serialized(srv):
  ops = [{'op': 'style', 'instance': CAR, 'cluster': k % 3} for k in range(24)]
  results = []

  def worker(chunk):
    for op in chunk:
      results.append(request(srv, 'POST', '/edit', op)[0])
      request(srv, 'GET', '/pick?x=4&y=3')

  threads = [threading.Thread(target=worker, args=(ops[i::4],)) for i in range(4)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert results == [200] * 24 and len(srv.session.history) == 24
  for _ in range(24):
    request(srv, 'POST', '/undo')
  assert srv.session.state.styles == {} and srv.session.history == []


def test_launch_handle_show_and_stop(tmp_path, monkeypatch):
  """launch(): a background server; show() frames it in Jupyter, or goes through Colab's proxy."""
  label = np.full((8, 12), 7, np.int64)
  h = editor.launch(FakeRenderer(), label, label.copy(), out_dir=str(tmp_path / 'o'))
  try:
    assert h.url == f'http://127.0.0.1:{h.port}/' and h.port > 0
    assert h.session.image.shape == (8, 12, 3)
    srv = types.SimpleNamespace(port=h.port, session=h.session)
    r = raw_request(srv, f'GET / HTTP/1.0\r\nHost: 127.0.0.1:{h.port}\r\n\r\n'.encode())
    head = r.split(b'\r\n\r\n')[0].decode()
    assert 'frame-ancestors ' in head and 'http://localhost:*' in head  # notebooks may frame it
    assert 'X-Frame-Options' not in head
    shown = []
    ipython = types.ModuleType('IPython')
    ipython.display = types.ModuleType('IPython.display')
    ipython.display.IFrame = lambda url, width, height: ('iframe', url, height)
    ipython.display.display = shown.append
    monkeypatch.setitem(sys.modules, 'IPython', ipython)
    monkeypatch.setitem(sys.modules, 'IPython.display', ipython.display)
    monkeypatch.setitem(sys.modules, 'google.colab', None)  # not in Colab
    h.show(height=500)
    assert shown == [('iframe', h.url, 500)] and not h.server.RequestHandlerClass.colab_proxy
    colab = types.ModuleType('google.colab')
    colab.output = types.SimpleNamespace(
        serve_kernel_port_as_iframe=lambda port, height: shown.append(('colab', port, height)))
    monkeypatch.setitem(sys.modules, 'google.colab', colab)
    h.show()
    assert shown[-1] == ('colab', h.port, 820) and h.server.RequestHandlerClass.colab_proxy
    proxied = 'x-1-colab.googleusercontent.com'
    status, _ = request(srv, 'POST', '/undo', headers={'Host': proxied,
                                                       'Origin': f'https://{proxied}'})
    assert status == 200
  finally:
    h.stop()
  with pytest.raises(OSError):
    socket.create_connection(('127.0.0.1', h.port), timeout=1)
