"""VectorEnv: seeds, automatic reset, episode statistics, asynchronous environments."""

import functools

import numpy as np
import pytest

from londi_jax import envs
from londi_jax.envs.base import Observation, TextEnv
from londi_jax.envs.vector import VectorEnv, make_vector
from londi_jax.envs.workers import EnvWorker


class _CountingEnv:
  """Episodes of `1 + seed % 3` steps, reward 1 per step, success when the seed is even."""

  step_limit = 3  # no episode is longer

  def __init__(self):
    self.seed = self.t = None

  def _obs(self):
    return Observation(mission="count", sentences=(f"seed {self.seed} t {self.t}",),
                       valid_actions=("a",))

  def reset(self, seed=None):
    self.seed, self.t = seed, 0
    return self._obs()

  def step(self, action):
    self.t += 1
    done = self.t == 1 + self.seed % 3
    return self._obs(), 1.0, done, {"success": done and self.seed % 2 == 0, "truncated": False}

  def close(self):
    pass


class _AsyncCountingEnv(_CountingEnv):
  """The same, behind the worker interface; logs the order of calls."""

  def __init__(self, log):
    super().__init__()
    self.log = log
    self._pending = None

  def reset_async(self, seed):
    self.log.append("issue")
    self._pending = lambda: self.reset(seed)

  def step_async(self, action):
    self.log.append("issue")
    self._pending = lambda: self.step(action)

  def wait(self):
    self.log.append("wait")
    return self._pending()


def _sentence(obs):
  return obs.sentences[0]


def test_environments_follow_the_protocol():
  assert isinstance(_CountingEnv(), TextEnv)
  babyai = envs.make("babyai_text/BabyAI-GoToLocal-v0", max_steps=9)
  assert isinstance(babyai, TextEnv) and babyai.step_limit == 9
  pytest.importorskip("scienceworld")
  scienceworld = envs.make("scienceworld/boil", step_limit=7)  # no JVM until the first reset
  assert isinstance(scienceworld, TextEnv) and scienceworld.step_limit == 7
  assert not isinstance(object(), TextEnv)


def test_auto_reset_seeds_and_statistics():
  vec = VectorEnv([_CountingEnv, _CountingEnv], seed=10)
  # env 0 plays seeds 10, 12, 14 ... (lengths 2, 1, 3); env 1 plays 11, 13 ... (lengths 3, 2)
  assert [_sentence(o) for o in vec.reset()] == ["seed 10 t 0", "seed 11 t 0"]
  obs, rewards, dones, infos = vec.step(["a", "a"])
  assert [_sentence(o) for o in obs] == ["seed 10 t 1", "seed 11 t 1"]
  assert rewards.dtype == np.float32 and rewards.tolist() == [1.0, 1.0]
  assert dones.dtype == bool and dones.tolist() == [False, False]
  assert "episode" not in infos[0] and "episode" not in infos[1]

  obs, _, dones, infos = vec.step(["a", "a"])
  assert dones.tolist() == [True, False]
  assert [_sentence(o) for o in obs] == ["seed 12 t 0", "seed 11 t 2"]
  assert _sentence(infos[0]["final_observation"]) == "seed 10 t 2"
  assert infos[0]["episode"] == {"return": 2.0, "length": 2, "success": True, "seed": 10}

  obs, _, dones, infos = vec.step(["a", "a"])
  assert dones.tolist() == [True, True]
  assert [_sentence(o) for o in obs] == ["seed 14 t 0", "seed 13 t 0"]
  assert infos[0]["episode"] == {"return": 1.0, "length": 1, "success": True, "seed": 12}
  assert infos[1]["episode"] == {"return": 3.0, "length": 3, "success": False, "seed": 11}

  stats = vec.statistics()
  assert stats["episodes"] == 3
  assert stats["mean_return"] == pytest.approx(2.0)
  assert stats["mean_length"] == pytest.approx(2.0)
  assert stats["success_rate"] == pytest.approx(2 / 3)
  assert stats["recent_success_rate"] == pytest.approx(2 / 3)

  # reset() moves on to the next episodes; reset(seed) restarts the numbering
  assert [_sentence(o) for o in vec.reset()] == ["seed 16 t 0", "seed 15 t 0"]
  assert [_sentence(o) for o in vec.reset(seed=10)] == ["seed 10 t 0", "seed 11 t 0"]


def test_statistics_window_keeps_the_latest_episodes():
  vec = VectorEnv([_CountingEnv], seed=0, stats_window=1)
  vec.reset()
  # seed 0: 1 step, success; seed 1: 2 steps, failure
  for _ in range(3):
    vec.step(["a"])
  stats = vec.statistics()
  assert stats["episodes"] == 2
  assert stats["success_rate"] == pytest.approx(0.5)
  assert stats["recent_success_rate"] == 0.0
  assert stats["recent_mean_length"] == 2.0


def test_async_environments_are_issued_before_waiting():
  log = []
  vec = VectorEnv([lambda: _AsyncCountingEnv(log)] * 3, seed=10)
  sync = VectorEnv([_CountingEnv] * 3, seed=10)
  assert vec.reset() == sync.reset()
  assert log == ["issue"] * 3 + ["wait"] * 3
  for _ in range(4):
    log.clear()
    a, b = vec.step(["a"] * 3), sync.step(["a"] * 3)
    assert a[0] == b[0] and a[1].tolist() == b[1].tolist() and a[2].tolist() == b[2].tolist()
    assert [i.get("episode") for i in a[3]] == [i.get("episode") for i in b[3]]
    assert log[:6] == ["issue"] * 3 + ["wait"] * 3  # then the same for rows that reset


def test_wrong_number_of_actions():
  vec = VectorEnv([_CountingEnv] * 2)
  vec.reset()
  with pytest.raises(ValueError, match="expected 2 actions"):
    vec.step(["a"])


def test_babyai_vector_matches_single_environments():
  env_id = "babyai_text/BabyAI-GoToLocal-v0"
  with make_vector(env_id, num_envs=3, seed=5) as vec:
    first = vec.reset()
    for i, obs in enumerate(first):
      assert obs == envs.make(env_id).reset(seed=5 + i)
    obs, rewards, dones, infos = vec.step(["turn left"] * 3)
    assert rewards.shape == (3,) and dones.shape == (3,)
    assert all(not i["success"] for i in infos)
    assert vec.reset(seed=5) == first


def test_worker_processes_step_like_in_process_environments():
  make_env = functools.partial(envs.make, "babyai_text/BabyAI-GoToLocal-v0", max_steps=5)
  with VectorEnv([functools.partial(EnvWorker, make_env)] * 2, seed=3) as workers, \
      VectorEnv([make_env] * 2, seed=3) as local:
    assert workers.reset() == local.reset()
    for t in range(12):
      actions = ["turn left", "go forward"] if t % 2 else ["go forward", "turn right"]
      (obs_w, rew_w, done_w, info_w), (obs_l, rew_l, done_l, info_l) = (
          workers.step(actions), local.step(actions))
      assert obs_w == obs_l
      assert rew_w.tolist() == rew_l.tolist() and done_w.tolist() == done_l.tolist()
      assert [i.get("episode") for i in info_w] == [i.get("episode") for i in info_l]
    assert workers.statistics() == local.statistics()
    assert local.statistics()["episodes"] >= 4  # episodes last at most 5 steps
