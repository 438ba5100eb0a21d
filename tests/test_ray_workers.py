"""Environments as Ray actors (envs.ray_workers): a batch of real BabyAI environments stepped
through VectorEnv as local ones are, an actor killed mid-episode (its episode ends truncated, the
batch goes on, nothing else changes), crashed, hung and failing environments, an unreachable
cluster, and training with `envs.backend = "ray"` and `"process"` giving the local backend's
metrics. One local Ray (2 CPUs, no dashboard) serves the module."""

from __future__ import annotations

import functools
import logging
import os
import signal
import socket
import sys
import time

import pytest
import ray

from configs import londi
from londi_jax import envs
from londi_jax.envs import ray_workers
from londi_jax.envs.base import Observation
from londi_jax.envs.vector import VectorEnv
from londi_jax.envs.workers import EnvCrashed, env_factory
from londi_jax.training import loop
from londi_jax.training.fakes import make_tiny_policies
from londi_jax.training.lm import load_runners
from londi_jax.training.metrics import read_metrics

# The toy environments below travel to the actors by value (this module is not importable there).
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

LEVEL = "babyai_text/BabyAI-GoToLocal-v0"
ACTIONS = ("go forward", "turn left", "go forward", "turn right", "go forward", "toggle")


class ToyEnv:
  """Observation `t=<steps>`; the actions `hang` (sleeps), `crash` (raises `EnvCrashed`) and
  `bad` (raises `KeyError`)."""

  step_limit = 50

  def __init__(self):
    self.t = 0

  def _obs(self):
    return Observation("toy", (f"t={self.t}",), ("tick",), {"pid": os.getpid()})

  def reset(self, seed=None):
    self.t = seed or 0
    return self._obs()

  def step(self, action):
    if action == "hang":
      time.sleep(60)
    if action == "crash":
      raise EnvCrashed("the backend is gone")
    if action == "bad":
      raise KeyError(action)
    self.t += 1
    return self._obs(), 1.0, False, {"success": False, "truncated": False}

  def close(self):
    pass


def test_an_unreachable_cluster_is_named_at_once():
  with socket.socket() as s:  # a port nothing listens on
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  start = time.perf_counter()
  with pytest.raises(ConnectionError, match=f"envs.ray_address='127.0.0.1:{port}': no Ray head"):
    env_factory("ray", ray_address=f"127.0.0.1:{port}")
  assert time.perf_counter() - start < 10


@pytest.fixture(scope="module")
def local_ray():
  ray_workers.connect("", num_cpus=2)
  yield
  ray_workers.shutdown()


def _row(result, i):
  """Row `i` of a `VectorEnv.step` result."""
  obs, rewards, dones, infos = result
  return obs[i], float(rewards[i]), bool(dones[i]), infos[i]


def _ray_vector(n: int, seed: int) -> VectorEnv:
  make = functools.partial(envs.make, LEVEL)
  return VectorEnv([functools.partial(ray_workers.RayEnvWorker, make, timeout_s=30)] * n, seed=seed)


def test_actors_step_like_local_environments_and_die_without_losing_data(local_ray, caplog):
  with _ray_vector(2, seed=3) as actors, VectorEnv([functools.partial(envs.make, LEVEL)] * 2,
                                                   seed=3) as local:
    assert actors.reset() == local.reset()
    for a in ACTIONS[:3]:  # mid-episode
      got, want = actors.step([a, a]), local.step([a, a])
      assert [_row(got, i) for i in range(2)] == [_row(want, i) for i in range(2)]
    assert actors.envs[0].step_limit == local.envs[0].step_limit
    dead = actors.envs[0].pid
    os.kill(dead, signal.SIGKILL)
    with caplog.at_level(logging.WARNING, logger="londi_jax.envs.ray_workers"):
      obs, rewards, dones, infos = actors.step(["go forward"] * 2)
    assert "restarting" in caplog.text
    # Row 0's episode ends truncated; row 1 is untouched.
    assert dones[0] and infos[0]["truncated"] and infos[0]["worker_restarted"]
    assert infos[0]["episode"] == {"return": 0.0, "length": 4, "success": False, "seed": 3}
    assert _row((obs, rewards, dones, infos), 1) == _row(local.step(["go forward"] * 2), 1)
    # Row 0 goes on with its next episode (seed 3 + 2) in the restarted actor.
    assert obs[0] == envs.make(LEVEL).reset(seed=5)
    assert actors.envs[0].restarts == 1 and actors.envs[0].pid != dead
    stats = actors.statistics()
    assert stats["episodes"] == 1 and stats["mean_length"] == 4.0
    for a in ACTIONS[3:]:  # the batch goes on; row 1 still plays exactly the local episode
      assert _row(actors.step([a, a]), 1) == _row(local.step([a, a]), 1)


def test_crashed_hung_and_failing_environments(local_ray, caplog):
  worker = ray_workers.RayEnvWorker(ToyEnv, timeout_s=2.0, reset_timeout_s=30.0)
  try:
    assert worker.reset(seed=4).sentences == ("t=4",)
    with caplog.at_level(logging.WARNING, logger="londi_jax.envs.ray_workers"):
      obs, reward, done, info = worker.step("crash")
    assert done and info["truncated"] and "environment crashed" in info["error"]
    assert obs.sentences == ("t=4",)  # the last observation before the failure
    assert worker.reset(seed=1).sentences == ("t=1",)
    _, _, done, info = worker.step("hang")
    assert done and "no answer within 2 s" in info["error"]
    assert worker.restarts == 2
    assert worker.reset(seed=7).sentences == ("t=7",)  # a fresh actor
    with pytest.raises(KeyError):  # the environment's own exceptions reach the caller
      worker.step("bad")
    assert worker.step("tick")[0].sentences == ("t=8",)
  finally:
    worker.close()


@pytest.fixture(scope="module")
def runners(tmp_path_factory):
  config = londi.get_config("babyai_text:smoke")
  config.policies.dir = make_tiny_policies(str(tmp_path_factory.mktemp("policies")))
  return config.policies.dir, load_runners(config)


def _train(policies_and_runners, workdir, backend):
  policies, runners = policies_and_runners
  config = londi.get_config("babyai_text:smoke")
  config.policies.dir = policies
  config.num_envs = 2
  config.train_steps = 8
  config.log_every = 4
  config.checkpoint_every = 8
  config.eval_every = 0
  config.envs.backend = backend
  loop.train(config, workdir, log=None, runners=runners)
  return [{k: v for k, v in r.items() if k not in ("time", "steps_per_s")}
          for r in read_metrics(os.path.join(workdir, "metrics.jsonl"))]


def test_training_with_worker_backends_gives_the_local_metrics(local_ray, runners, tmp_path):
  local = _train(runners, str(tmp_path / "local"), "local")
  assert [r["step"] for r in local] == [4, 8]
  assert _train(runners, str(tmp_path / "ray"), "ray") == local
  assert _train(runners, str(tmp_path / "process"), "process") == local
