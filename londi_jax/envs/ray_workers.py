"""Text environments as Ray actors: one actor per environment, restarted by Ray when it dies.

    connect("")                                   # a local Ray with this machine's CPUs
    worker = RayEnvWorker(functools.partial(londi_jax.envs.make, "scienceworld/boil"))
    obs = worker.reset(seed=0)
    worker.step_async("look around")              # a batch issues every call first,
    obs, reward, done, info = worker.wait()       # then waits on each (`envs.vector.call_all`)
    worker.close()

`RayEnvWorker` has `EnvWorker`'s interface and failure rules, so a `VectorEnv` steps either
kind in parallel: the environment is built by `env_fn` inside the actor on its first call. An
actor that dies (its process killed, a lost node) is restarted by Ray (`max_restarts=-1`); one
whose call runs past its timeout, or whose environment raises `EnvCrashed` (a dead ScienceWorld
JVM), is killed with its process tree when it runs on this node (else with `ray.kill`) and so
restarted too. The step in flight then ends the episode as truncated (`done=True`,
`info["truncated"]`, `info["worker_restarted"]`, `info["error"]`) with a logged warning, and the
next `reset` runs in the fresh actor. Other exceptions of the environment reach the caller
unchanged.

`connect(address)` joins the cluster of `ray start --head` (`host:port`, or `auto` for the one
this machine belongs to) or, with no address, starts a local Ray with the machine's CPUs and no
dashboard. An address where nothing answers raises `ConnectionError` at once.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import sys
import time
from typing import Any, Callable

from londi_jax.envs.base import Observation, TextEnv
from londi_jax.envs.workers import EnvCrashed, RemoteEnv, dispatch, kill_tree

_LOG = logging.getLogger(__name__)
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _ray():
  import ray  # pylint: disable=import-outside-toplevel
  return ray


def connect(address: str = "", num_cpus: int | None = None) -> None:
  """Joins a Ray cluster, or starts a local one; nothing when this process is connected already.

  Args:
    address: `host:port` of a running head node (`ray start --head --port=6379`), `auto` for
      the cluster this machine belongs to, or "" for a new local Ray.
    num_cpus: CPUs of a new local Ray (default: this machine's).

  Raises:
    ConnectionError: nothing answers at `address` (names `envs.ray_address`).
  """
  ray = _ray()
  if address and address != "auto":
    _check_reachable(address)
  if ray.is_initialized():
    return
  if address:
    ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    return
  # Local workers import this package from the checkout that started them.
  path = os.pathsep.join([_ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                    if p])
  ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False,
           logging_level=logging.WARNING, runtime_env={"env_vars": {"PYTHONPATH": path}})


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
  host, _, port = address.rpartition(":")
  host = host.removeprefix("ray://")
  if not host or not port.isdigit():
    raise ConnectionError(f"envs.ray_address={address!r} is not 'host:port' (or 'auto')")
  try:
    with socket.create_connection((host, int(port)), timeout=timeout_s):
      pass
  except OSError as e:
    raise ConnectionError(
        f"envs.ray_address={address!r}: no Ray head node answers ({type(e).__name__}: {e}); "
        "start one with `ray start --head --port=6379`, or leave envs.ray_address empty for a "
        "local Ray") from e


def shutdown() -> None:
  """Disconnects from Ray (and stops a local Ray this process started)."""
  if "ray" in sys.modules and _ray().is_initialized():
    _ray().shutdown()


class _EnvActor:
  """The actor: one environment, built on the first call."""

  def __init__(self, env_fn: Callable[[], TextEnv]):
    self._env_fn = env_fn
    self._env = None

  def call(self, method: str, argument: Any) -> tuple[int, str, Any]:
    """`(pid, node id, result)` of `reset(seed)`, `step(action)`, `replay((seed, actions))` or
    `step_limit`."""
    ray = _ray()
    where = (os.getpid(), ray.get_runtime_context().get_node_id())
    if method == "where":
      return (*where, None)
    if self._env is None:
      self._env = self._env_fn()
    return (*where, dispatch(self._env, method, argument))

  def close(self) -> None:
    if self._env is not None:
      self._env.close()
      self._env = None


@functools.cache
def _actor_class():
  return _ray().remote(_EnvActor)


class RayEnvWorker(RemoteEnv):
  """A `TextEnv` whose environment lives in a Ray actor (see the module docstring).

  Attributes:
    timeout_s: seconds a `step` may take before the actor counts as hung.
    reset_timeout_s: the same for `reset` (which may start a JVM and load a task).
    restarts: how many times the actor failed and was restarted.
  """

  def __init__(self, env_fn: Callable[[], TextEnv], timeout_s: float = 60.0,
               reset_timeout_s: float | None = None, num_cpus: float | None = None):
    """Creates the actor (connecting to a local Ray first if this process is not connected).

    Args:
      env_fn: a picklable function of no arguments that builds the environment.
      timeout_s: the longest a `step` may take.
      reset_timeout_s: the longest a `reset` may take; defaults to `4 * timeout_s`.
      num_cpus: CPUs the actor reserves on its node (default: Ray's, none while it runs).
    """
    ray = _ray()
    if not ray.is_initialized():
      connect("")
    self.timeout_s = timeout_s
    self.reset_timeout_s = 4 * timeout_s if reset_timeout_s is None else reset_timeout_s
    self.restarts = 0
    options = {"max_restarts": -1, "max_task_retries": 0}
    if num_cpus is not None:
      options["num_cpus"] = num_cpus
    self._actor = _actor_class().options(**options).remote(env_fn)
    self._pending: tuple[str, Any, Any] | None = None
    self._last_obs: Observation | None = None
    self._step_limit: int | None = None
    self._where: tuple[int, str] | None = None  # the actor's (pid, node id), from its answers

  @staticmethod
  def _reason(reason: str) -> str:
    return reason.removeprefix("kill:")

  @property
  def pid(self) -> int:
    """The actor's process id (asked once per actor incarnation)."""
    if self._where is None:
      self._call("where", None, self.reset_timeout_s)
    return self._where[0]

  def _send(self, method: str, argument: Any) -> None:
    if self._pending is not None:
      raise RuntimeError(f"a {self._pending[0]} is still in flight; call wait() first")
    if self._actor is None:
      raise RuntimeError("the worker is closed")
    self._pending = (method, argument, self._actor.call.remote(method, argument))

  def _receive(self, timeout_s: float) -> tuple[str, Any]:
    """`("ok", result)`, `("raise", exception)`, or `("failed", reason)` for a dead, hung or
    crashed actor (whose restart the reason's `kill` prefix asks for)."""
    ray = _ray()
    _, _, ref = self._pending
    self._pending = None
    try:
      pid, node, result = ray.get(ref, timeout=timeout_s)
    except ray.exceptions.GetTimeoutError:
      return "failed", f"kill:no answer within {timeout_s:g} s"
    except ray.exceptions.RayTaskError as e:
      cause = e.cause if getattr(e, "cause", None) is not None else e
      if isinstance(cause, EnvCrashed):
        return "failed", f"kill:environment crashed: {cause}"
      return "raise", cause
    except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as e:
      return "failed", f"actor died ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
    self._where = (pid, node)
    return "ok", result

  def _restart(self, reason: str) -> None:
    """Has Ray restart the actor: a dead one restarts by itself; a hung or crashed one is
    killed (with its process tree, a JVM included, when it runs on this node)."""
    _LOG.warning("env actor %s failed (%s); restarting it", self._where,
                 reason.removeprefix("kill:"))
    ray = _ray()
    old = self._where
    if reason.startswith("kill:"):
      if old is not None and old[1] == ray.get_runtime_context().get_node_id():
        kill_tree(old[0])  # Ray sees its actor die and restarts it
      else:
        ray.kill(self._actor, no_restart=False)
    self._where = None
    self.restarts += 1
    self._await_restart(old)

  def _await_restart(self, old: tuple[int, str] | None) -> None:
    """Waits (up to `reset_timeout_s`) until the restarted actor answers, so that the next call
    does not meet the old one's death; a later failure is handled by the caller all the same."""
    ray = _ray()
    deadline = time.monotonic() + self.reset_timeout_s
    while time.monotonic() < deadline:
      try:
        pid, node, _ = ray.get(self._actor.call.remote("where", None),
                               timeout=max(deadline - time.monotonic(), 0.1))
      except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError,
              ray.exceptions.GetTimeoutError):
        time.sleep(0.2)
        continue
      if old is None or (pid, node) != old:
        self._where = (pid, node)
        return
      time.sleep(0.2)  # still the old process, dying

  def close(self) -> None:
    """Closes the environment and ends the actor. Idempotent."""
    if self._actor is None:
      return
    ray = _ray()
    if ray.is_initialized():
      if self._pending is None:
        try:
          ray.get(self._actor.close.remote(), timeout=15)
        except Exception:  # pylint: disable=broad-except
          pass  # a dead or hung actor: killed below all the same
      ray.kill(self._actor, no_restart=True)
    self._actor = None
    self._pending = None

