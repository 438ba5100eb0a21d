"""The progress features (`features.progress`) in phi(s) on BabyAI-Text, where an episode keeps no
score and has no focus: only the stall counter moves, and it is the time fraction until a reward.
ScienceWorld's scripted episode is in tests/test_scienceworld_switching.py; training and evaluating
with them, in tests/test_paired_training.py and tests/test_scienceworld_loop.py."""

import numpy as np
import pytest

from configs import londi
from londi_jax.training import features as features_lib
from londi_jax.training.fakes import make_tiny_policies
from londi_jax.training.lm import load_runners
from londi_jax.training.rows import Row


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  config = londi.get_config("babyai_text:smoke")
  config.policies.dir = make_tiny_policies(str(tmp_path_factory.mktemp("policies")))
  config.features.progress = True
  return config, load_runners(config)


def test_progress_extends_phi_by_five_and_needs_the_rows(setup):
  config, (small, large) = setup
  plain = config.copy_and_resolve_references()
  plain.features.progress = False
  dim = features_lib.feature_dim(plain, small.hidden_size)
  assert features_lib.feature_dim(config, small.hidden_size) == dim + 5
  row = Row({"small": small.prompt_config, "large": large.prompt_config})
  row.start("babyai_text/BabyAI-GoToLocal-v0", 7)
  for _ in range(4):
    out = small([row.prompt("small")], [row.obs.valid_actions]).out
    t = np.array([row.time_fraction])
    with pytest.raises(ValueError, match="features.progress"):
      features_lib.build_features(config, out, t)
    phi = features_lib.build_features(config, out, t, rows=[row])[0]
    np.testing.assert_array_equal(phi[:dim], features_lib.build_features(plain, out, t)[0])
    # No score, no reward before the end, no rejection, no focus: the stall is t / T.
    np.testing.assert_allclose(phi[dim:], [0, row.time_fraction, 0, 0, 0], rtol=1e-6)
    row.step(row.obs.valid_actions[int(out.greedy[0])])
  row.close()
