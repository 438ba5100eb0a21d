"""Paired targets teach the switcher where calls pay, on the real loop (real BabyAI-Text levels,
real Flax policies, real branch replays): on a controlled pair whose large policy helps on one
level and not on the other, the switcher calls where it helps and beats random switching that
holds its decisions as long, at the switcher's own call rate, on the same episodes."""

import os

import numpy as np
import pytest

from configs import londi
from londi_jax.training import evaluation as ev
from londi_jax.training import loop
from londi_jax.training.fakes import make_tiny_policies
from londi_jax.training.lm import load_runners

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAINED = os.path.join(ROOT, "artifacts", "babyai_text", "small")
# The "large" policy (the embedded small one, cloned on go-to and pick-up missions) solves most
# GoToLocal episodes and almost no PutNextLocal one; the untrained small policy solves neither.
HELPS, USELESS = "babyai_text/BabyAI-GoToLocal-v0", "babyai_text/BabyAI-PutNextLocal-v0"
EPISODES = 100
HOLD = 8


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  tiny = make_tiny_policies(str(tmp_path_factory.mktemp("tiny")))
  c = londi.get_config("babyai_text:smoke")
  c.levels = (HELPS, USELESS)
  c.policies.small = os.path.join(tiny, "small")
  c.policies.large = TRAINED
  c.member_costs = (0.02,)
  c.num_envs = 8
  c.train_steps = 400
  c.log_every = 40
  c.checkpoint_every = 400
  c.eval_every = 0
  sw = c.switcher
  sw.update(target="paired", hidden_sizes=(32,), replay_capacity=4000, min_replay=64,
            batch_size=64, epsilon_decay_steps=200, train_every=2, num_updates=4, hold=HOLD,
            learning_rate=3e-3)
  sw.paired.update(batch=16, pairs_per_step=1, horizon=48)
  runners = load_runners(c)
  trainer = loop.Trainer(c, str(tmp_path_factory.mktemp("run")), runners=runners, log=None)
  trainer.run()
  switcher = trainer.evaluate_members(EPISODES, seed=0, split="test")[0]
  trainer.close()
  rate = switcher["large_call_fraction"]
  held = ev.run_method(ev.random_held(rate, 0, HOLD), *runners, c, episodes=EPISODES, seed=0,
                       num_envs=16, split="test")
  return switcher, held


def calls_by_level(result):
  by = {}
  for e in result["episodes"]:
    calls, steps = by.get(e["level"], (0, 0))
    by[e["level"]] = (calls + e["calls"], steps + e["length"])
  return {level: c / s for level, (c, s) in by.items()}


def test_switcher_calls_where_the_large_policy_helps(trained):
  londi, _ = trained
  rates = calls_by_level(londi)
  assert rates[HELPS] > 1.5 * rates[USELESS]


def test_switcher_beats_held_random_switching_at_its_rate(trained):
  londi, held = trained
  assert abs(held["large_call_fraction"] - londi["large_call_fraction"]) < 0.1
  by_seed = {e["seed"]: e["success"] for e in held["episodes"]}
  d = np.array([float(e["success"]) - by_seed[e["seed"]] for e in londi["episodes"]])
  assert d.mean() > 1.96 * d.std(ddof=1) / np.sqrt(len(d))  # the paired interval is above 0
