"""ScienceWorld figures: environment steps per second, and candidate scoring at its list sizes.

    python -m bench.scienceworld [--parts steps,scoring,loop,replay] [--task boil] \
        [--steps 150] [--batch 1,2,4] [--policies artifacts/scienceworld]

`scoring`: a policy of the large ScienceWorld shape (`configs/pretrain.py:scienceworld`, random
weights, a 2,048-word vocabulary) scores a batch of 8 states with 100, 1,000 and 3,000
candidates of 6 tokens, chunked (`--chunk` candidates a pass, the policies' default) and whole
(one pass over every candidate): candidates per second, and the compiled step's temporary
memory (XLA's `memory_analysis`), side by side in one run.

`loop`: a LONDI training step on `configs/londi.py:scienceworld` over the `--policies` (one
member, `--loop_rows` worker rows, a JVM each): where its wall time goes (the JVMs, the small LM,
the large LM, the member step, and everything else; `bench/loop.py`'s shares), over
`--loop_steps` steps after `--loop_warmup`. `--loop_target paired` measures the paired targets'
cost here: their branch environment steps per second and their share of the training time
(`--loop_pairs` pairs per acting step, played together in two JVMs each), once per horizon of
`--loop_horizons` (`switcher.paired.horizon`, 0: to the episode's end), side by side in one run,
with each horizon's branch time over the first one's.

`replay`: bringing an `EnvWorker`'s environment to the state after `--replay_lengths` steps of
a recorded random episode (actions chosen as in `steps`), by stepping (a reset, then one call per
step, each returning the full observation with its candidate list) and by one `replay` call
(`envs.base.replay`: light observations until the last step): seconds of each, the median of
`--repeats` after an untimed round, and stepping over replay. This is what a paired target's
branch pays to restore a state. `same` says whether both ended in the same observation: not
always, since ScienceWorld's animals move at random (bees in the greenhouse, say), whichever way
the actions are played.

`steps`:
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
import os
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
_PARTS = flags.DEFINE_list("parts", ["steps", "scoring"],
                           "Which figures: steps, scoring, loop, replay.")
_REPLAY_LENGTHS = flags.DEFINE_list("replay_lengths", ["5", "10", "20"],
                                    "Episode prefixes (steps) of the replay figures.")
_CHUNK = flags.DEFINE_integer("chunk", 256, "Candidates per pass of the chunked scoring.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed calls per scoring figure.")
_POLICIES = flags.DEFINE_string("policies", "artifacts/scienceworld", "Policies of the loop.")
_LOOP_ROWS = flags.DEFINE_integer("loop_rows", 4, "Rows of the loop figure.")
_LOOP_WARMUP = flags.DEFINE_integer("loop_warmup", 20, "Untimed loop steps first.")
_LOOP_STEPS = flags.DEFINE_integer("loop_steps", 40, "Timed loop steps.")
_LOOP_TARGET = flags.DEFINE_enum("loop_target", "td", ["td", "paired"],
                                 "The loop's switcher.target; paired adds the branch figures.")
_LOOP_PAIRS = flags.DEFINE_integer("loop_pairs", 2, "With paired: pairs per acting step, and "
                                   "pairs played together (2 JVMs each).")
_LOOP_HORIZONS = flags.DEFINE_list("loop_horizons", ["0"], "With paired: the branch horizons "
                                   "measured, one loop figure each (0: to the episode's end).")


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


def scoring_figures(sizes=(100, 1000, 3000), chunk: int = 256, repeats: int = 3,
                    batch: int = 8, cand_tokens: int = 6) -> dict:
  """Candidates per second and temporary bytes of chunked and whole scoring at each size."""
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  from configs.pretrain import get_config  # pylint: disable=import-outside-toplevel
  from londi_jax.policies import bc  # pylint: disable=import-outside-toplevel
  from londi_jax.policies.checkpoint import model_for, random_params  # pylint: disable=import-outside-toplevel
  from londi_jax.policies.scoring import make_act_fn, pack  # pylint: disable=import-outside-toplevel
  from londi_jax.policies.tokenizer import build_word_tokenizer  # pylint: disable=import-outside-toplevel

  spec = get_config("scienceworld").policies.large.model.to_dict()
  tokenizer = build_word_tokenizer([" ".join(f"w{i}" for i in range(2045))])
  config = bc.model_config(spec, tokenizer)
  model, params = model_for(config), random_params(config, jax.random.key(0))
  rng = np.random.default_rng(0)
  figures = {}
  for k in sizes:
    prompts = [list(rng.integers(3, 2048, 300)) for _ in range(batch)]
    cands = [[list(rng.integers(3, 2048, cand_tokens)) for _ in range(k)] for _ in range(batch)]
    tokens = pack(prompts, cands, pad_id=0, batch_size=batch, prompt_len=384, num_candidates=k,
                  cand_len=8)
    row = {}
    for name, c in (("chunked", chunk), ("whole", None)):
      act = jax.jit(make_act_fn(model, c))
      args = (params, tokens, np.float32(1.0), jax.random.key(0))
      memory = act.lower(*args).compile().memory_analysis()
      jax.block_until_ready(act(*args))
      start = time.perf_counter()
      for _ in range(repeats):
        jax.block_until_ready(act(*args))
      seconds = (time.perf_counter() - start) / repeats
      row[name] = {"candidates_per_s": batch * k / seconds,
                   "temp_mb": getattr(memory, "temp_size_in_bytes", 0) / 2 ** 20}
    row["speed_chunked_over_whole"] = (row["chunked"]["candidates_per_s"]
                                       / row["whole"]["candidates_per_s"])
    row["memory_chunked_over_whole"] = row["chunked"]["temp_mb"] / max(row["whole"]["temp_mb"],
                                                                       1e-9)
    figures[k] = row
  return figures


def main(argv):
  del argv
  results = {}
  if "scoring" in _PARTS.value:
    figures = scoring_figures(chunk=_CHUNK.value, repeats=_REPEATS.value)
    results["scoring"] = figures
    print(f"{'candidates':>10s} {'chunked c/s':>12s} {'whole c/s':>10s} {'speed':>6s} "
          f"{'chunked MB':>11s} {'whole MB':>9s} {'memory':>7s}")
    for k, row in figures.items():
      print(f"{k:10d} {row['chunked']['candidates_per_s']:12.0f} "
            f"{row['whole']['candidates_per_s']:10.0f} {row['speed_chunked_over_whole']:6.2f} "
            f"{row['chunked']['temp_mb']:11.0f} {row['whole']['temp_mb']:9.0f} "
            f"{row['memory_chunked_over_whole']:7.3f}")
  if "loop" in _PARTS.value:
    horizons = [int(h) for h in _LOOP_HORIZONS.value] if _LOOP_TARGET.value == "paired" else [0]
    results["loop"] = {}
    for h in horizons:
      fig = results["loop"][h] = loop_figures(_POLICIES.value, _LOOP_ROWS.value,
                                              _LOOP_WARMUP.value, _LOOP_STEPS.value,
                                              _LOOP_TARGET.value, _LOOP_PAIRS.value, h)
      print(f"loop (horizon {h}): {fig['steps_per_s']:.2f} steps/s of {_LOOP_ROWS.value} rows; "
            "shares of a step: " + ", ".join(f"{k} {v:.1%}" for k, v in fig["shares"].items()))
      if "branches" in fig:
        from bench.loop import branch_line  # pylint: disable=import-outside-toplevel
        first = results["loop"][horizons[0]]["branches"]["branch_s"]
        ratio = fig["branches"]["branch_s"] / first
        print(branch_line(fig["branches"]) + f"; branch time {ratio:.2f}x horizon "
              f"{horizons[0]}'s")
  if "replay" in _PARTS.value:
    results["replay"] = replay_figures(_TASK.value, [int(n) for n in _REPLAY_LENGTHS.value],
                                       _REPEATS.value, _SEED.value)
    print(f"{'prefix':>6s} {'stepping s':>11s} {'replay s':>9s} {'ratio':>6s} same")
    for n, row in results["replay"].items():
      print(f"{n:6d} {row['stepping_s']:11.3f} {row['replay_s']:9.3f} "
            f"{row['stepping_over_replay']:6.2f} {row['same_observation']}")
  if "steps" in _PARTS.value:
    results["steps"] = step_figures()
  print(json.dumps(results, sort_keys=True))


def loop_figures(policies: str, rows: int, warmup: int, steps: int, target: str = "td",
                 pairs: int = 2, horizon: int = 0) -> dict:
  """Steps per second of the training loop and the shares of its parts (`bench.loop.shares`);
  with `target="paired"` (`pairs` per acting step, played together, each branch at most
  `horizon` steps) also its branch pairs (`bench.loop.branch_figures`)."""
  import tempfile  # pylint: disable=import-outside-toplevel
  from bench.loop import shares, timed_steps  # pylint: disable=import-outside-toplevel
  from configs import londi  # pylint: disable=import-outside-toplevel
  from londi_jax.training.loop import Trainer  # pylint: disable=import-outside-toplevel

  config = londi.get_config("scienceworld")
  config.policies.dir = policies
  config.num_envs = rows
  config.train_steps = warmup + steps
  config.switcher.min_replay = min(config.switcher.min_replay, rows * warmup // 8)
  config.switcher.target = target
  config.switcher.paired.pairs_per_step = config.switcher.paired.batch = pairs
  config.switcher.paired.horizon = horizon
  with tempfile.TemporaryDirectory() as tmp:
    trainer = Trainer(config, os.path.join(tmp, "run"), log=None)
    try:
      wall, branches = timed_steps(trainer, warmup, steps, rows)
    finally:
      trainer.close()
  out = {"branches": branches} if branches else {}
  return {"rows": rows, "steps": steps, "steps_per_s": steps / wall,
          "env_steps_per_s": steps * rows / wall, "shares": shares(trainer.timings), **out}


def replay_figures(task: str, lengths, repeats: int = 3, seed: int = 0) -> dict:
  """Seconds to restore the state after each of `lengths` steps in one `EnvWorker`, by stepping
  and by `replay`, and their ratio."""
  import statistics  # pylint: disable=import-outside-toplevel

  with EnvWorker(functools.partial(envs.make, f"scienceworld/{task}"), timeout_s=120) as worker:
    rng, actions = random.Random(seed), []
    obs, done = worker.reset(seed=seed), False
    while len(actions) < max(lengths) and not done:
      actions.append(_choose(rng, obs.valid_actions))
      obs, _, done, _ = worker.step(actions[-1])

    def stepping(prefix):
      last = worker.reset(seed=seed)
      for action in prefix:
        last = worker.step(action)[0]
      return last

    def replaying(prefix):
      first, steps = worker.replay(seed, prefix)
      return steps[-1][0] if steps else first

    figures = {}
    for n in lengths:
      prefix = actions[:n]
      same = stepping(prefix) == replaying(prefix)  # also the untimed round
      seconds = {}
      for name, restore in (("stepping", stepping), ("replay", replaying)):
        times = []
        for _ in range(repeats):
          start = time.perf_counter()
          restore(prefix)
          times.append(time.perf_counter() - start)
        seconds[name] = statistics.median(times)
      figures[len(prefix)] = {"stepping_s": seconds["stepping"], "replay_s": seconds["replay"],
                              "stepping_over_replay": seconds["stepping"] / seconds["replay"],
                              "same_observation": same}
  return figures


def step_figures() -> dict:
  """Steps per second of one environment in this process and of worker batches."""
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
  return results


if __name__ == "__main__":
  app.run(main)
