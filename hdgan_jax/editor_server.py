"""The interactive editor's HTTP server: a hardened standard-library app over a ``Session``.

``hdgan_jax.editor`` holds the editing session and the command line; this
module serves it. The server is local and single-user, yet it runs next to a
browser that visits arbitrary sites, and it writes files, so every request is
checked before anything is touched:

* Host must be a loopback name with the server's port (or the address it was
  explicitly told to listen on), else 403: DNS rebinding.
* POSTs change state, so they also need an absent or same-origin ``Origin``
  and the session's random token in ``X-Editor-Token``, which the page embeds;
  other sites can neither read the page nor send the header without a CORS
  preflight, never granted here (CSRF). Pages may not be framed (clickjacking).
* Bodies are bounded (413 before reading), must arrive whole within the
  timeout (408) and parse into the expected JSON shape (400); an edit is
  applied only after all that, under the session's lock, so a request the
  client abandoned half-way is never applied.
* Every failure is a JSON answer ``{"error": ..., "message": ...}`` with a 4xx
  status (500 for a bug), never a dropped connection.
"""

import hmac
import html
import http.server
import io
import ipaddress
import json
import logging
import math
import re
import socket
import time
import urllib.parse

from PIL import Image

from hdgan_jax import reporting

MAX_BODY = 1 << 20  # bytes; an edit with a mask as a nested list fits easily
TIMEOUT_S = 10.0  # socket timeout, and the time a whole request body may take
MAX_LINGER_S = 2.0  # how long to drain an unread body after an early error answer
TOKEN_HEADER = 'X-Editor-Token'
LOOPBACK_NAMES = ('127.0.0.1', 'localhost', '[::1]')
WILDCARD_HOSTS = ('', '0.0.0.0', '::')
GET_PATHS = ('/', '/state', '/image.png', '/labels.png', '/pick')
POST_PATHS = ('/edit', '/undo', '/resample', '/save')
# The edit operations of ``hdgan_jax.edit`` (required keys, optional keys); their
# values are checked below, their meaning (ids present, classes known) by edit.
OPS = {'change_class': (('instance', 'to'), ('style',)), 'remove': (('instance',), ()),
       'add': (('mask', 'class', 'at'), ('style',)), 'style': (('instance', 'cluster'), ())}
MAX_ID = 2 ** 31
MAX_STYLE_LEN = 4096

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>hdgan_jax editor</title>
<meta name="editor-token" content="@TOKEN@">
<style>body{font-family:sans-serif;margin:1em}img{image-rendering:pixelated;border:1px solid #999;
width:48%;cursor:crosshair}#panel{margin:.5em 0}button,select{margin-right:.4em}</style></head>
<body><h2>hdgan_jax editor</h2><div id="panel">
<span id="sel">click an object in the label map</span>
<select id="cls"></select><button onclick="op({op:'change_class',instance:S,to:+cls.value})">change class</button>
<button onclick="op({op:'remove',instance:S})">remove</button>
<select id="sty"></select><button onclick="op({op:'style',instance:S,cluster:+sty.value})">set style</button>
<button onclick="post('/resample')">resample styles</button><button onclick="post('/undo')">undo</button>
<button onclick="post('/save')">save</button> <span id="msg"></span></div>
<img id="lab" onclick="pick(event)"> <img id="gen">
<script>
const TOKEN=document.querySelector('meta[name="editor-token"]').content;
let S=null, st=null;
function show(s){st=s;const t=Date.now();lab.src='/labels.png?'+t;gen.src='/image.png?'+t;
 msg.textContent=s.message||'';cls.innerHTML=s.classes.map(c=>`<option value=${c[0]}>${c[0]} ${c[1]}</option>`).join('');}
async function answer(r){const j=await r.json();if(!r.ok){msg.textContent='error: '+(j.error||r.status);return null;}return j;}
async function post(u,b){const r=await fetch(u,{method:'POST',body:JSON.stringify(b||{}),
 headers:{'Content-Type':'application/json','X-Editor-Token':TOKEN}});const j=await answer(r);if(j)show(j);}
function op(o){if(S===null){msg.textContent='select an object first';return;}post('/edit',o);}
async function pick(e){const r=lab.getBoundingClientRect(), c=(v,n)=>Math.min(n-1,Math.max(0,Math.floor(v*n)));
 const x=c((e.clientX-r.left)/r.width,st.width), y=c((e.clientY-r.top)/r.height,st.height);
 const i=await answer(await fetch(`/pick?x=${x}&y=${y}`));if(!i)return;S=i.instance;
 sel.textContent=`instance ${i.instance}: class ${i.class} ${i.name}`;
 sty.innerHTML=[...Array(i.clusters).keys()].map(k=>`<option>${k}</option>`).join('');}
fetch('/state').then(answer).then(s=>{if(s)show(s);});
</script></body></html>"""


class RequestError(Exception):
  """A request answered with ``code`` and a JSON message instead of being served."""

  def __init__(self, code: int, message: str, headers=None):
    super().__init__(message)
    self.code, self.message, self.headers = code, message, dict(headers or {})


def is_loopback(host: str) -> bool:
  """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
  try:
    return host.lower() == 'localhost' or ipaddress.ip_address(host.strip('[]')).is_loopback
  except ValueError:
    return False


def allowed_hosts(host: str, port: int) -> frozenset:
  """The Host header values accepted: loopback names and ``host`` itself, with the port."""
  names = set(LOOPBACK_NAMES)
  if host not in WILDCARD_HOSTS:
    names.add(f'[{host}]' if ':' in host and not host.startswith('[') else host)
  names = {n.lower() for n in names}
  out = {f'{n}:{port}' for n in names}
  return frozenset(out | names if port == 80 else out)


def _int(name, v, lo=0, hi=MAX_ID):
  if isinstance(v, bool) or not isinstance(v, int) or not lo <= v < hi:
    raise RequestError(400, f'"{name}" must be an integer in [{lo}, {hi}), got {v!r:.40}')
  return v


def _style(name, v):
  if isinstance(v, int) and not isinstance(v, bool):
    return _int(name, v)
  if (not isinstance(v, list) or not 0 < len(v) <= MAX_STYLE_LEN
      or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                 for x in v)):
    raise RequestError(400, f'"{name}" must be a cluster index or a list of at most '
                       f'{MAX_STYLE_LEN} finite numbers')
  return v


def _mask(name, v):
  ok = isinstance(v, list) and v and all(isinstance(r, list) and len(r) == len(v[0]) for r in v)
  if not ok or not v[0] or not all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 256
                                   for r in v for x in r):
    raise RequestError(400, f'"{name}" must be a non-empty rectangular list of rows of 0/1 '
                       '(file paths are not accepted over HTTP)')
  return v


def _reject_nan(name):
  raise ValueError(f'{name} is not a number')


def _at(name, v):
  if not isinstance(v, list) or len(v) != 2:
    raise RequestError(400, f'"{name}" must be [y, x], got {v!r:.40}')
  return [_int(name, c, -MAX_ID, MAX_ID) for c in v]


FIELDS = {'instance': _int, 'to': _int, 'class': _int, 'cluster': _style, 'style': _style,
          'mask': _mask, 'at': _at}


def check_op(op) -> dict:
  """A JSON edit of the right shape (known op, its keys, value types), else RequestError 400.

  Whether it applies (the instance exists, the class is known) is for
  ``hdgan_jax.edit`` to say; a mask is only ever inline, never a path.
  """
  if not isinstance(op, dict):
    raise RequestError(400, f'an edit is a JSON object {{"op": ...}}, got {type(op).__name__}')
  name = op.get('op')
  if not isinstance(name, str) or name not in OPS:
    raise RequestError(400, f'"op" must be one of {sorted(OPS)}, got {name!r:.40}')
  need, optional = OPS[name]
  keys = set(op) - {'op'}
  if set(need) - keys or keys - set(need) - set(optional):
    raise RequestError(400, f'{name} needs keys {list(need)} (optional {list(optional)}), '
                       f'got {sorted(keys)}')
  return {'op': name, **{k: FIELDS[k](k, v) for k, v in op.items() if k != 'op'}}


def parse_json(raw: bytes):
  """The body as JSON (empty: {}); RequestError 400 for non-UTF-8, non-JSON or NaN."""
  try:
    text = raw.decode('utf-8')
  except UnicodeDecodeError:
    raise RequestError(400, 'body is not UTF-8') from None
  if not text.strip():
    return {}
  try:
    return json.loads(text, parse_constant=_reject_nan)
  except (ValueError, RecursionError) as e:
    raise RequestError(400, f'body is not JSON: {e}'[:200]) from None


def pixel_param(query: dict, name: str, size: int) -> int:
  """One whole-number query parameter in 0..size-1, else RequestError 400."""
  values = query.get(name)
  if not values:
    raise RequestError(400, f'missing ?{name}=')
  if len(values) > 1:
    raise RequestError(400, f'?{name}= given {len(values)} times')
  if not re.fullmatch(r'[0-9]{1,9}', values[0]):
    raise RequestError(400, f'{name} must be a whole number of pixels, got {values[0][:20]!r}')
  v = int(values[0])
  if v >= size:
    raise RequestError(400, f'{name}={v} is outside the image (0..{size - 1})')
  return v


class Handler(http.server.BaseHTTPRequestHandler):
  """Serves ``session`` (set on a subclass by :func:`make_handler`); see the module docstring."""

  session = None
  hosts: frozenset = frozenset()
  timeout = TIMEOUT_S  # socket timeout (StreamRequestHandler.setup), also the body deadline
  max_body = MAX_BODY
  default_request_version = 'HTTP/1.0'  # error answers to garbage keep their status line
  _linger = False

  def log_message(self, *args):  # keep the terminal for the user's own output
    pass

  def version_string(self):
    return 'hdgan-editor'

  def _send(self, body: bytes, ctype: str, code: int = 200, headers=None):
    try:
      self.send_response(code)
      for k, v in {'Content-Type': ctype, 'Content-Length': str(len(body)),
                   'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff',
                   'X-Frame-Options': 'DENY', 'Content-Security-Policy': "frame-ancestors 'none'",
                   'Referrer-Policy': 'no-referrer', **(headers or {})}.items():
        self.send_header(k, v)
      self.end_headers()
      if self.command != 'HEAD':
        self.wfile.write(body)
    except OSError:  # the client went away; nothing to answer
      self.close_connection = True

  def _json(self, obj, code=200, headers=None):
    self._send(json.dumps(obj).encode(), 'application/json', code, headers)

  def _png(self, arr):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format='PNG')
    self._send(buf.getvalue(), 'image/png')

  def _error(self, code, message, headers=None):
    self.close_connection = True
    self._json({'error': message, 'message': message, 'status': code}, code,
               {'Connection': 'close', **(headers or {})})

  def send_error(self, code, message=None, explain=None):
    """http.server's own errors (bad request line, unknown method, ...) as JSON too."""
    self._error(int(code), message or self.responses.get(code, ('error',))[0])

  def do_GET(self):  # pylint: disable=invalid-name
    self._handle()

  do_POST = do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

  def _handle(self):
    # A body not read by the time of an answer is drained in finish().
    self._linger = bool(self.headers.get('Transfer-Encoding') or
                        (self.headers.get('Content-Length') or '0').strip() != '0')
    try:
      host = self._check_host()
      url = urllib.parse.urlsplit(self.path)
      if url.path not in GET_PATHS + POST_PATHS:
        raise RequestError(404, f'no such page {url.path[:100]}')
      allowed = 'GET' if url.path in GET_PATHS else 'POST'
      if self.command != allowed:
        raise RequestError(405, f'{url.path} takes {allowed}, not {self.command}',
                           {'Allow': allowed})
      if allowed == 'GET':
        self._get(url.path, url.query)
      else:
        self._post(url.path, host)
    except RequestError as e:
      self._error(e.code, e.message, e.headers)
    except Exception as e:  # pylint: disable=broad-except
      logging.exception('editor: %s %s failed', self.command, self.path)
      self._error(500, f'internal error: {type(e).__name__}: {e}'[:300])

  def _check_host(self) -> str:
    hosts = self.headers.get_all('Host') or []
    host = hosts[0].strip().lower() if len(hosts) == 1 else None
    if host not in self.hosts:
      raise RequestError(403, f'Host {host!r:.60} not allowed (open http://'
                         f'127.0.0.1:{self.server.server_address[1]}/ instead)')
    return host

  def _get(self, path, query):
    session = self.session
    if path == '/':
      self._send(PAGE.replace('@TOKEN@', html.escape(session.token)).encode(),
                 'text/html; charset=utf-8')
    elif path == '/state':
      self._json(session.summary())
    elif path == '/image.png':
      self._png(session.image)
    elif path == '/labels.png':
      self._png(reporting.colorize(session.state.label, session.label_nc))
    else:  # /pick
      try:
        q = urllib.parse.parse_qs(query, keep_blank_values=True, max_num_fields=10)
      except ValueError as e:
        raise RequestError(400, f'bad query: {e}') from None
      h, w = session.state.inst.shape
      self._json(session.pick(pixel_param(q, 'x', w), pixel_param(q, 'y', h)))

  def _post(self, path, host):
    origins = self.headers.get_all('Origin') or []
    if origins and (len(origins) > 1 or origins[0].strip().lower() != f'http://{host}'):
      raise RequestError(403, f'cross-origin request from {origins[0]!r:.80} refused')
    token = (self.headers.get(TOKEN_HEADER) or '').encode('latin-1', 'replace')
    if not hmac.compare_digest(token, self.session.token.encode()):
      raise RequestError(403, f'missing or wrong {TOKEN_HEADER} header (reload the page)')
    body = parse_json(self._read_body())
    session = self.session
    if path == '/edit':
      op = check_op(body)
      action = lambda: session.apply(op)
    else:
      if not isinstance(body, dict) or body:
        raise RequestError(400, f'{path} takes no arguments (send {{}})')
      action = {'/undo': session.undo, '/resample': session.resample, '/save': session.save}[path]
    with session.lock:  # one mutation at a time, and the answer shows its result
      action()
      summary = session.summary()
    self._json(summary)

  def _read_body(self) -> bytes:
    """The whole body, bounded by size and time; nothing is used from a partial one."""
    if self.headers.get('Transfer-Encoding'):
      raise RequestError(411, 'send a Content-Length (chunked bodies are not supported)')
    lengths = self.headers.get_all('Content-Length') or ['0']
    if len(set(v.strip() for v in lengths)) != 1 or not re.fullmatch(r'[0-9]{1,18}',
                                                                      lengths[0].strip()):
      raise RequestError(400, f'bad Content-Length {", ".join(lengths)[:40]!r}')
    n = int(lengths[0])
    if n > self.max_body:
      raise RequestError(413, f'body of {n} bytes is over the limit of {self.max_body}')
    deadline = time.monotonic() + self.timeout
    chunks, got = [], 0
    try:
      while got < n:
        if time.monotonic() > deadline:
          raise TimeoutError
        chunk = self.rfile.read1(n - got)
        if not chunk:
          raise RequestError(400, f'body ended after {got} of {n} bytes (Content-Length)')
        chunks.append(chunk)
        got += len(chunk)
    except TimeoutError:
      self._linger = False
      raise RequestError(408, f'body not received in {self.timeout:g} s ({got} of {n} bytes); '
                         'nothing applied') from None
    self._linger = False
    return b''.join(chunks)

  def finish(self):
    """After an early error answer, drains what the client still sends for a moment.

    Closing a socket with unread data makes the kernel reset the connection,
    which can destroy the answer before the client reads it.
    """
    super().finish()
    if not self._linger:
      return
    try:
      self.connection.shutdown(socket.SHUT_WR)
      deadline = time.monotonic() + min(self.timeout, MAX_LINGER_S)
      self.connection.settimeout(min(self.timeout, MAX_LINGER_S))
      while time.monotonic() < deadline and self.connection.recv(65536):
        pass
    except OSError:
      pass


class Server(http.server.ThreadingHTTPServer):
  """Threaded server; IPv6 when the host is an IPv6 address; quiet about vanished clients."""

  daemon_threads = True

  def __init__(self, address, handler):
    if ':' in address[0]:
      self.address_family = socket.AF_INET6
    super().__init__(address, handler)

  def handle_error(self, request, client_address):
    logging.debug('editor: connection from %s failed', client_address, exc_info=True)


def make_handler(session, hosts=frozenset(), timeout: float = TIMEOUT_S,
                 max_body: int = MAX_BODY):
  """A handler class bound to ``session``, accepting Host values ``hosts``."""
  return type('EditorHandler', (Handler,), {'session': session, 'hosts': frozenset(hosts),
                                           'timeout': timeout, 'max_body': max_body})


def serve(session, port: int = 8765, host: str = '127.0.0.1', *, timeout: float = TIMEOUT_S,
          max_body: int = MAX_BODY) -> Server:
  """A threaded HTTP server for ``session`` (port 0 picks a free one); call serve_forever().

  Listens on loopback unless ``host`` says otherwise; Host headers must name
  loopback or ``host`` with the bound port. ``timeout`` (s) bounds every socket
  read and the whole body of a request.
  """
  host = host.strip('[]') if host else ''
  server = Server((host, port), make_handler(session, timeout=timeout, max_body=max_body))
  server.RequestHandlerClass.hosts = allowed_hosts(host, server.server_address[1])
  return server
