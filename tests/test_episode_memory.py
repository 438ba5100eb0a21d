"""The episode memory (`features.memory`): phi at earlier decision points, kept by the rows,
carried through snapshots, and trained with exactly resumable state."""

import jax
import numpy as np
import pytest

from configs import londi
from londi_jax.switching.learner import init_learner
from londi_jax.training import evaluation as ev
from londi_jax.training import features as features_lib
from londi_jax.training.fakes import make_tiny_policies
from londi_jax.training.lm import load_runners
from londi_jax.training.rows import Row

HOLD = 2


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  config = londi.get_config("babyai_text:smoke")
  config.policies.dir = make_tiny_policies(str(tmp_path_factory.mktemp("policies")))
  config.switcher.hold = HOLD
  config.features.memory = True
  return config, load_runners(config)


def play(config, small, row, steps):
  """`steps` small-LM steps of `row`; per step, phi with the memory and phi of the state alone."""
  plain = config.copy_and_resolve_references()
  plain.features.memory = False
  with_memory, alone = [], []
  for _ in range(steps):
    out = small([row.prompt("small")], [row.obs.valid_actions]).out
    t = np.array([row.time_fraction])
    alone.append(features_lib.build_features(plain, out, t)[0])
    with_memory.append(features_lib.build_features(config, out, t, rows=[row])[0])
    row.step(row.obs.valid_actions[int(out.greedy[0])])
  return np.array(with_memory), np.array(alone)


def test_memory_holds_the_last_decision_points_and_their_mean(setup):
  config, (small, large) = setup
  row = Row({"small": small.prompt_config, "large": large.prompt_config})
  row.start("babyai_text/BabyAI-GoToLocal-v0", 7)
  phi, x = play(config, small, row, 6)
  d = x.shape[1]
  assert phi.shape[1] == features_lib.feature_dim(config, small.hidden_size) == 4 * d
  zero = np.zeros(d)
  # Decision points at t = 0, 2, 4: each step sees those strictly before its own step's point.
  expected = [[zero, zero, zero],                              # t = 0: nothing earlier
              [x[0], zero, x[0]],                              # t = 1: point 0
              [x[0], zero, x[0]],                              # t = 2: point 0 (2 not yet)
              [x[2], x[0], (x[0] + x[2]) / 2],                 # t = 3: points 0 and 2
              [x[2], x[0], (x[0] + x[2]) / 2],                 # t = 4
              [x[4], x[2], (x[0] + x[2] + x[4]) / 3]]          # t = 5: points 0, 2, 4
  for t, parts in enumerate(expected):
    np.testing.assert_array_equal(phi[t, :d], x[t])
    np.testing.assert_allclose(phi[t, d:], np.concatenate(parts), rtol=1e-6, atol=1e-7)
  row.close()


def test_memory_survives_a_snapshot_and_a_new_episode_clears_it(setup):
  config, (small, large) = setup
  prompts = {"small": small.prompt_config, "large": large.prompt_config}
  row, copy = Row(prompts), Row(prompts)
  row.start("babyai_text/BabyAI-PickupLoc-v0", 3)
  play(config, small, row, 5)
  assert len(row.memory) == 3
  copy.replay(row.snapshot())
  for a, b in zip(row.memory, copy.memory):
    np.testing.assert_array_equal(a, b)
  # The replayed row goes on exactly as the original does.
  np.testing.assert_array_equal(play(config, small, row, 3)[0], play(config, small, copy, 3)[0])
  row.start("babyai_text/BabyAI-PickupLoc-v0", 4)
  assert row.memory == [] and "memory" not in row.snapshot()
  row.close()
  copy.close()


def test_memory_without_rows_is_an_error_naming_the_field(setup):
  config, (small, _) = setup
  out = small(["go to the red ball"], [["turn left", "turn right"]]).out
  with pytest.raises(ValueError, match="features.memory"):
    features_lib.build_features(config, out, np.zeros(1))


def test_londi_with_memory_evaluates_and_repeats_itself(setup):
  """The evaluation's rows carry the memory (more episodes than slots: rows start new ones), and
  the same episodes are played the same way again."""
  config, (small, large) = setup
  learner = init_learner(config.switcher, jax.random.key(1),
                         features_lib.feature_dim(config, small.hidden_size))
  londi = ev.make_londi_rule_builder(config, 4)
  first, second = (ev.run_method(londi(learner.q_params), small, large, config, episodes=6,
                                 seed=0, num_envs=4) for _ in range(2))
  assert first["steps"] > 6
  assert first["episodes"] == second["episodes"]
