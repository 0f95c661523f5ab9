"""Atomic file writes (a file is either its old version or the complete new one), and JSON reads that name the file.

This file owns the one implementation of "write to a temporary file, then
rename it over the target" used wherever a half-written file would hurt (a
crash or Ctrl-C mid-write, a reader polling the file, a full disk):

* :func:`atomic_write_bytes` / :func:`atomic_write_text` for data in memory;
* :func:`atomic_writer`, a context manager yielding a temporary path, for
  libraries that write by file name (``np.savez``, ``PIL.Image.save``,
  ``torch.save``).

How: the temporary file is made with ``tempfile.mkstemp`` in the target's own
folder (so ``os.replace`` is a same-filesystem rename, atomic on POSIX and
Windows), named ``.<target name>.<random>.tmp<ext>`` (hidden, and ending in
``.tmp.png`` for a ``.png`` target, say, so folder listings can skip it), is
flushed to disk with ``fsync``, given the permissions a plain ``open()``
would give (0o666 less the umask; mkstemp's own are 0o600), and renamed over
the target; the folder is then fsynced too (best effort) so the rename
survives a power cut. On any error, KeyboardInterrupt included, the temporary
file is removed and the target is left as it was. The target's folder must
exist.
"""

import contextlib
import json
import os
import tempfile
from typing import Iterator, Optional, Union

PathLike = Union[str, os.PathLike]
_MAX_PREFIX = 100   # characters of the target's name kept in the temporary name
_file_mode = None


def _new_file_mode() -> int:
  """0o666 less the process umask: what open() gives a new file (read once, cached)."""
  global _file_mode  # pylint: disable=global-statement
  if _file_mode is None:
    umask = os.umask(0o022)   # the only portable way to read it; 0o022 is the usual value
    os.umask(umask)
    _file_mode = 0o666 & ~umask
  return _file_mode


def _fsync_path(path: str, directory: bool = False) -> None:
  fd = os.open(path, os.O_RDONLY if directory else os.O_RDWR)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: PathLike, suffix: Optional[str] = None) -> Iterator[str]:
  """Yields a temporary path to write ``path``'s new contents to, by file name.

  When the ``with`` block ends normally the temporary file is fsynced and
  renamed over ``path``; when it raises, the temporary file is deleted and
  ``path`` is untouched. The temporary file already exists (empty) when
  yielded; the writer may overwrite or replace it.

  Args:
    path: the file to (over)write; its folder must exist.
    suffix: the end of the temporary file's name. Default: ``'.tmp'`` plus
      ``path``'s extension, so libraries that choose a format from the name
      (PIL) pick the target's. Pass it when the target's name may lack the
      extension a library insists on: ``np.savez`` appends ``.npz`` to any
      other name (and would write a different file), so use
      ``suffix='.tmp.npz'`` with it.

  Example::

    with atomic_writer('clusters.npz', suffix='.tmp.npz') as tmp:
      np.savez(tmp, **arrays)
    with atomic_writer('sample.png') as tmp:
      Image.fromarray(rgb).save(tmp)
  """
  path = os.fspath(path)
  folder = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(folder):
    raise FileNotFoundError(f'{path}: the folder {folder} does not exist; create it or '
                            'choose another path')
  if os.path.isdir(path):
    raise IsADirectoryError(f'{path} is a folder; give a file path')
  if suffix is None:
    suffix = '.tmp' + os.path.splitext(path)[1]
  fd, tmp = tempfile.mkstemp(dir=folder, suffix=suffix,
                             prefix='.' + os.path.basename(path)[:_MAX_PREFIX] + '.')
  os.close(fd)
  try:
    yield tmp
    _fsync_path(tmp)
    os.chmod(tmp, _new_file_mode())
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    raise
  with contextlib.suppress(OSError):   # some filesystems cannot fsync a folder
    _fsync_path(folder, directory=True)


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
  """Writes ``data`` to ``path`` atomically (see the module docstring)."""
  with atomic_writer(path, suffix='.tmp') as tmp:
    with open(tmp, 'wb') as f:
      f.write(data)


def atomic_write_text(path: PathLike, text: str, encoding: str = 'utf-8') -> None:
  """Writes ``text`` to ``path`` atomically, encoded as ``encoding`` (no newline translation)."""
  atomic_write_bytes(path, text.encode(encoding))


def read_json(path: PathLike, *, what: str, error: type = ValueError):
  """A JSON file's contents; a missing, binary or malformed file raises ``error`` naming
  the file (and the line and column of a syntax error) and ``what`` it should hold."""
  try:
    with open(path, encoding='utf-8') as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise error(f'{path}: not valid JSON at line {e.lineno}, column {e.colno} ({e.msg}); '
                f'fix the {what} file') from None
  except UnicodeDecodeError as e:
    raise error(f'{path}: not a UTF-8 text file (byte {e.start}); the {what} file must be '
                'JSON text') from None
  except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as e:
    raise error(f'{path}: cannot open the {what} file ({e.strerror})') from None
