"""bench/call_effect.py: the ranking measures its figures come from."""

import numpy as np

from bench.call_effect import cross_validated_ridge, top_and_rest, total_variation


def test_total_variation_pads_the_shorter_candidate_list():
  p = np.array([[0.5, 0.5], [0.2, 0.8]])
  q = np.array([[1.0, 0.0, 0.0], [0.2, 0.8, 0.0]])
  np.testing.assert_allclose(total_variation(p, q), [0.5, 0.0])


def test_top_and_rest_splits_by_score():
  score = np.array([3.0, 1.0, 2.0, 0.0])
  y = np.array([10.0, 0.0, 5.0, 1.0])
  assert top_and_rest(score, y, 0.5) == (7.5, 0.5)
  assert top_and_rest(score, y, 0.25) == (10.0, 2.0)


def test_cross_validated_ridge_predicts_held_out_points():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(500, 3))
  y = 1.0 + 2.0 * x[:, 0] - x[:, 2] + 0.1 * rng.normal(size=500)
  pred = cross_validated_ridge(x, y, folds=5, ridge=1.0)
  assert np.corrcoef(pred, y)[0, 1] > 0.99
  # An overwhelming penalty leaves each fold's intercept: the training folds' mean of y.
  flat = cross_validated_ridge(x, y, folds=5, ridge=1e12)
  assert np.std(flat) < 0.1 * np.std(y)
  np.testing.assert_allclose(flat.mean(), y.mean(), atol=1e-3)

