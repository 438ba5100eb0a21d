"""How much of a call block's effect can a switcher predict from what it sees?

    python bench/call_effect.py [--config configs/londi.py:babyai_text] [--episodes 400] \
        [--config.switcher.hold=4]

Small-only dev episodes stop at every decision point (`t % switcher.hold == 0`); from each, a
paired branch (`training.branches.RowBranches`, small-LM continuation, common random numbers)
measures the effect of one call block: the call branch's success minus the keep branch's. Each
feature set then ranks the decision points by a ridge regression of that effect, scored by
5-fold cross-validation, and the script prints the mean effect of the top 25% and 40% against the
rest. A ranking that no feature improves on is the ceiling of a switcher that acts on one state at
a time. The feature sets are `phi` without and with the history view (`training.features`), and
two divergences of action distributions at the state (total variation, `TV`): the small LM on its
own prompt against the small LM on the large LM's prompt (`tv_history`, a small-LM pass), and
against the large LM itself (`tv_large`: what a switcher would pay a large pass to know). A last
set adds what a recurrent switcher over `phi` could remember (`features.memory`): the
episode's two previous decision points' `phi` (with the history view) and the mean over all its
earlier ones.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import types

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from londi_jax.envs.seeds import episode_seed  # noqa: E402
from londi_jax.training import features as features_lib  # noqa: E402
from londi_jax.training.branches import RowBranches  # noqa: E402
from londi_jax.training.lm import choose_actions, crn_uniform, load_runners  # noqa: E402
from londi_jax.training.loop import switcher_reward  # noqa: E402
from londi_jax.training.rows import Row, make_env_fn  # noqa: E402


def total_variation(p: np.ndarray, q: np.ndarray) -> np.ndarray:
  """`0.5 * sum_k |p_k - q_k|` per row of two `[R, K]` distributions over the same candidates."""
  k = max(p.shape[1], q.shape[1])
  p = np.pad(p, ((0, 0), (0, k - p.shape[1])))
  q = np.pad(q, ((0, 0), (0, k - q.shape[1])))
  return 0.5 * np.abs(p - q).sum(-1)


def decision_points(config, small, large, episodes: int) -> dict[str, list]:
  """Plays `episodes` small-only dev episodes; at each decision point keeps the row's snapshot,
  `phi` with and without the history view, and both divergences."""
  hold = int(config.switcher.hold)
  make_env = make_env_fn(config)
  prompts = {"small": small.prompt_config, "large": large.prompt_config}
  rows = [Row(prompts, make_env) for _ in range(episodes)]
  for k, row in enumerate(rows):
    row.start(config.levels[k % len(config.levels)], episode_seed(int(config.seed), k, "dev"))
  without_history = config.copy_and_resolve_references()
  without_history.features.history = False
  without_history.features.memory = False
  with_history = config.copy_and_resolve_references()
  with_history.features.history = True
  with_history.features.memory = True  # phi with the history view, then the episode memory
  points = {"snapshots": [], "phi": [], "phi_history": [], "tv_history": [], "tv_large": [],
            "memory": []}
  live = np.ones(episodes, bool)
  while live.any():
    idx = np.flatnonzero(live)
    live_rows = [rows[i] for i in idx]
    cands = [row.obs.valid_actions for row in live_rows]
    out = small([row.prompt("small") for row in live_rows], cands).out
    decide = np.array([row.t % hold == 0 for row in live_rows])
    if decide.any():
      d = np.flatnonzero(decide)
      d_rows, d_cands = [live_rows[j] for j in d], [cands[j] for j in d]
      history = features_lib.history_view(with_history, small, d_rows, d_cands).out
      large_out = large([row.prompt("large") for row in d_rows], d_cands).out
      own = _rows_of(out, d)
      time_fraction = np.array([row.time_fraction for row in d_rows])
      points["phi"] += list(features_lib.build_features(without_history, own, time_fraction))
      with_memory = features_lib.build_features(with_history, own, time_fraction, history, d_rows)
      dim = with_memory.shape[1] // (features_lib.MEMORY_DEPTH + 2)
      points["phi_history"] += list(with_memory[:, :dim])
      points["memory"] += list(with_memory[:, dim:])
      points["tv_history"] += list(total_variation(own.probs, history.probs))
      points["tv_large"] += list(total_variation(own.probs, large_out.probs))
      points["snapshots"] += [row.snapshot() for row in d_rows]
    u = crn_uniform(int(config.seed), np.array([row.seed for row in live_rows]),
                    np.array([row.t for row in live_rows]))
    actions = choose_actions(out.probs, [len(c) for c in cands], u, config.policies.action)
    for j, (i, row) in enumerate(zip(idx, live_rows)):
      _, done, _ = row.step(cands[j][actions[j]], 0)
      live[i] = not done
  for row in rows:
    row.close()
  return points


def _rows_of(out, rows: np.ndarray):
  """The `PolicyOutput` fields `build_features` and `total_variation` read, at `rows`."""
  return types.SimpleNamespace(**{name: np.asarray(getattr(out, name))[rows] for name in
                               ("features", "max_prob", "entropy", "margin", "probs")})


def call_effects(config, small, large, snapshots: list, batch: int = 32) -> np.ndarray:
  """The paired effect (call-branch minus keep-branch return) of one call block at each point."""
  reward = lambda r, done, info: switcher_reward(config.reward, r, done, info)
  sim = RowBranches(small, large, config, reward, "small")
  effects = []
  start = time.perf_counter()
  for b in range(0, len(snapshots), batch):
    chunk = snapshots[b:b + batch]
    outcome = sim.play(chunk, np.zeros(len(chunk), np.int64))
    effects += list(outcome.returns[:, 1] - outcome.returns[:, 0])
    print(f"  pairs {b + len(chunk)}/{len(snapshots)}  {time.perf_counter() - start:.0f} s",
          flush=True)
  sim.close()
  return np.array(effects)


def cross_validated_ridge(x: np.ndarray, y: np.ndarray, folds: int, ridge: float,
                          seed: int = 0) -> np.ndarray:
  """Out-of-fold predictions of `y` by a ridge regression on standardised `x`, with an intercept
  that is not penalised."""
  x = (x - x.mean(0)) / (x.std(0) + 1e-6)
  x = np.concatenate([x, np.ones((len(x), 1))], axis=1)
  penalty = ridge * np.diag(np.r_[np.ones(x.shape[1] - 1), 0.0])
  fold = np.random.default_rng(seed).permutation(len(y)) % folds
  pred = np.zeros(len(y))
  for f in range(folds):
    train, test = fold != f, fold == f
    w = np.linalg.solve(x[train].T @ x[train] + penalty, x[train].T @ y[train])
    pred[test] = x[test] @ w
  return pred


def top_and_rest(score: np.ndarray, y: np.ndarray, share: float) -> tuple[float, float]:
  """Mean `y` of the `share` of points that `score` ranks highest, and of the rest."""
  order = np.argsort(-score, kind="stable")
  k = int(share * len(y))
  return float(y[order[:k]].mean()), float(y[order[k:]].mean())


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", default="configs/londi.py:babyai_text")
  parser.add_argument("--episodes", type=int, default=400)
  parser.add_argument("--folds", type=int, default=5)
  parser.add_argument("--ridge", type=float, default=100.0)
  parser.add_argument("--out", default="", help="also write every point's features and effect")
  args, overrides = parser.parse_known_args()  # `--config.field=value` overrides
  config_flags.DEFINE_config_file("config", args.config)
  flags.FLAGS([sys.argv[0]] + overrides)
  config = flags.FLAGS.config
  small, large = load_runners(config)
  start = time.perf_counter()
  points = decision_points(config, small, large, args.episodes)
  print(f"{len(points['snapshots'])} decision points from {args.episodes} small-only dev "
        f"episodes ({time.perf_counter() - start:.0f} s); playing their pairs", flush=True)
  y = call_effects(config, small, large, points["snapshots"])
  tv_history, tv_large = np.array(points["tv_history"]), np.array(points["tv_large"])
  phi, phi_history = np.array(points["phi"]), np.array(points["phi_history"])
  sets = {"phi": phi, "phi + history view": phi_history,
          "tv_history": tv_history[:, None], "tv_large": tv_large[:, None],
          "phi + history view + tv_history": np.c_[phi_history, tv_history],
          "phi + history view + both tv": np.c_[phi_history, tv_history, tv_large],
          "phi + history view + memory": np.c_[phi_history, np.array(points["memory"])]}
  print(f"\n{len(y)} pairs, hold {int(config.switcher.hold)}: mean effect {y.mean():+.4f}, "
        f"{(y != 0).mean():.1%} differ; correlation with the effect: tv_history "
        f"{np.corrcoef(tv_history, y)[0, 1]:+.3f}, tv_large {np.corrcoef(tv_large, y)[0, 1]:+.3f}")
  print(f"ridge {args.ridge:g}, {args.folds}-fold cross-validation: mean effect of the top "
        "share of decision points / the rest")
  print(f"{'features':<34s} {'top 25%':>8s} {'rest':>8s} {'top 40%':>8s} {'rest':>8s}")
  for name, x in sets.items():
    pred = cross_validated_ridge(x, y, args.folds, args.ridge)
    (t25, r25), (t40, r40) = top_and_rest(pred, y, 0.25), top_and_rest(pred, y, 0.4)
    print(f"{name:<34s} {t25:+8.4f} {r25:+8.4f} {t40:+8.4f} {r40:+8.4f}")
  if args.out:
    with open(args.out, "w") as f:
      json.dump({"effect": y.tolist(), "tv_history": tv_history.tolist(), "phi": phi.tolist(),
                 "tv_large": tv_large.tolist(), "phi_history": phi_history.tolist()}, f)


if __name__ == "__main__":
  main()
