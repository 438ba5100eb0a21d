"""The switcher learned from samples on the tabular diagnostic, checked against the exact solution
(`solve_tabular`), plus the diagnostic's command line."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs.diagnostic import get_config
from londi_jax.diagnostic import loop as diagnostic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _test_config(**overrides):
  """A problem small enough to learn in seconds on 2 CPU cores."""
  c = get_config()
  c.num_states = 8
  c.num_envs = 64
  c.train_steps = 3000
  c.eval_episodes = 500
  c.switcher.hidden_sizes = (64, 64)
  c.switcher.batch_size = 256
  c.switcher.replay_capacity = 200_000
  c.switcher.min_replay = 2000
  for key, value in overrides.items():
    node, *path = c, *key.split(".")
    for part in path[:-1]:
      node = node[part]
    node[path[-1]] = value
  return c


@pytest.mark.parametrize("seed, num_states, budget", [(0, 8, 0), (1, 8, 2), (2, 10, 0),
                                                      (3, 6, 3)])
def test_learned_switching_matches_the_exact_solution(seed, num_states, budget):
  result = diagnostic.run_diagnostic(_test_config(seed=seed, num_states=num_states, budget=budget),
                                     log=None)
  assert result["switch_agreement"] >= 0.95, result
  assert result["value_gap"] < 0.02, result
  assert result["budget_violations"] == 0
  if budget:
    assert result["max_calls_per_episode"] <= budget
  # Something was at stake: the exact rule calls the large model in some states, not all.
  assert 0.0 < result["exact_call_fraction"] < 1.0, result


def test_lagrange_multiplier_brings_the_call_rate_to_its_target():
  free = diagnostic.run_diagnostic(_test_config(seed=4, num_states=12, cost=0.0), log=None)
  target = 0.2
  assert free["eval_call_rate"] > target + 0.15, free  # unconstrained, it calls too often
  constrained = _test_config(seed=4, num_states=12, cost=0.0)
  constrained.switcher.lagrangian.enabled = True
  constrained.switcher.lagrangian.target = target
  constrained.switcher.lagrangian.learning_rate = 0.002
  result = diagnostic.run_diagnostic(constrained, log=None)
  assert result["lagrange"] > 0.0
  assert abs(result["eval_call_rate"] - target) < 0.1, result
  # The switcher is still near-optimal for the price it pays, c + lambda (at the equilibrium
  # multiplier one state sits at indifference, so one decision may go either way).
  assert result["switch_agreement"] >= 0.9, result


def test_members_trained_together_equal_members_trained_alone():
  config = get_config("smoke")
  mdp = diagnostic.make_mdp(config)
  seeds, costs = [0, 1], [0.2, 0.0]
  together = diagnostic.train_members(config, mdp, seeds, costs, log=None)
  for m, (seed, cost) in enumerate(zip(seeds, costs)):
    alone = diagnostic.train_members(config, mdp, [seed], [cost], log=None)
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a[m], b[0], rtol=1e-4, atol=1e-5),
        together.learner.q_params, alone.learner.q_params)
    np.testing.assert_array_equal(together.actor.states[m], alone.actor.states[0])


def test_same_config_and_seed_give_the_same_numbers():
  config = get_config("smoke")
  config.budget = 2
  first = diagnostic.run_diagnostic(config, log=None)
  second = diagnostic.run_diagnostic(config, log=None)
  assert first == second


def _diagnose(*flags):
  return subprocess.run([sys.executable, "-m", "launch.diagnose", *flags], cwd=ROOT,
                        capture_output=True, text=True, timeout=600)


def test_command_line_prints_progress_then_a_json_line():
  proc = _diagnose("--config", "configs/diagnostic.py:smoke", "--config.budget=2",
                   "--config.seed=3")
  assert proc.returncode == 0, proc.stderr
  lines = proc.stdout.strip().splitlines()
  assert any(line.startswith("step") for line in lines[:-1])
  result = json.loads(lines[-1])
  for key in ("switch_agreement", "value_gap", "budget_violations"):
    assert key in result
  assert result["budget_violations"] == 0
  assert result["seed"] == 3


def test_command_line_rejects_an_unknown_config_field():
  proc = _diagnose("--config", "configs/diagnostic.py:smoke", "--config.num_sates=5")
  assert proc.returncode != 0
  assert "num_sates" in proc.stderr
