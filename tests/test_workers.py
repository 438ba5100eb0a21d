"""EnvWorker with a toy environment (no JVM): results, errors, hangs, deaths, batches."""

import functools
import logging
import os
import time

import pytest

from londi_jax.envs.base import Observation, TextEnv
from londi_jax.envs.vector import VectorEnv
from londi_jax.envs.workers import EnvWorker, WorkerFailure, descendant_pids, dispatch


class CountingEnv:
  """Observation `i` after `i` steps; the action `hang` sleeps, `die` ends the process."""

  def __init__(self, tag: str = "toy"):
    self.tag = tag
    self.t = self.start = 0

  @property
  def step_limit(self):
    return 100 + self.start  # differs per episode: the worker must ask again after each reset

  def _obs(self):
    return Observation(self.tag, (f"t={self.t}",), ("tick", "hang", "die"), {"pid": os.getpid()})

  def reset(self, seed=None):
    self.t = self.start = 0 if seed is None else seed
    return self._obs()

  def step(self, action):
    if action == "hang":
      time.sleep(60)
    if action == "die":
      os._exit(3)
    if action not in ("tick",):
      raise KeyError(action)
    self.t += 1
    return self._obs(), 1.0, self.t >= 100, {"success": False, "truncated": False}

  def close(self):
    pass


@pytest.fixture
def worker():
  w = EnvWorker(functools.partial(CountingEnv, "w"), timeout_s=2.0)
  yield w
  w.close()


def test_worker_runs_the_env_in_another_process(worker):
  obs = worker.reset(seed=5)
  assert obs.sentences == ("t=5",) and obs.extra["pid"] == worker.pid != os.getpid()
  obs, reward, done, info = worker.step("tick")
  assert (obs.sentences, reward, done) == (("t=6",), 1.0, False)


def test_env_errors_reach_the_caller_and_the_worker_goes_on(worker):
  worker.reset(seed=0)
  with pytest.raises(KeyError):
    worker.step("no such action")
  assert worker.step("tick")[0].sentences == ("t=1",) and worker.restarts == 0


@pytest.mark.parametrize("failure", ["hang", "die"])
def test_failed_worker_truncates_the_episode_and_restarts(worker, failure, caplog):
  worker.reset(seed=3)
  first_pid = worker.pid
  with caplog.at_level(logging.WARNING):
    obs, reward, done, info = worker.step(failure)
  assert done and info["truncated"] and info["worker_restarted"] and info["error"]
  assert obs.sentences == ("t=3",) and reward == 0.0
  assert worker.restarts == 1 and worker.pid != first_pid
  assert any("restarting" in r.getMessage() for r in caplog.records)
  assert worker.reset(seed=7).sentences == ("t=7",)
  assert worker.step("tick")[0].sentences == ("t=8",)


def test_vector_env_of_workers_steps_and_closes_every_process():
  fns = [functools.partial(EnvWorker, functools.partial(CountingEnv, f"w{i}"), timeout_s=2.0)
         for i in range(2)]
  with VectorEnv(fns, seed=10) as vec:
    pids = [env.pid for env in vec.envs]
    obs = vec.reset()
    assert [o.sentences for o in obs] == [("t=10",), ("t=11",)]
    obs, rewards, dones, _ = vec.step(["tick", "tick"])
    assert [o.sentences for o in obs] == [("t=11",), ("t=12",)] and rewards.tolist() == [1, 1]
  assert not set(pids) & set(descendant_pids(os.getpid()))


def test_close_is_idempotent_and_ends_the_process():
  w = EnvWorker(CountingEnv, timeout_s=2.0)
  pid = w.pid
  w.close()
  w.close()
  assert pid not in descendant_pids(os.getpid())
  with pytest.raises(ProcessLookupError):
    os.kill(pid, 0)


def test_worker_is_a_text_env_and_reports_each_episodes_step_limit():
  with EnvWorker(CountingEnv) as worker:
    assert isinstance(worker, TextEnv)
    worker.reset(seed=5)
    worker.step("tick")
    assert worker.step_limit == 105  # asked after the reset, then kept for the episode
    worker.reset(seed=7)
    assert worker.step_limit == 107


def test_replay_resets_and_steps_in_one_call_and_stops_at_the_episodes_end(worker):
  first, steps = worker.replay(98, ["tick"] * 5)
  assert first.sentences == ("t=98",)
  assert [s[0].sentences for s in steps] == [("t=99",), ("t=100",)] and steps[-1][2]
  assert all(s[0].extra["pid"] == worker.pid for s in steps)
  assert worker.step_limit == 198  # asked again after the replay's reset


def test_a_worker_that_dies_during_a_replay_is_restarted_and_the_replay_refused(worker, caplog):
  first_pid = worker.pid
  worker.reset(seed=0)
  with caplog.at_level(logging.WARNING), pytest.raises(WorkerFailure, match="replay failed"):
    worker.replay(0, ["tick", "die", "tick"])
  assert worker.restarts == 1 and worker.pid != first_pid
  assert worker.replay(4, ["tick"])[1][0][0].sentences == ("t=5",)


def test_dispatch_runs_each_request_on_the_env_and_names_an_unknown_one():
  env = CountingEnv()
  assert dispatch(env, "reset", 3).sentences == ("t=3",)
  assert dispatch(env, "step", "tick")[0].sentences == ("t=4",)
  assert dispatch(env, "step_limit", None) == 103
  assert dispatch(env, "replay", (0, ["tick"]))[1][0][0].sentences == ("t=1",)
  with pytest.raises(ValueError, match="'jump'"):
    dispatch(env, "jump", None)
