"""The report's paired success differences."""

import numpy as np

from londi_jax.training.report import paired_difference


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
