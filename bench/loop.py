"""Where a LONDI training step's wall time goes: environments, small LM, large LM, the member
step (switcher, replay write, updates), and everything else (prompts, tokenising, padding,
bookkeeping). Goal: "elsewhere" under 15%. With `--target paired` it also reports the branch
pairs: their environment steps per second and their share of the training time (acting plus
branches).

    python bench/loop.py [--policies DIR] [--sizes babyai_text] [--members 3] [--num_envs 16] \
        [--warmup 100] [--steps 200] [--target td|paired]

Without `--policies`, untrained policies of the `configs/pretrain.py` preset `--sizes` are written
to a temporary folder (the same FLOPs and prompt lengths as trained ones of that preset). The
LMs' shares are their device time (dispatch to `block_until_ready`); compilations are excluded.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import londi  # noqa: E402
from londi_jax.training.fakes import make_tiny_policies, pretrain_sizes  # noqa: E402
from londi_jax.training.loop import Trainer  # noqa: E402

PARTS = ("envs", "small_lm", "large_lm", "update")


def shares(timings) -> dict:
  """Fractions of the steady-state step time (compilations removed) by part, and `elsewhere`."""
  total = timings["total"] - timings["compile"]
  out = {p: timings[p] / total for p in PARTS}
  out["elsewhere"] = 1.0 - sum(out.values())
  return out


def branch_figures(trainer, branch_steps_before: int, acting_env_steps: int) -> dict:
  """A paired trainer's branch pairs over the timed steps (`timings` cleared at their start,
  `branch_steps_before` branch environment steps then): pairs played in all, branch environment
  steps and their rate, and the branches' share of the training time (acting plus branches)."""
  t = trainer.timings
  acting = t["total"] - t["compile"]
  steps = trainer.pairs.sim.env_steps - branch_steps_before
  return {"pairs": trainer.pairs.pairs_played, "branch_env_steps": steps, "branch_s": t["branches"],
          "branch_env_steps_per_s": steps / max(t["branches"], 1e-9),
          "branch_share": t["branches"] / (acting + t["branches"]),
          "acting_env_steps_per_s": acting_env_steps / acting}


def timed_steps(trainer, warmup: int, steps: int, rows: int) -> tuple[float, dict]:
  """Acts `warmup` untimed steps, clears the timings, then acts `steps` more; returns their wall
  time and, for a paired trainer, `branch_figures` (`{}` otherwise)."""
  for _ in range(warmup):
    trainer.act()
  trainer.timings.clear()
  branch_steps = trainer.pairs.sim.env_steps if trainer.pairs else 0
  start = time.perf_counter()
  for _ in range(steps):
    trainer.act()
  wall = time.perf_counter() - start
  return wall, branch_figures(trainer, branch_steps, steps * rows) if trainer.pairs else {}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--policies", default="", help="folder with small/ and large/")
  parser.add_argument("--sizes", default="babyai_text", help="configs/pretrain.py preset")
  parser.add_argument("--members", type=int, default=3)
  parser.add_argument("--num_envs", type=int, default=16)
  parser.add_argument("--warmup", type=int, default=100)
  parser.add_argument("--steps", type=int, default=200)
  parser.add_argument("--target", default="td", choices=("td", "paired"))
  args = parser.parse_args()

  with tempfile.TemporaryDirectory() as tmp:
    policies = args.policies
    if not policies:
      policies = make_tiny_policies(os.path.join(tmp, "policies"), **pretrain_sizes(args.sizes))
    config = londi.get_config("babyai_text")
    config.policies.dir = policies
    config.member_costs = tuple(0.01 * (k + 1) for k in range(args.members))
    config.num_envs = args.num_envs
    config.train_steps = args.warmup + args.steps
    config.switcher.min_replay = min(config.switcher.min_replay, args.num_envs * args.warmup // 2)
    config.switcher.target = args.target
    trainer = Trainer(config, os.path.join(tmp, "run"), log=None)
    rows = args.members * args.num_envs
    wall, branches = timed_steps(trainer, args.warmup, args.steps, rows)
    trainer.close()
  t = trainer.timings
  source = f"from {args.policies}" if args.policies else f"{args.sizes} sizes (untrained)"
  print(f"{args.steps} steps of {args.members} members x {args.num_envs} rows ({rows} rows), "
        f"policies {source}")
  print(f"{args.steps / wall:.2f} steps/s, {args.steps * rows / wall:.0f} env steps/s, "
        f"{(t['total'] - t['compile']) / args.steps * 1e3:.1f} ms/step "
        f"(compilations during the timed steps: {t['compile']:.1f} s, excluded)")
  for part, share in shares(t).items():
    print(f"  {part:<10s} {share:6.1%}  (of acting)")
  if branches:
    print(branch_line(branches))


def branch_line(b: dict) -> str:
  """`branch_figures` in one line."""
  return (f"branch pairs: {b['pairs']} played in all, {b['branch_env_steps']} branch env steps "
          f"in the timed steps, {b['branch_env_steps_per_s']:.1f} branch env steps/s; branches "
          f"take {b['branch_share']:.1%} of the training time (acting "
          f"{b['acting_env_steps_per_s']:.1f} env steps/s)")


if __name__ == "__main__":
  main()
