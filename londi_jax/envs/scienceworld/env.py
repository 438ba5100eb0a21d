"""ScienceWorld (Wang et al. 2022) behind the project's `TextEnv` protocol.

    env = londi_jax.envs.make("scienceworld/boil")   # or "scienceworld/1-1"
    obs = env.reset(seed=0)          # train variation number 0 (fixed order)
    obs = env.reset(seed=episode_seed(0, 3, "test"))   # test variation number 3
    obs, reward, done, info = env.step("go to kitchen")
    env.close()

The reset seed picks the variation: by default its seed range (`londi_jax.envs.seeds.split_of`)
names the split and its index within the range the variation, so the `train`, `dev` and `test`
episodes of the loop and the evaluation play the simulator's train, dev and test variations;
`split=` fixes the split for every seed instead. A schedule that interleaves `L` levels gives
each level every `L`-th seed, so index `i mod n` repeats variations whenever `L` and the split's
count `n` share a factor (4 tasks, `lifespan-longest-lived`'s 32 test variations: 8 distinct in
25 episodes); `variation_stride=L` plays each level's variations in order.

The simulator runs in a JVM that is started on the first `reset` and ended by `close()`, by the
context manager's exit or at interpreter exit. Its heap is capped (`JVM_OPTIONS`): left to
itself a JVM grows to about 1.2 GB over a long run, so 18 of them (a paired training's rows and
branches) outgrow a 23 GB machine. `reward` is the change of the score (0-100; a
failed task, which the simulator scores -100, counts as 0), `info["score"]` the score (out of
`info["max_score"]`, 100), `info["success"]` whether the task was completed, `info["truncated"]`
whether the step limit ended the episode. `step` passes any text to the simulator, whose parser
accepts more than its lists (an unknown command answers `No known action matches that input.`);
an ambiguous command is resolved by choosing the simulator's first reading (`info["ambiguous"]`),
as the gold paths do. `obs.valid_actions` are the candidates of `candidates_lib.build_candidates`.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import os
import random
import subprocess
import weakref
from typing import Any, Callable, Sequence

from londi_jax.envs.scienceworld import candidates as candidates_lib
from londi_jax.envs.base import Observation
from londi_jax.envs.seeds import split_of
from londi_jax.envs.workers import EnvCrashed

_LOG = logging.getLogger(__name__)
_AMBIGUOUS = "Ambiguous request"
_JVM_EXIT_WAIT_S = 2.0
SPLITS = ("train", "dev", "test")
# A 384 MB heap and the serial collector: 0.48 GB resident after 565 steps of use-thermometer
# where the default reaches 0.80 GB (and ~1.2 GB in long runs), at the same steps per second.
JVM_OPTIONS = ("-Xmx384m", "-XX:+UseSerialGC")
MAX_SCORE = 100
# Each environment object holds a JVM of about half a gigabyte: episode runners keep one
# environment per slot (`londi_jax.envs.heavy`).
HEAVY = True
_LIVE: "weakref.WeakSet[ScienceWorld]" = weakref.WeakSet()


def _close_live() -> None:
  for env in list(_LIVE):
    env.close()


atexit.register(_close_live)


@functools.cache
def _tasks() -> dict[str, str]:
  """Task id (`1-1`) -> task name (`boil`), from the package's task table (no JVM needed)."""
  from scienceworld.constants import ID2TASK
  from scienceworld.utils import infer_task
  return {task_id: infer_task(name) for task_id, name in ID2TASK.items()}


def known_ids() -> tuple[str, ...]:
  """The task names, in the simulator's order (`boil`, `melt`, ...)."""
  return tuple(_tasks().values())


def accepts(name: str) -> bool:
  """Whether `name` is a task name or a task id (`1-1`)."""
  return name in _tasks() or name in known_ids()


def task_name(name: str) -> str:
  """The task name for a task name or id."""
  return _tasks().get(name, name)


def make(name: str, **kwargs: Any) -> "ScienceWorld":
  """Builds the ScienceWorld environment of task `name` (see `ScienceWorld` for the options)."""
  return ScienceWorld(name, **kwargs)


def sentences(text: str) -> tuple[str, ...]:
  """The observation text split into its lines, stripped, without empty ones."""
  return tuple(line.strip() for line in text.splitlines() if line.strip())


def _mission(task_description: str) -> str:
  return task_description.replace("Task Description:", "").strip()


@contextlib.contextmanager
def _java_tool_options(options: Sequence[str]):
  """`JAVA_TOOL_OPTIONS` with `options` first, for the JVMs started inside (py4j's
  `launch_gateway`, which `ScienceWorldEnv` calls, takes no options from it)."""
  key = "JAVA_TOOL_OPTIONS"
  before = os.environ.get(key)
  if options:
    os.environ[key] = " ".join((*options, before or "")).strip()
  try:
    yield
  finally:
    if before is None:
      os.environ.pop(key, None)
    else:
      os.environ[key] = before


class ScienceWorld:
  """One ScienceWorld task as a `TextEnv`.

  Attributes:
    task: the task name.
    step_limit: steps after which an episode ends truncated (the protocol's `step_limit`).
    variation: the variation of the current episode (None before the first reset).
    gold_actions: the gold path of the current episode (only with `gold_path=True`).
  """

  def __init__(self, task: str, *, split: str | None = None, variation: int | None = None,
               simplification: str = "easy", step_limit: int = 100,
               shuffle_seed: int | None = None, gold_path: bool = False,
               variation_stride: int = 1, jvm_options: Sequence[str] = JVM_OPTIONS):
    """Describes the environment; the JVM starts on the first `reset`.

    Args:
      task: a task name (`boil`) or id (`1-1`).
      split: whose variations `reset(seed=k)` takes: `train`, `dev` or `test` (the `k`-th,
        modulo their number); None takes the split whose seed range holds `k`
        (`envs.seeds.split_of(k) == (split, i)`: that split's `i`-th variation, modulo their
        number).
      variation: a fixed variation for every episode (overrides `split`).
      simplification: the simulator's simplification string (`easy`, as SwiftSage used, or a
        comma-separated list of `get_possible_simplifications()`; "" for none).
      step_limit: steps after which an episode ends as truncated.
      shuffle_seed: None takes each split's variations in increasing order; an int takes them
        in an order shuffled by this seed instead.
      gold_path: whether to have the simulator generate each episode's gold path.
      variation_stride: seed index `i` plays the split's variation number `(i // stride) mod n`
        (`n` its count): the number of levels a schedule interleaves, so each level's episodes
        play distinct variations; 1 (`i mod n`) is the mapping of runs made before it.
      jvm_options: options of the JVM (before any in the environment's `JAVA_TOOL_OPTIONS`,
        which win where they conflict); () for the JVM's defaults.
    """
    if not accepts(task):
      raise ValueError(f"unknown ScienceWorld task {task!r}; known: {', '.join(known_ids())}")
    if split is not None and split not in SPLITS:
      raise ValueError(f"unknown split {split!r}; splits are {SPLITS}")
    if int(variation_stride) < 1:
      raise ValueError(f"variation_stride must be at least 1, got {variation_stride}")
    self.task = task_name(task)
    self.split = split
    self.fixed_variation = variation
    self.simplification = simplification
    self.step_limit = step_limit
    self.shuffle_seed = shuffle_seed
    self.variation_stride = int(variation_stride)
    self.gold_path = gold_path
    self.jvm_options = tuple(jvm_options)
    self.variation: int | None = None
    self.gold_actions: tuple[str, ...] = ()
    self._sim = None
    self._classes: dict[int, str] = {}
    self._loaded: tuple[str, int, str] | None = None
    self._variations: dict[str, tuple[int, ...]] = {}
    self._next_seed = 0
    self._steps = 0
    self._score = 0
    self._candidates: tuple[candidates_lib.Candidate, ...] = ()
    _LIVE.add(self)

  # JVM life.

  @property
  def simulator(self):
    """The `scienceworld.ScienceWorldEnv` (its JVM is started on first use)."""
    if self._sim is None:
      from scienceworld import ScienceWorldEnv
      with _java_tool_options(self.jvm_options):
        self._sim = ScienceWorldEnv("", envStepLimit=10**9)  # The step limit is enforced here.
      self._classes = {int(v): k for k, v in self._sim.get_object_types().items()}
    return self._sim

  @property
  def java_pid(self) -> int | None:
    """The process id of this environment's JVM (None when none runs)."""
    return self._sim._gateway.java_process.pid if self._sim is not None else None

  def close(self) -> None:
    """Ends the JVM. Idempotent; the environment starts a new JVM if reset again."""
    sim, self._sim = self._sim, None
    self._loaded = None
    if sim is None:
      return
    process = sim._gateway.java_process
    try:
      sim.close()
    except Exception as e:  # pylint: disable=broad-except
      _LOG.warning("closing the ScienceWorld gateway failed: %s", e)
    sim.close = lambda: None  # Its __del__ would close it a second time.
    try:
      process.wait(timeout=10)
    except Exception:  # pylint: disable=broad-except
      process.kill()
      process.wait()

  def __enter__(self) -> "ScienceWorld":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def __del__(self):
    if hasattr(self, "_sim"):  # not when `__init__` refused its arguments
      self.close()

  # Variations.

  def variations(self, split: str | None = None) -> tuple[int, ...]:
    """A split's variations in the order of `reset`: by default this environment's fixed split,
    or `train` when the split follows the reset seed."""
    split = split or self.split or "train"
    if split not in self._variations:
      if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; splits are {SPLITS}")
      if self._loaded is None:
        self._load(0)
      sim = self.simulator
      listed = {"train": sim.get_variations_train, "dev": sim.get_variations_dev,
                "test": sim.get_variations_test}[split]()
      order = sorted(int(v) for v in listed)
      if self.shuffle_seed is not None:
        random.Random(self.shuffle_seed).shuffle(order)
      self._variations[split] = tuple(order)
    return self._variations[split]

  def _load(self, variation: int) -> None:
    """Loads a variation into the simulator unless it is loaded already."""
    key = (self.task, variation, self.simplification)
    if self._loaded != key:
      sim = self.simulator
      sim.load(self.task, variation, self.simplification, generateGoldPath=self.gold_path)
      self._loaded = key
      self.gold_actions = tuple(sim.get_gold_action_sequence()) if self.gold_path else ()

  def _variation_for(self, seed: int | None) -> int:
    if self.fixed_variation is not None:
      return self.fixed_variation
    if seed is None:
      seed = self._next_seed
    self._next_seed = seed + 1
    split, index = (self.split, seed) if self.split is not None else split_of(seed)
    order = self.variations(split)
    return order[(index // self.variation_stride) % len(order)]

  # The protocol.

  def reset(self, seed: int | None = None) -> Observation:
    """Starts an episode on the variation that `seed` picks (see `__init__`)."""
    with self._jvm_errors():
      return self._observation(self._start(seed))

  def step(self, action: str) -> tuple[Observation, float, bool, dict[str, Any]]:
    """Sends `action` to the simulator and returns `(obs, reward, done, info)`."""
    if self._loaded is None:
      raise RuntimeError("call reset() before step()")
    with self._jvm_errors():
      return self._advance(action, self._observation)

  def replay(self, seed: int | None, actions: Sequence[str]
             ) -> tuple[Observation, list[tuple[Observation, float, bool, dict[str, Any]]]]:
    """`reset(seed)` then `step` of each action, returning the first observation and every
    step's result, the way `envs.base.replay` does, but without the work that only the current
    state needs: every observation but the last has the simulator's answer (`extra`'s
    `observation`, `score`, `step`) and no candidates, look or inventory. Those are most of a
    step's cost, and a prompt history reads only the answers of earlier steps. Stops after a
    step that ends the episode.
    """
    with self._jvm_errors():
      text = self._start(seed)
      mission = _mission(self.simulator.taskdescription())
      last = len(actions)

      def light(answer: str) -> Observation:
        extra = {"observation": answer, "score": self._score, "step": self._steps,
                 "task": self.task, "variation": self.variation}
        return Observation(mission=mission, sentences=sentences(answer), valid_actions=(),
                           extra=extra)

      first = light(text) if last else self._observation(text)
      steps = []
      for k, action in enumerate(actions):
        steps.append(self._advance(action, self._observation if k + 1 == last else light))
        if steps[-1][2]:
          break
      return first, steps

  def _start(self, seed: int | None) -> str:
    """Loads and resets the variation that `seed` picks; returns the first answer."""
    variation = self._variation_for(seed)
    self._load(variation)
    self.variation = variation
    self.simulator.server.reset()
    self._steps, self._score = 0, 0
    text, _, _, _ = self._send("look around")
    return text

  def _advance(self, action: str, observe: Callable[[str], Observation]
               ) -> tuple[Observation, float, bool, dict[str, Any]]:
    """One step: `action` sent, the score and step count kept, the answer made an observation
    by `observe`."""
    text, raw_score, completed, ambiguous = self._send(action)
    self._steps += 1
    score = max(raw_score, 0)
    reward = float(score - self._score)
    self._score = score
    obs = observe(text)
    done = completed or raw_score < 0
    truncated = self._steps >= self.step_limit and not done
    info = {"score": score, "max_score": MAX_SCORE, "success": raw_score >= 100,
            "failed": raw_score < 0,
            "truncated": truncated, "ambiguous": ambiguous, "variation": self.variation}
    return obs, reward, done or truncated, info

  @contextlib.contextmanager
  def _jvm_errors(self):
    """Turns the gateway's errors into `EnvCrashed` when the JVM has exited."""
    from py4j.protocol import Py4JError
    try:
      yield
    except Py4JError as e:
      if self._sim is None:
        raise
      process = self._sim._gateway.java_process
      try:
        # A killed JVM drops its socket a moment before its exit can be collected.
        code = process.wait(timeout=_JVM_EXIT_WAIT_S)
      except subprocess.TimeoutExpired:
        raise e from None
      raise EnvCrashed(f"the ScienceWorld JVM exited with code {code}: {e}") from e

  def _send(self, action: str) -> tuple[str, int, bool, bool]:
    """Runs one command, answering an ambiguity prompt with its first reading.

    Returns:
      The simulator's answer, its raw score (-100 for a failed task), whether the task ended
      and whether the command was ambiguous.
    """
    server = self.simulator.server
    text = server.step(action)
    ambiguous = text.startswith(_AMBIGUOUS)
    if ambiguous:
      text = server.step("0")
    return text, int(round(100 * server.getScore())), bool(server.getCompleted()), ambiguous

  def _observation(self, text: str) -> Observation:
    sim = self.simulator
    self._candidates = candidates_lib.build_candidates(
        sim.get_valid_action_object_combinations_with_templates(), self._classes)
    extra = {"observation": text, "look": sim.look(), "inventory": sim.inventory(),
             "score": self._score, "step": self._steps, "task": self.task,
             "variation": self.variation}
    return Observation(mission=_mission(sim.taskdescription()), sentences=sentences(text),
                       valid_actions=tuple(c.text for c in self._candidates), extra=extra)

  @property
  def candidates(self) -> tuple[candidates_lib.Candidate, ...]:
    """The current candidates with their templates and object ids."""
    return self._candidates

  def parents(self) -> dict[int, int]:
    """Object id -> the id of what holds it, in the current state (from the object tree)."""
    found: dict[int, int] = {}
    stack = [self.simulator.getObjectTree()]
    while stack:
      node = stack.pop()
      for child in (node.get("contents") or {}).values():
        found[int(child["uuid"])] = int(node["uuid"])
        stack.append(child)
    return found

  def referents(self) -> dict[int, list[str]]:
    """Object id -> every referent the simulator accepts for it, in the current state."""
    table = self.simulator.get_all_object_ids_types_referents_LUTJSON()
    return {int(k): list(v.get("referents", ())) for k, v in table.items()}
