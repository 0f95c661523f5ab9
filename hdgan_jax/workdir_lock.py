"""One run per workdir: an advisory lock that names its holder and dies with it.

Two trainings on one workdir would overwrite each other's checkpoints and
interleave their metrics. :func:`hold` takes an exclusive ``flock`` on
``WORKDIR/.lock`` and writes the holder's PID, host and start time into it. The
kernel releases the lock when the process ends, however it ends (kill -9
included), so a stale lock file from a killed run is simply taken over; a live
holder makes the second run stop at once with the holder's PID.

In a multi-host run every process locks its own file (``.lock`` for process
0, ``.lock.process<I>`` for the others): the processes of one run share the
workdir, and a second run on it is refused in each of its processes, so none
of them is left waiting for peers that stopped.
"""

import contextlib
import datetime
import fcntl
import json
import os
import socket
from typing import Iterator

LOCK_NAME = '.lock'


class WorkdirBusyError(RuntimeError):
  """Another live process holds the workdir."""
  user_facing = True  # console.run_cli prints the message alone


@contextlib.contextmanager
def hold(workdir: str, process_index: int = 0) -> Iterator[str]:
  """Holds ``workdir``'s lock (of process ``process_index``) for the ``with`` block; yields its path."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK_NAME + (f'.process{process_index}' if process_index else ''))
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = _read_holder(fd)
      raise WorkdirBusyError(
          f'{workdir} is in use by another run (PID {holder.get("pid", "?")} on '
          f'{holder.get("host", "?")}, since {holder.get("started", "?")}). Wait for it to '
          'finish, stop it, or use another --workdir.') from None
    info = {'pid': os.getpid(), 'host': socket.gethostname(), 'process': process_index,
            'started': datetime.datetime.now().isoformat(timespec='seconds')}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    yield path
  finally:
    os.close(fd)  # releases the flock


def _read_holder(fd: int) -> dict:
  try:
    return json.loads(os.pread(fd, 4096, 0).decode() or '{}')
  except (OSError, ValueError):
    return {}
