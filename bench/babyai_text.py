"""Steps per second of a raw minigrid BabyAI level, its text environment, and VectorEnv.

    python -m bench.babyai_text [--level BabyAI-GoToLocal-v0] [--steps 20000] [--batch 16]

The raw level and the text environment play the same random action sequence from the same reset
seeds (an episode that ends is reset with the next seed); only the steps are timed, not the
resets, so their ratio is the cost of the text rendering and the protocol per step. The rendering alone (`describe` on the views the raw run saw) is timed
too. VectorEnv steps `--batch` text environments with random actions; its rate counts
environment steps, resets of finished rows included. Each figure is the best of `--repeats` runs. Prints a table, then one JSON line.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from typing import Callable

from absl import app, flags
import numpy as np

from londi_jax import envs
from londi_jax.envs.babyai.render import describe
from londi_jax.envs.babyai.env import ACTIONS
from londi_jax.envs.vector import make_vector

def _best_rates(runs: dict[str, tuple[Callable[[], float | None], int]], repeats: int
                ) -> dict[str, float]:
  """Steps per second of each run, the fastest of `repeats`; the runs take turns, so a busy
  machine slows them alike.

  Args:
    runs: name -> `(fn, steps)`: `fn()` takes `steps` steps and returns the seconds to count,
      or None to count its whole call.
    repeats: timed calls per run.
  """
  best = dict.fromkeys(runs, float("inf"))
  for _ in range(repeats):
    for name, (fn, _) in runs.items():
      start = time.perf_counter()
      seconds = fn()
      best[name] = min(best[name], time.perf_counter() - start if seconds is None else seconds)
  return {name: steps / best[name] for name, (_, steps) in runs.items()}


def _play(reset, step, actions, seed) -> float:
  """Plays `actions`, resetting with seeds `seed, seed + 1, ...` when an episode ends.

  Returns:
    The seconds spent in `step` (resets are not counted).
  """
  reset(seed)
  seconds = 0.0
  for action in actions:
    start = time.perf_counter()
    done = step(action)
    seconds += time.perf_counter() - start
    if done:
      seed += 1
      reset(seed)
  return seconds


def bench(level: str, steps: int, batch: int, repeats: int, seed: int) -> dict[str, float]:
  """Measures the four rates; returns them with the text/raw cost ratios."""
  text_env = envs.make(f"babyai_text/{level}")
  raw_env = text_env.unwrapped  # the same minigrid instance, driven directly
  indices = np.random.default_rng(seed).integers(len(ACTIONS), size=steps)  # [steps]
  names = [ACTIONS[i] for i in indices]
  views = []

  def raw_reset(s):
    with contextlib.redirect_stdout(io.StringIO()):  # as the text env does
      raw_env.reset(seed=s)

  def raw_step(index):
    _, _, terminated, truncated, _ = raw_env.step(index)
    return terminated or truncated

  def raw_step_keeping_views(index):
    obs, _, terminated, truncated, _ = raw_env.step(index)
    views.append((obs["image"], raw_env.carrying))
    return terminated or truncated

  _play(raw_reset, raw_step_keeping_views, indices.tolist(), seed)

  def render_all():
    for image, carrying in views:
      describe(image, carrying)

  vec = make_vector(f"babyai_text/{level}", num_envs=batch, seed=seed)
  vec.reset()
  batch_actions = [names[k * batch:(k + 1) * batch] for k in range(steps // batch)]

  def step_vector():
    for a in batch_actions:
      vec.step(a)

  rates = _best_rates({
      "raw": (lambda: _play(raw_reset, raw_step, indices.tolist(), seed), steps),
      "text": (lambda: _play(text_env.reset, lambda a: text_env.step(a)[2], names, seed), steps),
      "render": (render_all, len(views)),
      "vector": (step_vector, len(batch_actions) * batch),
  }, repeats)
  vec.close()
  text_env.close()
  return {"raw_steps_per_s": rates["raw"], "text_steps_per_s": rates["text"],
          "render_calls_per_s": rates["render"],
          f"vector_b{batch}_env_steps_per_s": rates["vector"],
          "text_over_raw_cost": rates["raw"] / rates["text"],
          "render_over_raw_step_cost": rates["raw"] / rates["render"]}


def define_flags() -> None:
  """Defines the command-line flags (only when run as a program, so importing stays inert)."""
  flags.DEFINE_string("level", "BabyAI-GoToLocal-v0", "BabyAI level (babyai_text name).")
  flags.DEFINE_integer("steps", 20_000, "Steps per timed run.", lower_bound=1)
  flags.DEFINE_integer("batch", 16, "VectorEnv batch size.", lower_bound=1)
  flags.DEFINE_integer("repeats", 3, "Timed runs per figure; the best is reported.", lower_bound=1)
  flags.DEFINE_integer("seed", 0, "Seed of the actions and of the first episode.")


def main(argv):
  del argv
  f = flags.FLAGS
  result = {"level": f.level, "steps": f.steps,
            **bench(f.level, f.steps, f.batch, f.repeats, f.seed)}
  width = max(map(len, result))
  for key, value in result.items():
    print(f"{key:<{width}}  {value:,.2f}" if isinstance(value, float) else
          f"{key:<{width}}  {value}")
  print(json.dumps(result))


if __name__ == "__main__":
  define_flags()
  app.run(main)
