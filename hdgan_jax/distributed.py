"""Multi-host training: the processes of one run join before JAX touches a device.

One process per host (or per GPU); together they form one JAX runtime whose
``jax.devices()`` spans every host, so the trainer's mesh, sharded step and
orbax checkpoints work unchanged. Two ways to join:

* ``--coordinator_address=HOST:PORT --num_processes=N --process_id=I``: every
  process names process 0's host and a free port; process 0 runs the
  coordinator there.
* ``--distributed``: JAX's auto-detection fills in what is not given (TPU pod
  workers, SLURM ``srun`` tasks, Open MPI).

Failures say what to do instead of hanging: a coordinator that cannot be
reached within ``--distributed_timeout`` seconds stops the process with the
address and the fix; a peer that dies mid-run makes the others stop (a
collective fails at once, or the coordinator misses its heartbeats within
``--distributed_heartbeat_timeout``) with a message to restart all processes,
which then resume from the newest checkpoint. :func:`exit_now` ends a failed
process without JAX's shutdown barrier, which would otherwise wait for the
dead peer.

JAX is imported inside the functions (not at the top) so that ``--help`` of
the main command stays fast.
"""

import dataclasses
import errno
import os
import socket
import sys
import threading
from typing import Optional, Tuple

from absl import flags

from hdgan_jax import console

flags.DEFINE_string('coordinator_address', None,
                    'Multi-host training: HOST:PORT of process 0, the same on every process '
                    '(process 0 listens on PORT). Needs --num_processes and --process_id.')
flags.DEFINE_integer('num_processes', None, 'Multi-host training: how many processes the run has.')
flags.DEFINE_integer('process_id', None, 'Multi-host training: this process, 0 .. num_processes-1.')
flags.DEFINE_bool('distributed', False,
                  "Multi-host training with the cluster's own settings: JAX detects the "
                  'coordinator, process count and id on TPU pods, SLURM and Open MPI '
                  '(flags given explicitly win).')
flags.DEFINE_integer('distributed_timeout', 300,
                     'Multi-host: seconds to wait at start-up for the coordinator and every '
                     'process to join before stopping with an error.')
flags.DEFINE_integer('distributed_heartbeat_timeout', 100,
                     'Multi-host: seconds without heartbeats after which a silent process '
                     'counts as dead and the whole run stops.')


class DistributedSetupError(ValueError):
  """The multi-host flags are inconsistent, or the processes could not join."""
  user_facing = True  # console.run_cli prints the message alone


class PeerLostError(RuntimeError):
  """Another process of the run stopped; this one cannot go on alone."""
  user_facing = True


@dataclasses.dataclass(frozen=True)
class Spec:
  """How this process joins the run (None fields: left to JAX's auto-detection)."""
  coordinator_address: Optional[str]
  num_processes: Optional[int]
  process_id: Optional[int]
  auto: bool
  timeout: int
  heartbeat_timeout: int


def spec_from_flags(f=flags.FLAGS) -> Optional[Spec]:
  """The validated multi-host settings, or None for a single-process run.

  ``f`` is the parsed flags (anything with the flags' names as attributes).
  """
  addr, n, pid, auto = f.coordinator_address, f.num_processes, f.process_id, f.distributed
  if not auto and addr is None:
    if n is not None or pid is not None:
      raise DistributedSetupError(
          '--num_processes/--process_id need --coordinator_address=HOST:PORT (process 0\'s '
          'host and a free port), or --distributed for the cluster\'s auto-detection')
    return None
  if addr is not None:
    host, _, port = addr.rpartition(':')
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
      raise DistributedSetupError(f'--coordinator_address={addr!r}: use HOST:PORT, e.g. '
                                  '10.0.0.2:8476 (process 0\'s host and a free port)')
    if not auto and (n is None or pid is None):
      raise DistributedSetupError(
          '--coordinator_address needs --num_processes=N and --process_id=I (0 on the '
          'coordinator\'s host), or --distributed to detect them')
  if n is not None and n < 1:
    raise DistributedSetupError(f'--num_processes={n} must be >= 1')
  if pid is not None and (pid < 0 or (n is not None and pid >= n)):
    raise DistributedSetupError(f'--process_id={pid} must be in 0 .. --num_processes-1'
                                f'{f" = {n - 1}" if n is not None else ""}')
  for name in ('distributed_timeout', 'distributed_heartbeat_timeout'):
    if getattr(f, name) < 1:
      raise DistributedSetupError(f'--{name}={getattr(f, name)} must be >= 1 (seconds)')
  return Spec(addr, n, pid, bool(auto), int(f.distributed_timeout),
              int(f.distributed_heartbeat_timeout))


def initialize(spec: Spec) -> Tuple[int, int]:
  """Joins the run (``jax.distributed.initialize``); returns (process index, process count).

  Call it before anything touches a device. CPU processes exchange
  gradients over gloo (TCP), which needs nothing but the network.

  JAX ends the process from C++ when joining fails (an abort when the
  coordinator is unreachable or a process is missing at its deadline, a
  crash when the coordinator's port is taken), so the failures are caught
  first: process 0 checks that its port is free, and a watchdog stops the
  process with a one-line error ``spec.timeout`` seconds in, shortly before
  JAX's own deadline.
  """
  import jax  # lazy: main imports this module, and --help must not load JAX
  from jax.experimental import multihost_utils  # lazy: as above
  if spec.process_id == 0 and spec.coordinator_address:
    _check_port_free(spec.coordinator_address)
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  joined = threading.Event()
  watchdog = threading.Thread(target=_watch, args=(spec, joined), daemon=True,
                              name='hdgan_jax-join-watchdog')
  watchdog.start()
  try:
    jax.distributed.initialize(
        coordinator_address=spec.coordinator_address, num_processes=spec.num_processes,
        process_id=spec.process_id, initialization_timeout=spec.timeout + _GRACE_S,
        heartbeat_timeout_seconds=spec.heartbeat_timeout)
  except Exception as e:  # pylint: disable=broad-except  # jaxlib raises several types
    raise DistributedSetupError(_setup_failure(spec, e)) from e
  finally:
    joined.set()
  # On CPU, gloo connects the processes at their first collective and gives the
  # others 30 s to arrive; one compiling slower (a busy host) would fail the
  # first train step. Connected now, while all stand at the same point, later
  # collectives wait for a slow peer as long as it takes.
  multihost_utils.sync_global_devices('hdgan_jax: all processes joined')
  return jax.process_index(), jax.process_count()


_GRACE_S = 10  # JAX's own join deadline comes this long after the watchdog's


def _watch(spec: Spec, joined: threading.Event) -> None:
  if not joined.wait(spec.timeout):
    exit_now(console.error_line(DistributedSetupError(_timeout_message(spec))))


def _check_port_free(address: str) -> None:
  """Process 0 binds the coordinator's port on every interface; refuse a taken port clearly."""
  port = int(address.rpartition(':')[2])
  bind = os.environ.get('JAX_COORDINATOR_BIND_ADDRESS')
  for family, host in ((socket.AF_INET6, '::'), (socket.AF_INET, '0.0.0.0')):
    try:
      with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
      return
    except OSError as e:
      if e.errno == errno.EADDRINUSE and not bind:
        raise DistributedSetupError(
            f'the coordinator\'s port {port} (--coordinator_address={address}) is in use on this '
            'host: another run or program listens there. Choose a free port and give the '
            'same --coordinator_address to every process.') from None
  # neither family could bind for another reason (no IPv6, a bind address set): let JAX try


def _reachable(address: str) -> bool:
  host, _, port = address.rpartition(':')
  try:
    with socket.create_connection((host.strip('[]'), int(port)), timeout=2):
      return True
  except OSError:
    return False


def _timeout_message(spec: Spec) -> str:
  addr = spec.coordinator_address or os.environ.get('JAX_COORDINATOR_ADDRESS')
  waited = f'within {spec.timeout} s (--distributed_timeout)'
  later = 'raise --distributed_timeout if the processes start far apart.'
  if spec.process_id == 0:
    return (f'not all {spec.num_processes} processes joined the run through the coordinator at '
            f'{addr} {waited}. Start the others with the same --coordinator_address and '
            f'--num_processes, each with its --process_id (1 .. {spec.num_processes - 1}); check that they '
            f'can reach this host\'s port; {later}')
  if addr and not _reachable(addr):
    return (f'could not reach the coordinator at {addr} {waited}. Start process 0 with the same '
            '--coordinator_address and --num_processes, check that its host is reachable from '
            f'here and the port open; {later}')
  return (f'the run did not assemble through the coordinator at {addr or "(auto-detected)"} '
          f'{waited}: some process is missing. Start every process with the same '
          f'--coordinator_address and --num_processes and its own --process_id; {later}')


def _first_line(e: BaseException, limit: int = 200) -> str:
  return (str(e).strip().splitlines() or [type(e).__name__])[0][:limit]


def _setup_failure(spec: Spec, e: Exception) -> str:
  if spec.coordinator_address is None and 'coordinator_address' in str(e):
    return ('--distributed found no cluster to join (no TPU pod, SLURM or Open MPI environment '
            f'was detected: {_first_line(e)}). Give --coordinator_address=HOST:PORT '
            '--num_processes=N --process_id=I instead.')
  return (f'could not join the run ({_first_line(e)}). Check --coordinator_address, '
          '--num_processes and --process_id: the same address and count on every process, '
          'each process its own id.')


_PEER_SIGNS = ('gloo', 'connection closed', 'connection reset', 'coordination', 'barrier',
               'heartbeat', 'unavailable', 'deadline_exceeded', 'socket closed')


def is_peer_failure(e: BaseException) -> bool:
  """True for the runtime errors a dead or unreachable peer process causes."""
  import jax  # lazy: see the module docstring
  if not isinstance(e, jax.errors.JaxRuntimeError):
    return False
  text = str(e).lower()
  return any(s in text for s in _PEER_SIGNS)


def peer_lost(e: BaseException, workdir: Optional[str]) -> PeerLostError:
  """The message for a run that lost one of its processes."""
  import jax  # lazy: see the module docstring
  logs = (f'{workdir}/hdgan_jax.log (process 0) and {workdir}/hdgan_jax.process<I>.log'
          if workdir else 'their logs')
  return PeerLostError(
      f'lost contact with the other processes of this run ({_first_line(e)}): one of them '
      f'stopped (killed, crashed, or its host failed); see {logs}. Start all '
      f'{jax.process_count()} processes again with the same command: training resumes from '
      'the newest checkpoint.')


def exit_now(code) -> None:
  """Ends this process with ``code`` (a message string exits with 1) at once.

  A normal exit runs ``jax.distributed.shutdown``, whose barrier waits for
  every process; after a failure a peer may be dead, so the wait would last
  until the heartbeat timeout and end in an abort. Buffers are flushed first.
  """
  if isinstance(code, str):
    print(code, file=sys.stderr)
    code = 1
  for stream in (sys.stdout, sys.stderr):
    try:
      stream.flush()
    except (OSError, ValueError):
      pass
  os._exit(code if isinstance(code, int) else 1)
