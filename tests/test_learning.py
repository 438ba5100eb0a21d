"""The switcher learns the price of the large policy on the real loop (real BabyAI-Text levels,
real Flax policies, real replay): over an untrained small policy and a trained "large" one (the
embedded small policy), a free switcher learns to call the large policy and succeeds more than
the small policy alone, while a switcher whose price exceeds any return never calls it."""

import os

import pytest

from configs import londi
from londi_jax.training import evaluation as ev
from londi_jax.training import loop
from londi_jax.training.fakes import make_tiny_policies
from londi_jax.training.lm import load_runners

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAINED = os.path.join(ROOT, "artifacts", "babyai_text", "small")
EPISODES = 48


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  tiny = make_tiny_policies(str(tmp_path_factory.mktemp("tiny")))
  c = londi.get_config("babyai_text:smoke")
  c.policies.small = os.path.join(tiny, "small")
  c.policies.large = TRAINED
  c.member_costs = (0.0, 0.5)  # free, and dearer than a success (1) over two calls
  c.num_envs = 8
  c.train_steps = 400
  c.log_every = 50
  c.checkpoint_every = 400
  c.eval_every = 0
  sw = c.switcher
  sw.hidden_sizes = (32,)
  sw.replay_capacity = 4000
  sw.min_replay = 200
  sw.batch_size = 64
  sw.epsilon_decay_steps = 200
  sw.train_every = 2
  sw.num_updates = 2
  sw.hold = 8  # one step of a policy moves success too little to learn from 3,200 transitions
  sw.n_step = 1
  sw.share_replay = False
  runners = load_runners(c)
  trainer = loop.Trainer(c, str(tmp_path_factory.mktemp("run")), runners=runners, log=None)
  trainer.run()
  members = trainer.evaluate_members(EPISODES, seed=0, split="test")
  small_only = ev.run_method(ev.small_only(), *runners, c, episodes=EPISODES, seed=0,
                             num_envs=16, split="test")
  trainer.close()
  return members, small_only


def test_free_switcher_calls_the_better_policy_and_succeeds_more(trained):
  members, small_only = trained
  free = members[0]
  assert free["large_call_fraction"] > 0.5
  assert free["success_rate"] >= small_only["success_rate"] + 0.25


def test_overpriced_switcher_never_calls(trained):
  dear = trained[0][1]
  assert dear["large_call_fraction"] < 0.02
