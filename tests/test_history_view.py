"""The history view: the small LM's pass on the large LM's prompt, in phi(s) and in compute."""

import jax
import numpy as np
import pytest

from configs import londi
from londi_jax.envs.babyai.env import ACTIONS
from londi_jax.policies import flops as flops_lib
from londi_jax.switching.learner import init_learner
from londi_jax.training import evaluation as ev
from londi_jax.training import features as features_lib
from londi_jax.training.fakes import make_tiny_policies
from londi_jax.training.lm import load_runners

PROMPT_TOKENS = 8  # every prompt is cut to 8 tokens, so both prompts cost the same per step


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  config = londi.get_config("babyai_text:smoke")
  config.policies.dir = make_tiny_policies(str(tmp_path_factory.mktemp("policies")))
  config.policies.prompt_buckets = (PROMPT_TOKENS,)
  config.features.history = True
  return config, load_runners(config)


def test_history_view_adds_the_small_lms_state_and_confidence(setup):
  config, (small, _) = setup
  plain = config.copy_and_resolve_references()
  plain.features.history = False
  assert (features_lib.feature_dim(config, small.hidden_size)
          == features_lib.feature_dim(plain, small.hidden_size) + small.hidden_size + 3)
  out = small(["go to the red ball"], [list(ACTIONS)]).out
  with pytest.raises(ValueError, match="history"):
    features_lib.build_features(config, out, np.zeros(1))
  phi = features_lib.build_features(config, out, np.zeros(1), history=out)
  assert phi.shape == (1, features_lib.feature_dim(config, small.hidden_size))


def test_londi_with_the_history_view_pays_a_second_small_pass(setup):
  config, (small, large) = setup
  learner = init_learner(config.switcher, jax.random.key(0),
                         features_lib.feature_dim(config, small.hidden_size))
  londi = ev.make_londi_rule_builder(config, 4)(learner.q_params)
  r = ev.run_method(londi, small, large, config, episodes=4, seed=0, num_envs=4)
  cand_lens = [len(ids) for ids in small.policy.tokenizer.encode_candidates(list(ACTIONS))]
  per_step = flops_lib.flops_per_step(small.policy.config, PROMPT_TOKENS, cand_lens)
  assert r["flops_by_model"]["small"] == 2 * per_step * r["steps"]
  only = ev.run_method(ev.small_only(), small, large, config, episodes=4, seed=0, num_envs=4)
  assert only["flops_by_model"]["small"] == per_step * only["steps"]  # no view, no second pass
