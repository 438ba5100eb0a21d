"""Paired targets on text-environment rows: branches replayed from a row, budgets in every
branch, and the training loop with `switcher.target = "paired"` (pairs in replay, exact resume).
Policies are tiny untrained decoders (`training.fakes`)."""

import os

import jax
import numpy as np
import pytest

from configs import londi
from londi_jax.training import features as features_lib
from londi_jax.training import loop
from londi_jax.training.branches import RowBranches
from londi_jax.training.checkpoint import read_raw
from londi_jax.training.fakes import make_tiny_policies
from londi_jax.training.lm import load_runners
from londi_jax.training.metrics import read_metrics
from londi_jax.training.rows import Row

HOLD = 4
LEVELS = ("babyai_text/BabyAI-GoToLocal-v0", "babyai_text/BabyAI-PickupLoc-v0")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  config = londi.get_config("babyai_text:smoke")
  config.policies.dir = make_tiny_policies(str(tmp_path_factory.mktemp("policies")))
  config.switcher.hold = HOLD
  return config, load_runners(config)


def success(reward, done, info):
  return float(done and bool(info.get("success")))


def decision_points(config, runners, n, steps=HOLD):
  """Snapshots of `n` rows after `steps` small-LM steps (a decision point when `steps % HOLD`
  is 0), each in its own episode."""
  small, large = runners
  row = Row({"small": small.prompt_config, "large": large.prompt_config})
  snaps = []
  for k in range(n):
    row.start(LEVELS[k % 2], 1_000 + k)
    for _ in range(steps):
      row.step(row.obs.valid_actions[small([row.prompt("small")], [row.obs.valid_actions]).out
                                     .greedy[0]])
    snaps.append(row.snapshot())
  row.close()
  return snaps


class Recording(RowBranches):
  """Keeps each branch's action log once the pairs end."""

  def play(self, *args, **kwargs):
    out = super().play(*args, **kwargs)
    self.logs = [list(row.actions) for row in self.rows]
    return out


def test_branches_coincide_until_the_large_lm_first_acts_differently(setup):
  config, (small, large) = setup
  n = 12
  snaps = decision_points(config, (small, large), n)
  sim = Recording(small, large, config, success, "small")
  out = sim.play(snaps, np.zeros(n, np.int64), horizon=0)
  start = len(snaps[0]["actions"])
  diverged = 0
  for b in range(n):
    keep, call = sim.logs[b], sim.logs[n + b]
    assert keep[:start] == call[:start] == snaps[b]["actions"]  # both replayed the same state
    differ = [j for j in range(start, min(len(keep), len(call))) if keep[j] != call[j]]
    if not differ and len(keep) == len(call):
      # Never apart: the same episode, so the same return; only the call branch paid calls.
      assert out.returns[b, 0] == out.returns[b, 1]
      continue
    diverged += 1
    # After the hold both branches follow the small LM with the same random numbers, so they
    # can part only while the call branch's large LM acts.
    assert differ and differ[0] < start + HOLD
  assert out.calls[:, 0].sum() == 0  # the keep branch never calls with a small continuation
  np.testing.assert_array_equal(out.steps[:, 1] >= np.minimum(HOLD, out.steps[:, 0]), True)
  assert 0 < diverged  # the untrained policies do choose differently


def test_every_branch_keeps_the_hard_budget(setup):
  config, runners = setup
  config = config.copy_and_resolve_references()
  config.switcher.budget = 2
  config.switcher.discount = 1.0  # so the call counts are numbers of calls
  n = 6
  snaps = decision_points(config, runners, n)
  remaining = np.array([0, 1, 2, 0, 1, 2])
  # A continuation that always calls: only the budget stops it.
  sim = RowBranches(*runners, config, success, "greedy",
                    greedy=lambda phi, z, pair: np.ones(len(phi), np.int64))
  out = sim.play(snaps, remaining, horizon=0)
  np.testing.assert_array_equal(out.callable, remaining > 0)
  np.testing.assert_array_equal(out.calls[:, 1], np.minimum(remaining, out.steps[:, 1]))
  np.testing.assert_array_equal(out.calls[:, 0], np.minimum(remaining, out.steps[:, 0]))


class SwitchLog(RowBranches):
  """Keeps every branch step's episode steps `t`, switches and live mask."""

  def play(self, *args, **kwargs):
    self.log = []
    return super().play(*args, **kwargs)

  def step(self, switches, live):
    self.log.append((np.array([row.t for row in self.rows]), switches.copy(), live.copy()))
    return super().step(switches, live)


def test_random_continuation_holds_coins_common_to_both_branches(setup):
  config, runners = setup
  config = config.copy_and_resolve_references()
  config.switcher.paired.continuation_rate = 0.5
  n = 12
  snaps = decision_points(config, runners, n)
  start = len(snaps[0]["actions"])
  sim = SwitchLog(*runners, config, success, "random")
  sim.play(snaps, np.zeros(n, np.int64), horizon=0)
  blocks = {}  # (branch, decision step) -> the switch of every step of its block
  for t, g, live in sim.log:
    for i in np.flatnonzero(live):
      if t[i] >= start + HOLD:  # after the first decision
        blocks.setdefault((i, t[i] - t[i] % HOLD), set()).add(int(g[i]))
  assert all(len(v) == 1 for v in blocks.values())  # each decision holds its block
  shared = [blocks[(b, s)] == blocks[(n + b, s)] for (b, s) in blocks
            if b < n and (n + b, s) in blocks]
  assert len(shared) > 2 * n and all(shared)  # both branches of a pair draw the same coins
  called = np.mean([v == {1} for v in blocks.values()])
  assert 0.3 < called < 0.7  # a coin at 0.5 per block, over this many blocks


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_random_continuation_at_the_ends_is_small_only_or_large_only(setup, rate):
  config, runners = setup
  config = config.copy_and_resolve_references()
  config.switcher.discount = 1.0  # so the call counts are numbers of calls
  config.switcher.paired.continuation_rate = rate
  n = 4
  snaps = decision_points(config, runners, n)
  out = RowBranches(*runners, config, success, "random").play(snaps, np.zeros(n, np.int64))
  after = np.maximum(out.steps - HOLD, 0)  # each branch's steps after the first decision
  np.testing.assert_array_equal(out.calls[:, 0], rate * after[:, 0])
  np.testing.assert_array_equal(out.calls[:, 1], np.minimum(out.steps[:, 1], HOLD)
                                + rate * after[:, 1])


class CallLog(RowBranches):
  """Keeps, for every branch step, the live branches that call and their large-LM inputs."""

  def play(self, *args, **kwargs):
    self.log = []
    return super().play(*args, **kwargs)

  def step(self, switches, live):
    call = np.flatnonzero(live & (switches == 1))
    self.log.append((call, [self.rows[i].prompt("large") for i in call],
                     [self.rows[i].obs.valid_actions for i in call]))
    return super().step(switches, live)


def test_a_price_per_flop_weights_each_call_by_the_large_lms_flops_at_its_state(setup):
  config, runners = setup
  config = config.copy_and_resolve_references()
  config.switcher.discount = 0.9
  n = 6
  zeros = np.zeros(n, np.int64)
  snaps = decision_points(config, runners, n)
  per_call = RowBranches(*runners, config, success, "random").play(snaps, zeros)
  unit = 1e6
  config.switcher.flops_unit = unit
  sim = CallLog(*runners, config, success, "random")
  out = sim.play(snaps, zeros)
  np.testing.assert_array_equal(out.returns, per_call.returns)  # the price changes no step
  np.testing.assert_array_equal(out.steps, per_call.steps)
  expected = np.zeros(2 * n)
  for k, (call, prompts, cands) in enumerate(sim.log):
    if call.size:
      expected[call] += 0.9 ** k * runners[1](prompts, cands).row_flops / unit
  np.testing.assert_allclose(out.calls, np.stack([expected[:n], expected[n:]], -1), rtol=1e-6)
  called = per_call.calls > 0
  ratio = out.calls[called] / per_call.calls[called]
  assert ratio.max() > 1.05 * ratio.min()  # states differ in what a call costs


@pytest.mark.parametrize("reward", ["success", "score"])
def test_the_best_checkpoints_objective_prices_calls_as_training_does(setup, reward):
  config = setup[0].copy_and_resolve_references()
  config.reward = reward
  results = [{"success_rate": 0.5, "mean_score": 50.0, "large_calls": 30, "num_episodes": 10,
              "flops_by_model": {"large": 6e9, "small": 1e8}},
             {"success_rate": 0.8, "mean_score": 80.0, "large_calls": 10, "num_episodes": 10,
              "flops_by_model": {"large": 4e9, "small": 1e8}}]
  costs = (0.01, 0.2)
  # By hand: gain minus c x (calls per episode), or c x (large FLOPs per episode / 1e9).
  assert loop.switcher_objective(config, costs, results) == pytest.approx(
      ((0.5 - 0.01 * 3) + (0.8 - 0.2 * 1)) / 2)
  config.switcher.flops_unit = 1e9
  assert loop.switcher_objective(config, costs, results) == pytest.approx(
      ((0.5 - 0.01 * 0.6) + (0.8 - 0.2 * 0.4)) / 2)


def paired_config(policies_dir, **changes):
  c = londi.get_config("babyai_text:smoke")
  c.policies.dir = policies_dir
  c.train_steps = 24
  c.log_every = 4
  c.checkpoint_every = 8
  c.eval_every = 0
  c.member_costs = (0.01, 0.2)
  c.switcher.update(target="paired", hold=2, min_replay=4, train_every=2)
  c.switcher.paired.update(batch=4, pairs_per_step=1)
  for k, v in changes.items():
    c[k] = v
  return c


def train_straight_and_resumed(config, runners, tmp_path, stop_after):
  """Workdirs of one run trained straight through and of one interrupted after `stop_after`
  steps and resumed."""
  straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
  loop.train(config, straight, log=None, runners=runners)
  with pytest.raises(loop.Interrupted):
    loop.train(config, resumed, log=None, stop_after=stop_after, runners=runners)
  loop.train(config, resumed, log=None, runners=runners)
  return straight, resumed


def test_paired_training_fills_replay_with_pairs_and_resumes_exactly(setup, tmp_path):
  config = paired_config(setup[0].policies.dir)
  straight, resumed = train_straight_and_resumed(config, setup[1], tmp_path, stop_after=14)

  records = read_metrics(os.path.join(straight, "metrics.jsonl"))
  last = [r for r in records if r["kind"] == "train"][-1]
  assert last["pairs"] > 0 and last["pairs"] % 4 == 0  # whole batches of pairs
  state = read_raw(straight)[2]
  # A small continuation serves every member: each replay holds every pair played.
  np.testing.assert_array_equal(state["replay"]["size"], [last["pairs"]] * 2)
  assert np.all(np.asarray(state["learner"]["step"]) > 0)  # the members trained on them

  strip = lambda rs: [{k: v for k, v in r.items() if k not in ("time", "steps_per_s")}  # noqa
                      for r in rs]
  assert strip(records) == strip(read_metrics(os.path.join(resumed, "metrics.jsonl")))
  for x, y in zip(jax.tree_util.tree_leaves(state),
                  jax.tree_util.tree_leaves(read_raw(resumed)[2])):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_unknown_target_and_continuation_are_named(setup, tmp_path):
  config = paired_config(setup[0].policies.dir)
  config.switcher.target = "mc"
  with pytest.raises(ValueError, match="mc"):
    loop.Trainer(config, str(tmp_path), runners=setup[1], log=None)
  with pytest.raises(ValueError, match="sideways"):
    RowBranches(*setup[1], setup[0], success, "sideways")
  config = paired_config(setup[0].policies.dir)
  config.switcher.paired.continuation_rate = 1.5
  with pytest.raises(ValueError, match="continuation_rate"):
    loop.Trainer(config, str(tmp_path), runners=setup[1], log=None)
  for target, measure, unit in (("paired", None, -1.0), ("td", None, 1e6), ("paired", "rate", 1e6),
                                ("paired", "compute", 0.0)):
    config = paired_config(setup[0].policies.dir)
    config.switcher.update(target=target, flops_unit=unit)
    if measure:
      config.switcher.lagrangian.update(enabled=True, measure=measure)
    with pytest.raises(ValueError, match="flops_unit"):
      loop.Trainer(config, str(tmp_path), runners=setup[1], log=None)
  config = paired_config(setup[0].policies.dir)
  config.switcher.lagrangian.measure = "watts"
  with pytest.raises(ValueError, match="watts"):
    loop.Trainer(config, str(tmp_path), runners=setup[1], log=None)


def test_row_flops_without_scoring_equal_the_scored_rows_flops(setup):
  config, (small, large) = setup
  snaps = decision_points(config, (small, large), 4)
  row = Row({"small": small.prompt_config, "large": large.prompt_config})
  prompts, cands = [], []
  for snap in snaps:
    row.replay(snap)
    prompts.append(row.prompt("large"))
    cands.append(row.obs.valid_actions[: 3 + len(prompts)])  # lists of different lengths
  row.close()
  counted = large.policy.row_flops(prompts, cands)
  np.testing.assert_array_equal(counted, large(prompts, cands).row_flops)
  assert len(set(counted.tolist())) > 1


def test_the_greedy_compute_share_weighs_calls_by_the_large_lms_flops():
  greedy = np.array([[1, 0, 0, 1], [0, 0, 0, 0]])
  flops = np.array([[3e9, 1e9, 4e9, 2e9], [5e9, 5e9, 5e9, 5e9]])
  # By hand: member 0 calls where the large LM takes 3 + 2 of its 10 GFLOPs; member 1 never.
  np.testing.assert_allclose(loop.greedy_compute_share(greedy, flops), [0.5, 0.0])
  averages = loop.CallAverages.initial(2)
  averages.add_step(np.array([0.5, 0.0]), np.array([0.5, 0.0]))
  averages.add_step(np.array([0.5, 0.0]), np.array([0.25, 1.0]))
  d = loop.MEASURE_DECAY
  np.testing.assert_allclose(averages.measured("compute"),
                             [(1 - d) * (d * 0.5 + 0.25), (1 - d) * 1.0], rtol=1e-6)
  restored = loop.CallAverages.from_host(averages.to_host())
  np.testing.assert_array_equal(restored.compute, averages.compute)


class FlopsLog:
  """The large LM, keeping the FLOPs of each row it scores."""

  def __init__(self, runner):
    self.runner, self.flops = runner, []

  def __getattr__(self, name):
    return getattr(self.runner, name)

  def __call__(self, prompts, candidates):
    scored = self.runner(prompts, candidates)
    self.flops.append(scored.row_flops)
    return scored


@pytest.mark.parametrize("target", [0.0, 1.0])
def test_a_lagrangian_on_the_compute_share_raises_the_price_per_flop_only_above_its_target(
    setup, tmp_path, monkeypatch, target):
  config = paired_config(setup[0].policies.dir, train_steps=16, checkpoint_every=16)
  config.switcher.flops_unit = 1e6
  config.switcher.lagrangian.update(enabled=True, measure="compute", target=target,
                                    learning_rate=1.0)
  small, large = setup[1]
  large = FlopsLog(large)
  checked = []  # acting steps with a call
  account = loop.Trainer._account

  def checked_account(self, g, greedy, finished, large_flops=None):
    if g.any():  # the step's own large-LM call was the latest (branches play after it)
      np.testing.assert_array_equal(large.flops[-1], large_flops[g > 0])
      checked.append(self.step)
    account(self, g, greedy, finished, large_flops)

  monkeypatch.setattr(loop.Trainer, "_account", checked_account)
  loop.train(config, str(tmp_path), log=None, runners=(small, large))
  # The share weighed each called row by what the call cost: the FLOPs of the state decided at.
  assert len(checked) > 4
  last = [r for r in read_metrics(str(tmp_path / "metrics.jsonl")) if r["kind"] == "train"][-1]
  host = read_raw(str(tmp_path))[3]
  for k, member in enumerate(last["members"]):
    assert member["measured_compute"] == pytest.approx(host["compute_avg"][k])
    assert 0.0 < member["measured_compute"] <= 1.0
    # A share never exceeds 1: at target 1 the projected multiplier stays at 0; at target 0
    # every update with a positive share raises it.
    assert (member["lagrange"] > 0.0) == (target == 0.0)


def test_greedy_continuation_writes_each_pair_to_its_own_member(setup, tmp_path):
  config = paired_config(setup[0].policies.dir, train_steps=16, checkpoint_every=16)
  config.switcher.paired.continuation = "greedy"
  trainer = loop.Trainer(config, str(tmp_path / "greedy"), runners=setup[1], log=None)
  collected = []  # the members of the decision points, in the order they were kept
  collect = trainer.pairs.collect

  def recording_collect(*args):
    before = len(trainer.pairs.points)
    collect(*args)
    collected.extend(p["member"] for p in trainer.pairs.points[before:])

  trainer.pairs.collect = recording_collect
  try:
    for _ in range(16):
      trainer.act()
    sizes = np.asarray(trainer.members.replay.size)
    origin = collected[:trainer.pairs.pairs_played]  # pairs are played oldest first
    assert len(origin) > 0
    # Each pair follows its own member's switcher after the first decision, so only that member
    # learns from it; the greedy rule compiles once for every number of live branches.
    np.testing.assert_array_equal(sizes, [origin.count(0), origin.count(1)])
    assert trainer.pairs._q_all._cache_size() == 1
  finally:
    trainer.close()


def test_random_continuation_writes_every_pair_to_every_member(setup, tmp_path):
  config = paired_config(setup[0].policies.dir, train_steps=16, checkpoint_every=16)
  config.switcher.paired.continuation = "random"
  loop.train(config, str(tmp_path / "random"), log=None, runners=setup[1])
  last = [r for r in read_metrics(str(tmp_path / "random" / "metrics.jsonl"))
          if r["kind"] == "train"][-1]
  assert last["pairs"] > 0
  np.testing.assert_array_equal(read_raw(str(tmp_path / "random"))[2]["replay"]["size"],
                                [last["pairs"]] * 2)


def test_branch_rows_keep_one_environment_each_and_reuse_it(setup):
  """A ScienceWorld environment is a JVM: the branch pool must not open one per level per row."""
  config, (small, large) = setup
  snaps = decision_points(config, (small, large), 4)  # levels alternate
  sim = RowBranches(small, large, config, success, "small")
  made = []
  make = sim._make_env
  sim._make_env = lambda env_id: made.append(env_id) or make(env_id)
  zeros = np.zeros(4, np.int64)
  sim.play(snaps, zeros, horizon=2)
  assert sorted(made) == sorted([LEVELS[0]] * 4 + [LEVELS[1]] * 4)
  sim.play(snaps[::-1], zeros, horizon=2)  # the same mix: every row keeps its environment
  assert len(made) == 8
  sim.play([snaps[0]] * 4, zeros, horizon=2)  # all of level 0: four rows change level
  assert made[8:] == [LEVELS[0]] * 4 and len(sim._pool) == 8
  assert all(sum(row.has_env(level) for level in LEVELS) == 1 for row in sim._pool)
  sim.close()


def test_episode_memory_and_progress_with_greedy_branches_resume_exactly(setup, tmp_path):
  """Rows and branch rows carry their episode memory and the record their progress features
  read (rewards, score, actions) through checkpoints and snapshots."""
  config = paired_config(setup[0].policies.dir, train_steps=16)
  config.features.memory = True
  config.features.progress = True
  config.switcher.paired.continuation = "greedy"
  runners = setup[1]
  straight, resumed = train_straight_and_resumed(config, runners, tmp_path, stop_after=10)
  state = read_raw(straight)[2]
  plain = config.copy_and_resolve_references()
  plain.features.memory = False
  assert (np.asarray(state["replay"]["data"]["features"]).shape[-1]
          == 4 * features_lib.feature_dim(plain, runners[0].hidden_size))
  assert np.asarray(state["replay"]["size"]).sum() > 0
  for x, y in zip(jax.tree_util.tree_leaves(state),
                  jax.tree_util.tree_leaves(read_raw(resumed)[2])):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
