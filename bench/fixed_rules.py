"""Fixed switching rules on the evaluation episodes of `launch.evaluate`: what a rule that needs no
learning reaches, as a yardstick for the learned switcher (same episodes, same common random
numbers, same compute accounting).

    python bench/fixed_rules.py [--config configs/babyai_text.py] [--episodes 200] \
        [--rules small,large,after:16,after:24,after:32,first:16]

Rules: `small` and `large` (one policy throughout), `after:k` (the large LM from step `k` of each
episode on), `first:k` (the large LM for the first `k` steps only).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from londi_jax.training import evaluation as ev  # noqa: E402
from londi_jax.training.lm import load_runners  # noqa: E402


def make_rule(spec: str) -> ev.Method:
  """The `Method` of one rule spec (see the module docstring)."""
  if spec == "small":
    return ev.small_only()
  if spec == "large":
    return ev.large_only()
  kind, _, k = spec.partition(":")
  if kind not in ("after", "first") or not k.isdigit():
    raise ValueError(f"unknown rule {spec!r}; known: small, large, after:K, first:K")
  k = int(k)
  if kind == "after":
    return ev.Method(spec, lambda v: (v.t >= k).astype(np.int64), small_everywhere=False)
  return ev.Method(spec, lambda v: (v.t < k).astype(np.int64), small_everywhere=False)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", default="configs/babyai_text.py")
  parser.add_argument("--episodes", type=int, default=200)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--rules", default="small,large,after:16,after:24,after:32,first:16")
  args = parser.parse_args()
  config_flags.DEFINE_config_file("config", args.config)
  flags.FLAGS([sys.argv[0]])
  config = flags.FLAGS.config
  methods = [make_rule(spec) for spec in args.rules.split(",")]
  small, large = load_runners(config)
  results = {}
  for method in methods:
    r = ev.run_method(method, small, large, config, episodes=args.episodes, seed=args.seed,
                      num_envs=min(int(config.eval.num_envs), args.episodes), split="test")
    results[method.name] = r
    levels = {}
    for e in r["episodes"]:
      levels.setdefault(e["level"].split("/")[-1], []).append(e["success"])
    per_level = "  ".join(f"{lv} {np.mean(s):.3f}" for lv, s in sorted(levels.items()))
    print(f"{method.name:<10s} success {r['success_rate']:.3f}  return {r['mean_return']:.3f}  "
          f"large calls {r['large_call_fraction']:.3f}  length {r['mean_length']:.1f}  "
          f"| {per_level}", flush=True)
  if "large_only" in results:
    large_flops = results["large_only"]["flops"]
    print("compute / large-only: " + ", ".join(
        f"{name} {r['flops'] / large_flops:.3f}" for name, r in results.items()))


if __name__ == "__main__":
  main()
