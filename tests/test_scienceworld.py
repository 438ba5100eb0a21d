"""ScienceWorld with the real JVM: gold paths, candidates, splits, a killed JVM, no leftover JVM.

Few JVMs and short gold paths: `find-living-thing` (10 gold actions) and `boil` (39), whose gold
path the simulator's own action lists miss half of.
"""

import functools
import os
import signal

import pytest

from londi_jax import envs
from londi_jax.envs.demo_files import DemoWriter, read_demos
from londi_jax.envs.scienceworld import candidates as scienceworld_candidates
from londi_jax.envs.scienceworld import env as scienceworld
from londi_jax.envs.scienceworld import gold as scienceworld_gold
from londi_jax.envs.base import UnknownEnvironmentError
from londi_jax.envs.scienceworld.prompts import PromptConfig, Turn, build_prompt
from londi_jax.envs.workers import EnvWorker, descendant_pids
from londi_jax.training.rows import Row

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


def test_the_jvm_heap_is_capped_by_its_options_and_the_environment_is_left_as_it_was(living):
  living.reset(seed=0)
  runtime = living.simulator._gateway.jvm.java.lang.Runtime.getRuntime()
  assert 300 * 2**20 < runtime.maxMemory() <= 384 * 2**20  # JVM_OPTIONS: -Xmx384m
  assert "JAVA_TOOL_OPTIONS" not in os.environ or "-Xmx384m" not in os.environ["JAVA_TOOL_OPTIONS"]


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
    match = scienceworld_candidates.match_gold(gold, env.candidates, env.referents(),
                                               env.parents())
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


def test_replay_restores_the_stepped_state_with_candidates_only_at_its_end(living):
  """`ScienceWorld.replay` (what `Row.replay` calls, here and in a worker) gives the state that
  stepping gives: the same last observation, rewards, score and both prompts."""
  living.reset(seed=3)
  actions = _gold(living)[:-1]  # the gold path less its last step: the episode is still on
  prompts = {"small": PromptConfig(num_actions=1), "large": PromptConfig(num_actions=8)}
  played = Row(prompts, make_env=lambda _: living)
  played.start("scienceworld/find-living-thing", 3)
  for k, action in enumerate(actions):
    played.step(action, k % 2)
  expected = (played.obs, played.rewards, played.score, played.switches,
              [played.prompt(name) for name in prompts])
  first, steps = living.replay(3, actions)
  assert first.valid_actions == () and all(s[0].valid_actions == () for s in steps[:-1])
  assert steps[-1][0] == played.obs and [s[1] for s in steps] == played.rewards
  again = Row(prompts, make_env=lambda _: living)
  again.replay(played.snapshot())
  assert (again.obs, again.rewards, again.score, again.switches,
          [again.prompt(name) for name in prompts]) == expected
  make = functools.partial(envs.make, "scienceworld/find-living-thing")
  with EnvWorker(make, timeout_s=60) as worker:
    remote = Row(prompts, make_env=lambda _: worker)
    remote.replay(played.snapshot())
    assert (remote.obs, remote.prompt("large")) == (expected[0], expected[4][1])


def test_collect_writes_gold_demonstrations(tmp_path):
  with DemoWriter(tmp_path) as writer:
    summary = scienceworld_gold.collect("scienceworld/find-non-living-thing", writer,
                                         episodes=2, seed=0)
  records = list(read_demos(tmp_path))
  assert summary["episodes"] == 2 and summary["records"] == len(records) > 0
  assert summary["mean_final_score"] == 100 and summary["gold_coverage"] == 1.0
  assert [r["episode"] for r in records] == sorted(r["episode"] for r in records)
  for record in records:
    assert record["action"] in record["valid_actions"] and record["covered"]
    assert record["prompt"].startswith("Task: ") and record["prompt"].endswith("Next action:")
  assert {r["variation"] for r in records} == set(summary["variations"])


def test_candidates_keep_useful_actions_and_add_twins():
  """A kitchen's listing, entry by entry: what `build_candidates` keeps, adds and how it sorts.

  The simulator fills each action template (`move OBJ to OBJ`) with the objects in view and names
  each object by a referent unique in view: the water in the pot is `substance in metal pot` (a
  liquid goes by what holds it) and the two oranges, one class and type id, are `orange in bowl`
  and `orange in inventory` (the bare name would be ambiguous). `build_candidates` never reads
  these names: it decides by template id and by the Java class of each object's type, so a name
  that mentions a metal pot does not make the water a vessel. (Names, type ids and classes as the
  simulator lists them in `boil`'s kitchen; object ids shortened.)
  """
  # Template ids as the simulator numbers them.
  open_, close, go, look_at, look_in, activate, deactivate = 0, 1, 2, 4, 5, 6, 7
  move, pour, focus, reset, pick_up, put_down, mix, dunk = 9, 10, 11, 12, 21, 22, 23, 26
  objects = {  # name -> (object id, type id, Java class)
      "kitchen": (205, 132, "scienceworld.objects.location.Room"),
      "door to kitchen": (562, 140, "scienceworld.objects.portal.Door"),
      "inventory": (595, 1, "scienceworld.objects.agent.InventoryContainer"),
      "metal pot": (235, 10, "scienceworld.objects.containers.MetalPot"),
      "substance in metal pot": (604, 167, "scienceworld.objects.substance.Water"),
      "counter": (244, 23, "scienceworld.objects.containers.furniture.Counter"),
      "sink": (211, 44, "scienceworld.objects.devices.Sink"),
      "bowl": (250, 16, "scienceworld.objects.containers.WoodBowl"),
      "orange in bowl": (259, 193, "scienceworld.objects.substance.food.Orange"),
      "orange in inventory": (598, 193, "scienceworld.objects.substance.food.Orange"),
  }
  classes = {type_id: cls for _, type_id, cls in objects.values()}

  def listed(template, template_id, *names):
    """The simulator's entry for `template` with its `OBJ` slots filled by the named objects."""
    text = template
    for name in names:
      text = text.replace("OBJ", name, 1)
    return {"action": text, "template_id": template_id,
            "obj_ids": [objects[n][0] for n in names], "type_ids": [objects[n][1] for n in names]}

  valid = [
      listed("reset task", reset),  # dropped: never offered
      listed("go to OBJ", go, "kitchen"),  # kept: a room is walked to
      listed("look at OBJ", look_at, "kitchen"),  # kept: ... or looked at
      listed("focus on OBJ", focus, "kitchen"),  # dropped: nothing else is done to a room
      listed("close OBJ", close, "door to kitchen"),  # kept, with its twin `open` added
      listed("focus on OBJ", focus, "door to kitchen"),  # dropped: a door is a place too
      listed("move OBJ to OBJ", move, "kitchen", "counter"),  # dropped: a room is not carried
      listed("move OBJ to OBJ", move, "metal pot", "kitchen"),  # dropped: nor carried into
      # dropped: the inventory's class is the agent's (`objects.agent.`), a place
      listed("move OBJ to OBJ", move, "metal pot", "inventory"),
      listed("move OBJ to OBJ", move, "metal pot", "counter"),  # kept
      listed("move OBJ to OBJ", move, "counter", "metal pot"),  # kept: furniture may be carried
      listed("move OBJ to OBJ", move, "orange in bowl", "metal pot"),  # kept
      listed("pour OBJ into OBJ", pour, "metal pot", "sink"),  # kept: a vessel is poured
      listed("pour OBJ into OBJ", pour, "counter", "metal pot"),  # dropped: furniture is no vessel
      # dropped: water is a substance, not a vessel, whatever its name says
      listed("pour OBJ into OBJ", pour, "substance in metal pot", "sink"),
      listed("dunk OBJ into OBJ", dunk, "metal pot", "bowl"),  # kept: a vessel into a vessel
      listed("look at OBJ", look_at, "substance in metal pot"),  # kept
      listed("look in OBJ", look_in, "metal pot"),  # kept
      listed("mix OBJ", mix, "substance in metal pot"),  # kept: one object, not a place
      listed("put down OBJ", put_down, "orange in inventory"),  # kept, with its twin `pick up`
      listed("pick up OBJ", pick_up, "orange in bowl"),  # kept; `pick up` implies no twin
      listed("deactivate OBJ", deactivate, "sink"),  # kept; its twin is listed next
      listed("activate OBJ", activate, "sink"),  # kept (once, though also deactivate's twin)
  ]
  # (text, template id, object ids), sorted by text; a twin has its own template id and the
  # objects of the action it twins.
  expected = [
      ("activate sink", activate, (211,)),
      ("close door to kitchen", close, (562,)),
      ("deactivate sink", deactivate, (211,)),
      ("dunk metal pot into bowl", dunk, (235, 250)),
      ("go to kitchen", go, (205,)),
      ("look at kitchen", look_at, (205,)),
      ("look at substance in metal pot", look_at, (604,)),
      ("look in metal pot", look_in, (235,)),
      ("mix substance in metal pot", mix, (604,)),
      ("move counter to metal pot", move, (244, 235)),
      ("move metal pot to counter", move, (235, 244)),
      ("move orange in bowl to metal pot", move, (259, 235)),
      ("open door to kitchen", open_, (562,)),  # twin of `close door to kitchen`
      ("pick up orange in bowl", pick_up, (259,)),
      ("pick up orange in inventory", pick_up, (598,)),  # twin of `put down orange in inventory`
      ("pour metal pot into sink", pour, (235, 211)),
      ("put down orange in inventory", put_down, (598,)),
  ]
  got = scienceworld_candidates.build_candidates(valid, classes)
  assert [(c.text, c.template_id, c.obj_ids) for c in got] == expected


def test_gold_phrases_match_the_listed_names():
  cands = [scienceworld_candidates.Candidate(text, template, objs) for text, template, objs in [
      ("look at thermometer", 4, (1,)), ("look at substance in metal pot", 4, (2,)),
      ("look at metal pot", 4, (3,)), ("use thermometer on substance in metal pot", 13, (1, 2)),
      ("use thermometer on metal pot", 13, (1, 3)), ("look at kitchen door", 4, (4,)),
      ("open kitchen door", 0, (4,)), ("pour metal pot into metal pot", 10, (3, 3))]]
  referents = {1: ["thermometer"], 2: ["substance", "water"], 3: ["metal pot", "pot"], 4: []}
  expected = {
      "use thermometer in inventory on substance in metal pot":
          "use thermometer on substance in metal pot",
      "examine substance in metal pot": "look at substance in metal pot",
      "examine water": "look at substance in metal pot",
      "open door to kitchen": "open kitchen door",
      "pour pot in metal pot": "pour metal pot into metal pot",
  }
  for gold, listed in expected.items():
    assert scienceworld_candidates.match_gold(gold, cands, referents).text == listed
  assert scienceworld_candidates.match_gold("eat thermometer", cands, referents) is None


def test_prompt_shows_the_latest_actions_and_the_current_state():
  turns = [Turn(f"a{i}", float(i), f"o{i}\n\tmore") for i in range(7)]
  prompt = build_prompt("Boil water.", 7, 42, turns, "You see:\n\ta pot",
                        "This room is called the kitchen. In it...",
                        "In your inventory, you see:\n\tan orange\n",
                        PromptConfig(num_actions=2, history_chars=6))
  assert prompt.split("\n") == [
      "Task: Boil water.", "Time: 7; Score: 42",
      "Recent: a5 (+5) -> o5;... | a6 (+6) -> o6;...", "Room: kitchen",
      "Observation: You see: a pot", "Inventory: an orange", "Next action:"]
