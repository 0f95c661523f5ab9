"""The command line's console: a few lines for people, library logs in a file.

JAX, orbax, absl and TensorFlow log at INFO level by default, which buries a
progress bar under a hundred lines (orbax alone prints its whole
``CheckpointManagerOptions``). :func:`setup` routes every library's Python
logging to ``<log_dir>/hdgan_jax.log`` and keeps the terminal for
:func:`say`, progress bars and one-line errors; ``--verbose`` puts the logs
back on the terminal. :func:`run_cli` turns expected errors (bad input,
missing files) into ``error: ...`` lines with the traceback in the log.
"""

import contextlib
import logging
import os
import signal
import sys
import threading
import traceback
from typing import Callable, Optional

from absl import app, flags
from absl import logging as absl_logging

LOG_NAME = 'hdgan_jax.log'

# Errors that mean "the user's input is wrong": shown as one line, not a traceback.
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
               PermissionError, KeyError)

_state = {'log_path': None, 'verbose': False, 'process': None}


def quiet_native_logs() -> None:
  """Silences TensorFlow's and XLA's C++ INFO lines; call before they are imported."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  os.environ.setdefault('GRPC_VERBOSITY', 'ERROR')


def log_name(process_index: Optional[int] = None) -> str:
  """``hdgan_jax.log``; ``hdgan_jax.process<I>.log`` for process I > 0 of a multi-host run."""
  return LOG_NAME if not process_index else f'hdgan_jax.process{process_index}.log'


def setup(log_dir: Optional[str], *, verbose: bool = False,
          process_index: Optional[int] = None) -> Optional[str]:
  """Sends library logging to ``log_dir/hdgan_jax.log`` (terminal if ``verbose``).

  In a multi-host run (``process_index`` given) process 0 keeps that file
  and the terminal; process I > 0 logs to ``hdgan_jax.process<I>.log``, its
  :func:`say` lines go to that file only, and its errors name the process.
  Returns the log file's path (None when logging stays on the terminal).
  """
  _state['verbose'] = verbose
  _state['process'] = process_index
  root = logging.getLogger()
  root.setLevel(logging.INFO)
  absl_logging.set_verbosity(absl_logging.INFO)
  logging.captureWarnings(True)
  if verbose or not log_dir:
    return None
  os.makedirs(log_dir, exist_ok=True)
  path = os.path.join(log_dir, log_name(process_index))
  handler = logging.FileHandler(path, encoding='utf-8')
  handler.setFormatter(logging.Formatter('%(asctime)s %(levelname)s %(name)s: %(message)s'))
  for h in list(root.handlers):
    root.removeHandler(h)
  root.addHandler(handler)
  _native_fd_to(2, 'stderr', path)
  if process_index is not None:  # gloo prints its connection lines on stdout
    _native_fd_to(1, 'stdout', path)
  _state['log_path'] = path
  return path


def _native_fd_to(fd: int, stream: str, path: str) -> None:
  """C++ libraries' writes to ``fd`` into ``path``; ``sys.<stream>`` stays on the terminal.

  TensorFlow prints INFO lines through absl's C++ logging before any
  environment setting can reach it, so the file descriptor itself is moved:
  fd 2 now writes to the log, and ``sys.stderr`` (tqdm, error messages) to a
  duplicate of the original terminal descriptor.
  """
  try:
    getattr(sys, stream).flush()
    terminal = os.dup(fd)
    log_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(log_fd, fd)
    os.close(log_fd)
    setattr(sys, stream, os.fdopen(terminal, 'w', buffering=1, encoding='utf-8', errors='replace'))
  except (OSError, ValueError, AttributeError):  # no real fd (e.g. some notebooks): keep as is
    pass


def log_path() -> Optional[str]:
  return _state['log_path']


def say(message: str) -> None:
  """A line for people on the terminal (and in the log); only the log on processes > 0."""
  if not _state['process']:
    print(message, flush=True)
  if _state['log_path'] or _state['process']:
    logging.info('%s', message)


def run_cli(fn: Callable[[], None]) -> None:
  """Calls ``fn``; every error becomes one ``error: ...`` line (traceback in the log or with --verbose).

  Expected errors (bad input, missing files, a busy workdir) print their own
  message, which names the file, key or flag and the fix. Anything else is
  an unexpected failure: its type and first line, and where the traceback is.
  """
  try:
    fn()
  except KeyboardInterrupt:
    print('\nstopped (Ctrl-C).', file=sys.stderr)
    sys.exit(130)
  except SystemExit:
    raise
  except Exception as e:  # pylint: disable=broad-except
    sys.exit(error_line(e))


def error_line(e: Exception) -> str:
  """The ``error: ...`` line for ``e`` (see :func:`run_cli`); logs the traceback."""
  if _state['log_path']:
    logging.error('%s', ''.join(traceback.format_exception(e)))
  if _state['verbose']:
    traceback.print_exception(e)
  where = f' (details: {_state["log_path"]})' if _state['log_path'] else ''
  who = f'process {_state["process"]}: ' if _state['process'] is not None else ''
  if isinstance(e, USER_ERRORS) or getattr(e, 'user_facing', False):
    msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    return f'error: {who}{msg}{where}'
  first = (str(e).strip().splitlines() or [''])[0][:500]
  hint = '' if _state['verbose'] else '; rerun with --verbose for the traceback'
  return f'error: {who}unexpected {type(e).__name__}: {first}{where}{hint}'


def parse_flags(argv):
  """absl flag parsing that turns a bad flag or ``--config.*`` override into one clear line."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    sys.exit(f'error: {e}\nRun with --help for the flags.')
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    detail = str(e).replace('\\n', ' ').replace('\n', ' ').replace("\\'", '').replace("'", '')
    sys.exit(f'error: bad --config override ({detail}). Fields and defaults: '
             'hdgan_jax/config.py and the experiment file.')


def setup_tool(verbose: bool) -> None:
  """Logging for a tool command (data.check, convert, edit, ...): no log file, so only
  warnings and errors reach the terminal, everything with ``verbose``."""
  setup(None, verbose=verbose)
  if not verbose:
    logging.getLogger().setLevel(logging.WARNING)
    absl_logging.set_verbosity(absl_logging.WARNING)


def tool_main(job: Callable[[], None]) -> Callable:
  """The absl ``main`` of a tool command: no positional arguments, tool logging
  (:func:`setup_tool` with its ``--verbose``), and ``job`` under :func:`run_cli`."""
  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f'unexpected arguments: {argv[1:]}')
    setup_tool(flags.FLAGS.verbose)
    run_cli(job)
  return main


def run_tool(main: Callable, define_flags: Optional[Callable[[], None]] = None) -> None:
  """Console-script body of a tool: quiet native logs, define its flags, run ``main``."""
  quiet_native_logs()
  if define_flags is not None:
    define_flags()
  app.run(main, flags_parser=parse_flags)


@contextlib.contextmanager
def deferred_interrupt():
  """Holds back Ctrl-C for the block (e.g. starting a checkpoint save), then raises it.

  A KeyboardInterrupt raised halfway through a save would leave a torn
  temporary folder behind; with this, the save starts whole and the
  interrupt arrives right after it. Outside the main thread it does nothing.
  """
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  caught = []
  previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
  try:
    yield
  finally:
    signal.signal(signal.SIGINT, previous)
  if caught:
    raise KeyboardInterrupt
