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
  status (500 for a bug), never a dropped connection. What a well-formed
  request is, ``hdgan_jax.editor_requests`` says.
* The page (``hdgan_jax/editor_static``: HTML, JS, CSS; package data) runs no
  inline script (Content-Security-Policy) and may not be framed, except by
  local notebook pages when started with ``frame_ancestors`` (``editor.launch``)
  and, after :meth:`Server.allow_colab_proxy` (``Handle.show`` in Colab only),
  through Colab's kernel proxy: then any Host and Colab's proxy origins are
  accepted, the token is still required.
"""

import hmac
import html
import http.server
import importlib.resources
import ipaddress
import json
import logging
import re
import socket
import time
import urllib.parse

from hdgan_jax import reporting
from hdgan_jax.editor_requests import (RequestError, check_empty, check_load, check_new,
                                       check_op, check_save, int_param, parse_json)
from hdgan_jax.editor_session import png_bytes

MAX_BODY = 1 << 20  # bytes; an edit with a mask as a nested list fits easily
MAX_UPLOAD = 48 << 20  # bytes of a /load body (two PNGs as base64)
TIMEOUT_S = 10.0  # socket timeout, and the time a whole request body may take
MAX_LINGER_S = 2.0  # how long to drain an unread body after an early error answer
TOKEN_HEADER = 'X-Editor-Token'
LOOPBACK_NAMES = ('127.0.0.1', 'localhost', '[::1]')
WILDCARD_HOSTS = ('', '0.0.0.0', '::')
STATIC = {'/static/editor.js': ('editor.js', 'text/javascript; charset=utf-8'),
          '/static/editor.css': ('editor.css', 'text/css; charset=utf-8')}
GET_PATHS = ('/', '/state', '/image.png', '/labels.png', '/pick', '/thumbs') + tuple(STATIC)
POST_PATHS = ('/edit', '/undo', '/redo', '/resample', '/save', '/new', '/load')
COLAB_ORIGIN = re.compile(r'https://([a-z0-9-]+\.)*(googleusercontent\.com|colab\.dev|'
                          r'colab\.research\.google\.com)')
COLAB_FRAMERS = ('https://colab.research.google.com https://*.googleusercontent.com '
                 'https://*.colab.dev')


def static_text(name: str) -> str:
  """A file of the page (package data ``hdgan_jax/editor_static``)."""
  return (importlib.resources.files('hdgan_jax') / 'editor_static' / name).read_text('utf-8')


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


class Handler(http.server.BaseHTTPRequestHandler):
  """Serves ``session`` (set on a subclass by :func:`make_handler`); see the module docstring."""

  session = None
  hosts: frozenset = frozenset()
  timeout = TIMEOUT_S  # socket timeout (StreamRequestHandler.setup), also the body deadline
  max_body = MAX_BODY
  max_upload = MAX_UPLOAD
  frame_ancestors = "'none'"
  colab_proxy = False
  default_request_version = 'HTTP/1.0'  # error answers to garbage keep their status line
  _linger = False

  def log_message(self, *args):  # keep the terminal for the user's own output
    pass

  def version_string(self):
    return 'hdgan-editor'

  def _send(self, body: bytes, ctype: str, code: int = 200, headers=None):
    frame = {'Content-Security-Policy': f'frame-ancestors {self.frame_ancestors}'}
    if self.frame_ancestors == "'none'":
      frame['X-Frame-Options'] = 'DENY'
    if ctype.startswith('text/html'):  # the page: its own scripts and styles only
      frame['Content-Security-Policy'] = ("default-src 'self'; img-src 'self' data: blob:; "
                                          f"frame-ancestors {self.frame_ancestors}")
    try:
      self.send_response(code)
      for k, v in {'Content-Type': ctype, 'Content-Length': str(len(body)),
                   'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff',
                   'Referrer-Policy': 'no-referrer', **frame, **(headers or {})}.items():
        self.send_header(k, v)
      self.end_headers()
      if self.command != 'HEAD':
        self.wfile.write(body)
    except OSError:  # the client went away; nothing to answer
      self.close_connection = True

  def _json(self, obj, code=200, headers=None):
    self._send(json.dumps(obj).encode(), 'application/json', code, headers)

  def _png(self, arr):
    self._send(png_bytes(arr), 'image/png')

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
    if host not in self.hosts and not (self.colab_proxy and host):
      raise RequestError(403, f'Host {host!r:.60} not allowed (open http://'
                         f'127.0.0.1:{self.server.server_address[1]}/ instead)')
    return host

  def _get(self, path, query):
    session = self.session
    if path == '/':
      page = static_text('index.html').replace('@TOKEN@', html.escape(session.token))
      self._send(page.encode(), 'text/html; charset=utf-8')
    elif path in STATIC:
      name, ctype = STATIC[path]
      self._send(static_text(name).encode(), ctype)
    elif path == '/state':
      self._json(session.summary())
    elif path == '/image.png':
      self._png(session.image)
    elif path == '/labels.png':
      self._png(reporting.colorize(session.state.label, session.label_nc))
    else:  # /pick, /thumbs
      try:
        q = urllib.parse.parse_qs(query, keep_blank_values=True, max_num_fields=10)
      except ValueError as e:
        raise RequestError(400, f'bad query: {e}') from None
      if path == '/thumbs':
        try:
          self._json(session.thumbnails(int_param(q, 'instance', 2 ** 31)))
        except ValueError as e:
          raise RequestError(400, str(e)) from None
        return
      h, w = session.state.inst.shape
      self._json(session.pick(int_param(q, 'x', w), int_param(q, 'y', h)))

  def _check_origin(self, host):
    origins = self.headers.get_all('Origin') or []
    if not origins:
      return
    origin = origins[0].strip().lower()
    if len(origins) > 1 or not (origin == f'http://{host}' or (
        self.colab_proxy and COLAB_ORIGIN.fullmatch(origin))):
      raise RequestError(403, f'cross-origin request from {origins[0]!r:.80} refused')

  def _post(self, path, host):
    self._check_origin(host)
    token = (self.headers.get(TOKEN_HEADER) or '').encode('latin-1', 'replace')
    if not hmac.compare_digest(token, self.session.token.encode()):
      raise RequestError(403, f'missing or wrong {TOKEN_HEADER} header (reload the page)')
    limit = self.max_upload if path == '/load' else self.max_body
    body = parse_json(self._read_body(limit))
    session = self.session
    if path == '/edit':
      op = check_op(body)
      action = lambda: session.apply(op)
    elif path == '/save':
      args = check_save(body)
      action = lambda: session.save(**args)
    elif path == '/new':
      args = check_new(body)
      action = lambda: session.new_scene(**args)
    elif path == '/load':
      pngs = check_load(body, self.max_upload)
      action = lambda: session.load(pngs['labels'], pngs['instances'])
    else:
      check_empty(path, body)
      action = {'/undo': session.undo, '/redo': session.redo, '/resample': session.resample}[path]
    with session.lock:  # one mutation at a time, and the answer shows its result
      try:
        action()
      except ValueError as e:  # a refused save name, scene size or upload: nothing changed
        raise RequestError(400, str(e)) from None
      summary = session.summary()
    self._json(summary)

  def _read_body(self, limit: int) -> bytes:
    """The whole body, bounded by size and time; nothing is used from a partial one."""
    if self.headers.get('Transfer-Encoding'):
      raise RequestError(411, 'send a Content-Length (chunked bodies are not supported)')
    lengths = self.headers.get_all('Content-Length') or ['0']
    if len(set(v.strip() for v in lengths)) != 1 or not re.fullmatch(r'[0-9]{1,18}',
                                                                      lengths[0].strip()):
      raise RequestError(400, f'bad Content-Length {", ".join(lengths)[:40]!r}')
    n = int(lengths[0])
    if n > limit:
      raise RequestError(413, f'body of {n} bytes is over the limit of {limit}')
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

  def allow_colab_proxy(self) -> None:
    """Accepts requests through Colab's kernel proxy (any Host, Colab's origins, its frames)."""
    self.RequestHandlerClass.colab_proxy = True
    self.RequestHandlerClass.frame_ancestors = COLAB_FRAMERS

  def handle_error(self, request, client_address):
    logging.debug('editor: connection from %s failed', client_address, exc_info=True)


def make_handler(session, hosts=frozenset(), timeout: float = TIMEOUT_S,
                 max_body: int = MAX_BODY, frame_ancestors: str = "'none'"):
  """A handler class bound to ``session``, accepting Host values ``hosts``."""
  return type('EditorHandler', (Handler,), {'session': session, 'hosts': frozenset(hosts),
                                           'timeout': timeout, 'max_body': max_body,
                                           'frame_ancestors': frame_ancestors})


def serve(session, port: int = 8765, host: str = '127.0.0.1', *, timeout: float = TIMEOUT_S,
          max_body: int = MAX_BODY, frame_ancestors: str = "'none'") -> Server:
  """A threaded HTTP server for ``session`` (port 0 picks a free one); call serve_forever().

  Listens on loopback unless ``host`` says otherwise; Host headers must name
  loopback or ``host`` with the bound port. ``timeout`` (s) bounds every socket
  read and the whole body of a request. ``frame_ancestors`` (a CSP source
  list) names the pages that may frame the editor (default: none).
  """
  host = host.strip('[]') if host else ''
  server = Server((host, port), make_handler(
      session, timeout=timeout, max_body=max_body, frame_ancestors=frame_ancestors))
  server.RequestHandlerClass.hosts = allowed_hosts(host, server.server_address[1])
  return server
