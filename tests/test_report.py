"""The report's paired success differences."""

import numpy as np

from londi_jax.training.report import comparison_rows, paired_difference, present_baselines


def _method(successes, seeds):
  return {"episodes": [{"seed": s, "success": bool(x)} for s, x in zip(seeds, successes)]}


def test_paired_difference_matches_seeds_and_computes_the_standard_error():
  seeds = [11, 12, 13, 14]
  a = _method([1, 1, 0, 1], seeds)
  b = _method([1, 0, 1, 0], seeds[::-1])  # stored in another order: 0, 1, 0, 1 by seed 11..14
  mean, se = paired_difference(a, b)
  d = np.array([1 - 0, 1 - 1, 0 - 0, 1 - 1], float)  # by seed 11..14
  assert mean == d.mean() == 0.25
  assert np.isclose(se, np.sqrt(((d - 0.25) ** 2).sum() / 3) / 2)


def test_each_switcher_is_compared_with_the_baselines_matched_to_it():
  seeds = [1, 2, 3, 4]

  def method(successes, **info):
    return dict(_method(successes, seeds), success_rate=np.mean(successes),
                large_call_fraction=0.5, compute_relative_to_large=0.6, **info)

  methods = {"large_only": method([1, 1, 1, 0]),
             "londi_c0.1_m0": method([1, 1, 0, 0], cost=0.1, member=0),
             "londi_c0.1_m1": method([0, 1, 0, 0], cost=0.1, member=1),
             "random_held_c0.1_m0": method([0, 0, 0, 0], cost=0.1, member=0),
             "random_held_c0.1_m1": method([1, 1, 1, 1], cost=0.1, member=1)}
  rows = comparison_rows(methods)
  assert len(rows) == 2
  cells = [r.strip("| ").split(" | ") for r in rows]
  # Member 0: against large-only (1,1,0,0) - (1,1,1,0) = mean -0.25; against its own random
  # held baseline (all 0): +0.5. Member 1: (0,1,0,0) - (1,1,1,1) = -0.75.
  # Columns: cost, success, calls, compute, then only the baselines the run played.
  assert present_baselines(methods) == ("large_only", "random_held")
  assert all(len(c) == 6 for c in cells)
  assert cells[0][4].startswith("-0.250") and cells[0][5].startswith("+0.500")
  assert cells[1][5].startswith("-0.750")
