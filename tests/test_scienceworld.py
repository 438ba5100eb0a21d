"""ScienceWorld with the real JVM: gold paths, candidates, splits, a killed JVM, no leftover JVM.

Few JVMs and short gold paths: `find-living-thing` (10 gold actions) and `boil` (39), whose gold
path the simulator's own action lists miss half of.
"""

import functools
import os
import signal

import pytest

from londi_jax import envs
from londi_jax.envs import scienceworld, scienceworld_candidates
from londi_jax.envs.base import UnknownEnvironmentError
from londi_jax.envs.workers import EnvWorker, descendant_pids

pytest.importorskip("scienceworld")


@pytest.fixture(scope="module", autouse=True)
def no_java_left():
  """Torn down last: every JVM this module started is gone by then."""
  yield
  assert descendant_pids(os.getpid(), "java") == []


def _open(task: str):
  env = envs.make(f"scienceworld/{task}", gold_path=True)
  yield env
  pid = env.java_pid
  env.close()
  assert pid is None or pid not in descendant_pids(os.getpid())


@pytest.fixture(scope="module")
def living():
  yield from _open("find-living-thing")


@pytest.fixture(scope="module")
def boil():
  yield from _open("1-1")


def _gold(env):
  """The gold path the simulator generated, without its answers to ambiguity prompts."""
  return [a for a in env.gold_actions if a != "0"]


def test_make_knows_names_and_ids_without_starting_a_jvm():
  env = envs.make("scienceworld/1-1", split="dev")
  assert env.task == "boil" and env.java_pid is None
  with pytest.raises(UnknownEnvironmentError, match="scienceworld/boil"):
    envs.make("scienceworld/no-such-task")
  assert "boil" in scienceworld.known_ids() and scienceworld.accepts("10-2")


def test_gold_path_reaches_full_score_through_step(living):
  obs = living.reset(seed=0)
  assert obs.mission.startswith("Your task is") and obs.sentences and obs.extra["inventory"]
  total, done, info = 0.0, False, {}
  for action in _gold(living):
    assert not done
    obs, reward, done, info = living.step(action)
    total += reward
  assert done and info["success"] and info["score"] == 100 and total == 100
  assert not info["truncated"]


@pytest.mark.parametrize("task", ["living", "boil"])
def test_candidates_are_stable_and_cover_the_gold_path(task, request):
  env = request.getfixturevalue(task)
  first = env.reset(seed=0)
  again = env.reset(seed=0)
  assert first.valid_actions == again.valid_actions and first.sentences == again.sentences
  obs, info = again, {}
  for gold in _gold(env):
    assert obs.valid_actions and list(obs.valid_actions) == sorted(set(obs.valid_actions))
    match = scienceworld_candidates.match_gold(gold, env.candidates, env.referents())
    assert match is not None, f"no candidate for gold action {gold!r}"
    assert match.text in obs.valid_actions
    obs, _, done, info = env.step(match.text)
    if done:
      break
  assert info["success"] and info["score"] == 100


def test_splits_pick_disjoint_variations(living):
  splits = {name: set(living.variations(name)) for name in scienceworld.SPLITS}
  assert all(splits.values())
  assert not (splits["train"] & splits["dev"] or splits["train"] & splits["test"]
              or splits["dev"] & splits["test"])
  train = living.variations()
  for k in (0, 1, len(train) + 1):
    assert living.reset(seed=k).extra["variation"] == train[k % len(train)]


def test_worker_recovers_from_a_killed_jvm(living, caplog):
  test_variations = living.variations("test")
  make = functools.partial(envs.make, "scienceworld/find-living-thing", split="test")
  with EnvWorker(make, timeout_s=60) as worker:
    assert worker.reset(seed=0).extra["variation"] == test_variations[0]
    assert worker.step("look around")[3]["truncated"] is False
    (java,) = descendant_pids(worker.pid, "java")
    os.kill(java, signal.SIGKILL)
    _, reward, done, info = worker.step("look around")
    assert done and info["truncated"] and info["worker_restarted"] and "JVM" in info["error"]
    assert reward == 0.0 and worker.restarts == 1
    assert any("restarting" in r.getMessage() for r in caplog.records)
    assert worker.reset(seed=1).extra["variation"] == test_variations[1]
    assert worker.step("look around")[2] is False
    pids = [worker.pid, *descendant_pids(worker.pid)]
  assert not set(pids) & set(descendant_pids(os.getpid()))
