"""Text environments in worker processes: one subprocess per environment, restarted on failure.

    worker = EnvWorker(functools.partial(londi_jax.envs.make, "scienceworld/boil"), timeout_s=60)
    obs = worker.reset(seed=0)
    worker.step_async("look around")   # returns at once; a batch issues every call first,
    obs, reward, done, info = worker.wait()   # then waits on each.
    worker.close()

The environment is built by `env_fn` inside the worker (a `spawn` subprocess, so JAX in the parent
is never forked). A worker whose process dies, or whose call runs past its timeout, is killed with
its whole process tree (a ScienceWorld JVM included) and started again; the step in flight ends the
episode as truncated (`done=True`, `info["truncated"]`, `info["worker_restarted"]`,
`info["error"]`), and the next `reset` runs in the fresh process. `replay(seed, actions)` resets and
steps a whole episode prefix in one call (`envs.base.replay`; `replay_async` and `wait_replay`
split it like a step); a failure during it raises `WorkerFailure` after the restart. An environment that notices that
its own backend died (ScienceWorld's JVM) raises `EnvCrashed`, which counts as a failure too;
other exceptions that the environment raises are passed on to the caller unchanged.

`env_factory(backend)` builds environments for `envs.backend`: in this process (`local`), in an
`EnvWorker` each (`process`), or in a Ray actor each (`ray`, `envs.ray_workers.RayEnvWorker`,
with the same interface and failure rules).
"""

from __future__ import annotations

import atexit
import functools
import logging
import multiprocessing
import os
import pickle
import signal
import sys
import traceback
import weakref
from typing import Any, Callable, Sequence

from londi_jax.envs.base import Observation, TextEnv, replay

_LOG = logging.getLogger(__name__)
_CONTEXT = multiprocessing.get_context("spawn")
_LIVE_WORKERS: "weakref.WeakSet[EnvWorker]" = weakref.WeakSet()


def _close_live_workers() -> None:
  for worker in list(_LIVE_WORKERS):
    worker.close()


@functools.cache
def _close_workers_at_exit() -> None:
  # Registered after multiprocessing's own exit handler (which terminates daemonic children
  # abruptly), so that it runs before it: atexit runs the latest registration first.
  atexit.register(_close_live_workers)


def descendant_pids(pid: int, command: str | None = None) -> list[int]:
  """The ids of the living descendants of process `pid` (read from /proc; empty elsewhere).

  Args:
    pid: the ancestor.
    command: if given, only the processes whose command name (`/proc/<pid>/comm`) it is.
  """
  children: dict[int, list[int]] = {}
  try:
    entries = os.listdir("/proc")
  except OSError:
    return []
  for entry in entries:
    if not entry.isdigit():
      continue
    try:
      with open(f"/proc/{entry}/stat") as f:
        stat = f.read()
    except OSError:
      continue
    # The command name in parentheses may hold spaces; the parent id is the 2nd field after it.
    ppid = int(stat.rsplit(")", 1)[1].split()[1])
    children.setdefault(ppid, []).append(int(entry))
  found, frontier = [], [pid]
  while frontier:
    kids = children.get(frontier.pop(), [])
    found.extend(kids)
    frontier.extend(kids)
  if command is not None:
    found = [p for p in found if _command(p) == command]
  return found


def _command(pid: int) -> str | None:
  try:
    with open(f"/proc/{pid}/comm") as f:
      return f.read().strip()
  except OSError:
    return None


def kill_tree(pid: int) -> None:
  """Sends SIGKILL to process `pid` and all its descendants (collected before the kill)."""
  for target in [pid, *descendant_pids(pid)]:
    try:
      os.kill(target, signal.SIGKILL)
    except ProcessLookupError:
      pass


class EnvCrashed(RuntimeError):
  """Raised by an environment whose backend (a JVM, a simulator process) has died."""


def dispatch(env: TextEnv, method: str, argument: Any) -> Any:
  """Runs one remote request on `env`: `reset(seed)`, `step(action)`, `replay((seed, actions))`
  or the `step_limit` property."""
  if method == "reset":
    return env.reset(seed=argument)
  if method == "step_limit":
    return env.step_limit
  if method == "replay":
    return replay(env, *argument)
  if method == "step":
    return env.step(argument)
  raise ValueError(f"unknown environment request {method!r}")


def _serve(env_fn: Callable[[], TextEnv], conn) -> None:
  """The worker's loop: runs each `(method, argument)` request on the env and sends the result."""
  env = None
  # A terminated worker still closes its environment (and so ends its JVM).
  signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
  try:
    while True:
      try:
        method, argument = conn.recv()
      except EOFError:
        return
      if method == "close":
        return
      try:
        if env is None:
          env = env_fn()
        conn.send(("ok", dispatch(env, method, argument)))
      except EnvCrashed as e:
        conn.send(("failed", f"environment crashed: {e}"))
        return
      except Exception as e:  # pylint: disable=broad-except
        conn.send(("raise", _picklable(e)))
  finally:
    if env is not None:
      env.close()
    conn.close()


def _picklable(error: Exception) -> Exception:
  """The exception itself if it survives pickling, else a RuntimeError with its traceback."""
  try:
    pickle.loads(pickle.dumps(error))
    return error
  except Exception:  # pylint: disable=broad-except
    return RuntimeError("".join(traceback.format_exception(error)))


class WorkerFailure(RuntimeError):
  """A worker that died or timed out during a reset, twice in a row."""


class RemoteEnv:
  """The `TextEnv` side of an environment that runs elsewhere (a worker process, a Ray actor):
  calls in flight, their failures and restarts (see the module docstring).

  A subclass sends a call with `_send(method, argument)` (setting `_pending` to a tuple that
  starts with `(method, argument)`), answers it with `_receive(timeout_s)` as `("ok", result)`,
  `("raise", exception)` or `("failed", reason)`, restarts with `_restart(reason)`, and sets
  `timeout_s`, `reset_timeout_s`, `_pending = None`, `_last_obs = None` and
  `_step_limit = None`.
  """

  @staticmethod
  def _reason(reason: str) -> str:
    """A failure's reason as a user reads it."""
    return reason

  def reset_async(self, seed: int | None = None) -> None:
    """Starts a `reset(seed)`; `wait()` returns its observation."""
    self._step_limit = None
    self._send("reset", seed)

  def step_async(self, action: str) -> None:
    """Starts a `step(action)`; `wait()` returns its `(obs, reward, done, info)`."""
    self._send("step", action)

  def wait(self):
    """The result of the call in flight (see the module docstring for failures)."""
    if self._pending is None:
      raise RuntimeError("nothing in flight; call reset_async or step_async first")
    method, argument = self._pending[:2]
    status, result = self._receive(self.reset_timeout_s if method == "reset" else self.timeout_s)
    self._pending = None
    if status == "raise":
      raise result
    if status == "ok":
      self._last_obs = result if method == "reset" else result[0]
      return result
    self._restart(result)
    if method == "reset":
      return self._retry_reset(argument, result)
    info = {"success": False, "truncated": True, "worker_restarted": True,
            "error": self._reason(result)}
    return self._last_obs, 0.0, True, info

  def _retry_reset(self, seed: int | None, first_error: str) -> Observation:
    self._send("reset", seed)
    status, result = self._receive(self.reset_timeout_s)
    self._pending = None
    if status == "ok":
      self._last_obs = result
      return result
    if status == "raise":
      raise result
    self._restart(result)
    raise WorkerFailure(f"reset failed twice: {self._reason(first_error)}; then "
                        f"{self._reason(result)}")

  def _call(self, method: str, argument: Any, timeout_s: float) -> Any:
    """One call, waited for; a failure raises (no restart)."""
    self._send(method, argument)
    status, result = self._receive(timeout_s)
    self._pending = None
    if status == "ok":
      return result
    raise result if status == "raise" else WorkerFailure(self._reason(result))

  @property
  def step_limit(self) -> int:
    """The environment's step limit (`TextEnv.step_limit`), asked once per episode."""
    if self._step_limit is None:
      self._step_limit = int(self._call("step_limit", None, self.timeout_s))
    return self._step_limit

  def reset(self, seed: int | None = None) -> Observation:
    """Resets the environment and returns the first observation."""
    self.reset_async(seed)
    return self.wait()

  def step(self, action: str) -> tuple[Observation, float, bool, dict[str, Any]]:
    """Steps the environment."""
    self.step_async(action)
    return self.wait()

  def replay(self, seed: int | None, actions: Sequence[str]
             ) -> tuple[Observation, list[tuple[Observation, float, bool, dict[str, Any]]]]:
    """`envs.base.replay` run where the environment lives, in one call; a worker that fails
    during it is restarted and the failure raised (`WorkerFailure`)."""
    self.replay_async(seed, actions)
    return self.wait_replay()

  def replay_async(self, seed: int | None, actions: Sequence[str]) -> None:
    """Starts a `replay(seed, actions)`; `wait_replay()` returns its result."""
    self._step_limit = None
    self._send("replay", (seed, list(actions)))

  def wait_replay(self
                  ) -> tuple[Observation, list[tuple[Observation, float, bool, dict[str, Any]]]]:
    """The result of the `replay_async` in flight (a failure restarts the worker and raises)."""
    if self._pending is None or self._pending[0] != "replay":
      raise RuntimeError("no replay in flight; call replay_async first")
    actions = self._pending[1][1]
    status, result = self._receive(self.reset_timeout_s + self.timeout_s * len(actions))
    self._pending = None
    if status == "ok":
      first, steps = result
      self._last_obs = steps[-1][0] if steps else first
      return result
    if status == "raise":
      raise result
    self._restart(result)
    raise WorkerFailure(f"replay failed: {self._reason(result)}")

  def close(self) -> None:
    raise NotImplementedError

  def __enter__(self):
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


class EnvWorker(RemoteEnv):
  """A `TextEnv` whose environment lives in its own subprocess.

  Attributes:
    timeout_s: seconds a `step` may take before the worker counts as hung.
    reset_timeout_s: the same for `reset` (which may start a JVM and load a task).
    restarts: how many times the worker process was killed and started again.
  """

  def __init__(self, env_fn: Callable[[], TextEnv], timeout_s: float = 60.0,
               reset_timeout_s: float | None = None):
    """Starts the worker process; the environment itself is built there on the first call.

    Args:
      env_fn: a picklable function of no arguments that builds the environment (for example
        `functools.partial(londi_jax.envs.make, "scienceworld/boil")`).
      timeout_s: the longest a `step` may take.
      reset_timeout_s: the longest a `reset` may take; defaults to `4 * timeout_s`.
    """
    self._env_fn = env_fn
    self.timeout_s = timeout_s
    self.reset_timeout_s = 4 * timeout_s if reset_timeout_s is None else reset_timeout_s
    self.restarts = 0
    self._process = None
    self._conn = None
    self._pending: tuple[str, Any] | None = None
    self._last_obs: Observation | None = None
    self._step_limit: int | None = None
    self._start()
    _LIVE_WORKERS.add(self)
    _close_workers_at_exit()

  @property
  def pid(self) -> int | None:
    """The worker process's id (None once closed)."""
    return self._process.pid if self._process is not None else None

  def _start(self) -> None:
    parent_conn, child_conn = _CONTEXT.Pipe()
    self._process = _CONTEXT.Process(target=_serve, args=(self._env_fn, child_conn), daemon=True)
    self._process.start()
    child_conn.close()
    self._conn = parent_conn

  def _kill(self) -> None:
    if self._process is None:
      return
    kill_tree(self._process.pid)
    self._process.join(timeout=10)
    self._conn.close()
    self._process = self._conn = None

  def _restart(self, reason: str) -> None:
    _LOG.warning("env worker pid %s failed (%s); killing its process tree and restarting",
                 self.pid, reason)
    self._kill()
    self.restarts += 1
    self._start()

  def _send(self, method: str, argument: Any) -> None:
    if self._pending is not None:
      raise RuntimeError(f"a {self._pending[0]} is still in flight; call wait() first")
    if self._process is None:
      raise RuntimeError("the worker is closed")
    self._pending = (method, argument)
    try:
      self._conn.send((method, argument))
    except (BrokenPipeError, ConnectionResetError, OSError):
      pass  # The dead process is found and restarted by wait().

  def _receive(self, timeout_s: float) -> tuple[str, Any]:
    """The worker's answer, or `("failed", reason)` when it died or ran past `timeout_s`."""
    try:
      if not self._conn.poll(timeout_s):
        return "failed", f"no answer within {timeout_s:g} s"
      return self._conn.recv()
    except (EOFError, ConnectionResetError, OSError) as e:
      return "failed", f"worker process died ({type(e).__name__}, exit code "\
                       f"{self._process.exitcode if self._process else None})"

  def close(self) -> None:
    """Closes the environment and ends the worker process and its descendants. Idempotent."""
    if self._process is None:
      return
    try:
      if self._pending is None:
        self._conn.send(("close", None))
        self._process.join(timeout=15)
    except (BrokenPipeError, ConnectionResetError, OSError):
      pass
    self._kill()
    _LIVE_WORKERS.discard(self)



BACKENDS = ("local", "process", "ray")


def env_factory(backend: str = "local", ray_address: str = "", timeout_s: float = 60.0,
                ray_num_cpus: float | None = None) -> Callable[..., TextEnv]:
  """`make(env_id, **kwargs) -> TextEnv` for environments of one backend.

  Args:
    backend: `local` (`envs.make`, in this process), `process` (each environment in an
      `EnvWorker` subprocess) or `ray` (each in a Ray actor, `envs.ray_workers.RayEnvWorker`).
    ray_address: with `ray`, the cluster to join ("": a local Ray with this machine's CPUs).
    timeout_s: with a worker backend, the longest a step may take.
    ray_num_cpus: with `ray`, CPUs each actor reserves (None: Ray's default for actors).

  Raises:
    ValueError: an unknown backend (names `envs.backend`).
    ConnectionError: nothing answers at `ray_address`.
  """
  from londi_jax import envs  # pylint: disable=import-outside-toplevel

  if backend == "local":
    return envs.make
  if backend == "process":
    return lambda env_id, **kwargs: EnvWorker(functools.partial(envs.make, env_id, **kwargs),
                                              timeout_s=timeout_s)
  if backend == "ray":
    from londi_jax.envs import ray_workers  # pylint: disable=import-outside-toplevel
    ray_workers.connect(ray_address)
    return lambda env_id, **kwargs: ray_workers.RayEnvWorker(
        functools.partial(envs.make, env_id, **kwargs), timeout_s=timeout_s,
        num_cpus=ray_num_cpus)
  raise ValueError(f"envs.backend must be one of {BACKENDS}, got {backend!r}")
