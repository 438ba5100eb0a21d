"""Steps per second of ScienceWorld: one environment, and batches in worker processes.

    python -m bench.scienceworld [--task boil] [--steps 150] [--batch 1,2,4]

Figures: one environment in this process, then `EnvWorker` batches of each `--batch` size whose
rows are stepped together (every `step_async` issued, then every `wait`), after `--warmup`
untimed batch steps (the JVMs compile their hot code first). Each row plays random
candidate actions (`focus on` left out, since a wrong focus ends the task) from a seeded
generator; a finished episode is reset outside the timed calls, so a figure counts environment
steps per second of stepping alone, candidate lists included. The ratios divide each batch's rate
by the in-process one. Each JVM's resident memory (`VmRSS`, and its peak `VmHWM`, from
/proc/<pid>/status) is read at the end of its run. Prints a table, then one JSON line.
"""

from __future__ import annotations

import functools
import json
import random
import time

from absl import app, flags

from londi_jax import envs
from londi_jax.envs.workers import EnvWorker, descendant_pids

_TASK = flags.DEFINE_string("task", "boil", "ScienceWorld task name or id.")
_STEPS = flags.DEFINE_integer("steps", 150, "Environment steps per figure (all rows together).")
_BATCH = flags.DEFINE_list("batch", ["1", "2", "4"], "Worker batch sizes.")
_WARMUP = flags.DEFINE_integer("warmup", 20, "Untimed batch steps first (the JVMs' JIT warm-up).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the actions and of the first episode.")


def memory_kb(pid: int) -> dict[str, int]:
  """`VmRSS` and `VmHWM` of a process, in kB (empty if it is gone)."""
  found = {}
  try:
    with open(f"/proc/{pid}/status") as f:
      for line in f:
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
          found[key] = int(value.split()[0])
  except OSError:
    pass
  return found


def _choose(rng: random.Random, valid_actions) -> str:
  actions = [a for a in valid_actions if not a.startswith("focus on")]
  return rng.choice(actions or ["look around"])


def run_batch(rows: list, steps: int, seed: int, warmup: int = 0) -> float:
  """Steps `rows` (synchronous or `EnvWorker`s) together; returns steps per second.

  The first `warmup` batch steps and the resets (at the start and after each finished episode)
  are not timed.
  """
  rng = random.Random(seed)
  asynchronous = all(hasattr(row, "step_async") for row in rows)
  episodes = [seed + i for i in range(len(rows))]
  obs = [row.reset(seed=s) for row, s in zip(rows, episodes)]
  seconds, taken = 0.0, -warmup * len(rows)
  while taken < steps:
    actions = [_choose(rng, o.valid_actions) for o in obs]
    start = time.perf_counter()
    if asynchronous:
      for row, action in zip(rows, actions):
        row.step_async(action)
      results = [row.wait() for row in rows]
    else:
      results = [row.step(action) for row, action in zip(rows, actions)]
    if taken >= 0:
      seconds += time.perf_counter() - start
    taken += len(rows)
    for i, (o, _, done, _) in enumerate(results):
      obs[i] = o
      if done:
        episodes[i] += len(rows)
        obs[i] = rows[i].reset(seed=episodes[i])
  return taken / seconds


def main(argv):
  del argv
  task, steps, seed = _TASK.value, _STEPS.value, _SEED.value
  results = {"task": task, "steps": steps, "rates": {}, "jvm_kb": {}}
  env = envs.make(f"scienceworld/{task}")
  try:
    results["rates"]["in_process"] = run_batch([env], steps, seed, _WARMUP.value)
    results["jvm_kb"]["in_process"] = [memory_kb(env.java_pid)]
  finally:
    env.close()
  make = functools.partial(envs.make, f"scienceworld/{task}")
  for size in map(int, _BATCH.value):
    workers = [EnvWorker(make, timeout_s=120) for _ in range(size)]
    try:
      results["rates"][f"workers_{size}"] = run_batch(workers, steps, seed, _WARMUP.value)
      results["jvm_kb"][f"workers_{size}"] = [
          memory_kb(pid) for w in workers for pid in descendant_pids(w.pid, "java")]
    finally:
      for w in workers:
        w.close()
  base = results["rates"]["in_process"]
  results["ratios"] = {name: rate / base for name, rate in results["rates"].items()}
  print(f"{'run':12s} {'steps/s':>8s} {'ratio':>6s}  JVM RSS MB (peak)")
  for name, rate in results["rates"].items():
    mem = ", ".join(f"{m.get('VmRSS', 0) / 1024:.0f} ({m.get('VmHWM', 0) / 1024:.0f})"
                    for m in results["jvm_kb"][name])
    print(f"{name:12s} {rate:8.2f} {results['ratios'][name]:6.2f}  {mem}")
  print(json.dumps(results, sort_keys=True))


if __name__ == "__main__":
  app.run(main)
