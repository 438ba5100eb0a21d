"""LONDI training loop: resume after an interruption, config checks, checkpoint errors, and no
recompilation in steady state. Policies are tiny untrained decoders (`training.fakes`)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

from absl import flags
import jax
import numpy as np
import pytest
from ml_collections import config_flags

from configs import londi
from londi_jax.training import loop
from londi_jax.training.checkpoint import (CheckpointError, CheckpointStore, check_config,
                                          load_config, read_raw)
from londi_jax.training.evaluate_run import evaluate_run
from londi_jax.training.fakes import make_tiny_policies
from londi_jax.training.inspect_run import inspect_run
from londi_jax.training.lm import load_runners
from londi_jax.training.metrics import read_metrics
from londi_jax.training.rows import Row

TIMING = ("time", "steps_per_s")


@pytest.fixture(scope="module")
def policies(tmp_path_factory):
  return make_tiny_policies(str(tmp_path_factory.mktemp("policies")))


def smoke_config(policies, **changes):
  c = londi.get_config("babyai_text:smoke")
  c.policies.dir = policies
  c.train_steps = 24
  c.log_every = 4
  c.checkpoint_every = 8
  c.member_costs = (0.01, 0.2)
  for k, v in changes.items():
    c[k] = v
  return c


def quiet(line):
  del line


def without_timing(records):
  return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


@pytest.fixture(scope="module")
def runs(policies, tmp_path_factory):
  """An uninterrupted run and one killed after step 14 (past the checkpoint at step 8, with
  metrics written beyond it) and then resumed by the same call."""
  root = tmp_path_factory.mktemp("runs")
  config = smoke_config(policies)
  config.switcher.n_step = 3  # the window of pending steps must resume exactly too
  config.switcher.hold = 1
  config.switcher.share_replay = False
  runners = load_runners(config)
  straight, resumed = str(root / "straight"), str(root / "resumed")
  trainer = loop.Trainer(config, straight, runners=runners, log=quiet)
  trainer.run()
  step_fn_compilations = trainer.step_fn._cache_size()
  trainer.close()
  # The policies carry no state between calls (actions come from common random numbers), so the
  # "new process" may share them, and their compilations.
  with pytest.raises(loop.Interrupted):
    loop.train(config, resumed, log=quiet, stop_after=14, runners=runners)
  killed_records = read_metrics(os.path.join(resumed, "metrics.jsonl"))
  loop.train(config, resumed, log=quiet, runners=runners)
  return dict(config=config, straight=straight, resumed=resumed, killed=killed_records,
              compilations=step_fn_compilations, runners=runners)


def test_resume_after_interruption_gives_identical_metrics_and_state(runs):
  assert max(r["step"] for r in runs["killed"]) == 12  # logged past the checkpoint at 8
  a = read_metrics(os.path.join(runs["straight"], "metrics.jsonl"))
  b = read_metrics(os.path.join(runs["resumed"], "metrics.jsonl"))
  assert [r["step"] for r in a if r["kind"] == "train"] == [4, 8, 12, 16, 20, 24]
  assert [r["step"] for r in a if r["kind"] == "eval"] == [20]  # smoke: eval_every 20
  assert without_timing(a) == without_timing(b)
  sa, sb = read_raw(runs["straight"])[2], read_raw(runs["resumed"])[2]
  leaves_a, leaves_b = jax.tree_util.tree_leaves(sa), jax.tree_util.tree_leaves(sb)
  assert len(leaves_a) == len(leaves_b)
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_metrics_records_are_complete(runs):
  records = read_metrics(os.path.join(runs["straight"], "metrics.jsonl"))
  last = records[-1]
  assert last["kind"] == "train" and last["env_steps"] == 24 * 2 * 4
  for member, cost in zip(last["members"], (0.01, 0.2)):
    assert member["cost"] == cost
    for key in ("call_rate", "greedy_call_rate", "lagrange", "loss", "epsilon", "success_rate"):
      assert key in member
    assert 0.0 <= member["call_rate"] <= 1.0
  with open(os.path.join(runs["straight"], "config.json")) as f:
    assert json.load(f)["config"]["member_costs"] == [0.01, 0.2]


def test_replay_holds_one_n_step_transition_per_row_and_step_after_the_first_n(runs):
  n = runs["config"].switcher.n_step
  state = read_raw(runs["straight"])[2]
  np.testing.assert_array_equal(state["replay"]["size"], [(24 - n) * 4] * 2)  # 2 members, 4 rows


def test_member_step_compiles_once(runs):
  assert runs["compilations"] == 1


def test_workdir_with_a_different_config_is_refused(runs, policies):
  config = smoke_config(policies, member_costs=(0.01, 0.3))
  with pytest.raises(ValueError, match="different config.*member_costs"):
    loop.Trainer(config, runs["straight"], runners=runs["runners"], log=quiet)


def _saved_without(tmp_path, config, fields):
  """`config`, saved in `tmp_path` as a run written before `fields` (dotted names) existed."""
  check_config(str(tmp_path), config)
  with open(tmp_path / "config.json") as f:
    saved = json.load(f)
  for field in fields:
    *blocks, name = field.split(".")
    node = saved["config"]
    for block in blocks:
      node = node[block]
    del node[name]  # as written before the option was added
  with open(tmp_path / "config.json", "w") as f:
    json.dump(saved, f)
  return config


def _saved_before(tmp_path):
  """The smoke config, saved in `tmp_path` as a run written before `features.memory` and
  `features.progress` existed."""
  return _saved_without(tmp_path, londi.get_config("babyai_text:smoke"),
                        ("features.memory", "features.progress"))


@pytest.mark.parametrize("option", ["memory", "progress"])
def test_a_run_saved_before_an_option_existed_resumes_with_it_off(tmp_path, option):
  config = _saved_before(tmp_path)
  check_config(str(tmp_path), config)  # off: the run it was
  config.features[option] = True
  with pytest.raises(ValueError, match=f"different config.*features.{option}"):
    check_config(str(tmp_path), config)


def test_a_scienceworld_run_saved_before_variation_stride_resumes_only_with_stride_1(tmp_path):
  config = _saved_without(tmp_path, londi.get_config("scienceworld:smoke"),
                          ("env_kwargs.variation_stride",))
  with pytest.raises(ValueError, match="different config.*env_kwargs.variation_stride"):
    check_config(str(tmp_path), config)  # the config's default: distinct variations per task
  config.env_kwargs.variation_stride = 1  # the mapping the run was made with
  check_config(str(tmp_path), config)


def test_a_rerun_writes_its_evaluation_settings_and_keeps_the_training_ones(tmp_path):
  config = _saved_before(tmp_path)
  config.eval.episodes = config.eval.episodes + 7
  check_config(str(tmp_path), config)
  reread = load_config(str(tmp_path))
  assert reread.eval.episodes == config.eval.episodes
  assert "memory" not in reread.features  # the saved training fields stay as they were


def test_rerun_of_a_finished_run_does_nothing(runs):
  before = read_metrics(os.path.join(runs["straight"], "metrics.jsonl"))
  assert loop.train(runs["config"], runs["straight"], log=quiet, runners=runs["runners"]) is None
  assert read_metrics(os.path.join(runs["straight"], "metrics.jsonl")) == before


def test_unknown_config_field_fails_clearly():
  values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", "configs/londi.py:babyai_text:smoke",
                                  flag_values=values, lock_config=True)
  with pytest.raises(flags.UnrecognizedFlagError, match="config.switcher.no_such_field"):
    values(["prog", "--config.switcher.no_such_field=1"])
  with pytest.raises(ValueError, match="unknown preset"):
    londi.get_config("babyai_text:huge")


def test_missing_checkpoint_is_a_clear_error(runs, tmp_path):
  empty = str(tmp_path / "empty")
  os.makedirs(empty)
  with pytest.raises(CheckpointError, match="no run"):
    evaluate_run(empty, log=quiet, runners=runs["runners"])
  shutil.copy(os.path.join(runs["straight"], "config.json"), empty)
  with pytest.raises(CheckpointError, match="no latest checkpoint"):
    evaluate_run(empty, log=quiet, runners=runs["runners"])
  with pytest.raises(CheckpointError, match="no checkpoints"):
    inspect_run(empty)


def test_corrupt_checkpoint_is_a_clear_error(runs, tmp_path):
  broken = str(tmp_path / "broken")
  shutil.copytree(runs["straight"], broken)
  step = CheckpointStore(broken, read_only=True).latest_step()
  state_dir = os.path.join(broken, "checkpoints", str(step), "state")
  for root, _, files in os.walk(state_dir):
    for name in files:
      with open(os.path.join(root, name), "wb") as f:
        f.write(b"\x00garbage")
  with pytest.raises(CheckpointError, match="unreadable"):
    evaluate_run(broken, log=quiet, runners=runs["runners"])
  with pytest.raises(CheckpointError, match="unreadable"):
    inspect_run(broken)


def test_inspect_reads_the_checkpoint(runs):
  text = inspect_run(runs["straight"])
  assert "step 24" in text
  assert "Dense_0/kernel: float32[2, " in text  # two members
  assert "0.01" in text and "0.2" in text
  assert '"member_costs"' in text
  assert "latest metrics" in text and '"step": 24' in text


def test_best_checkpoint_is_the_periodic_evaluation(runs):
  step, meta, _, _ = read_raw(runs["straight"], "best")
  assert step == 20 and meta["step"] == 20
  assert read_raw(runs["straight"])[0] == 24


def test_killed_process_resumes_to_the_same_metrics(runs, policies, tmp_path):
  """`launch.train` killed with SIGKILL after logging past a checkpoint, then run again, ends
  with the metrics of the uninterrupted in-process run of the same config."""
  workdir = str(tmp_path / "killed")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  cmd = [sys.executable, "-m", "launch.train", "--config=configs/londi.py:babyai_text:smoke",
         f"--config.policies.dir={policies}", "--config.train_steps=24", "--config.log_every=4",
         "--config.checkpoint_every=8", "--config.member_costs=(0.01, 0.2)", f"--workdir={workdir}",
         f"--config.switcher.n_step={runs['config'].switcher.n_step}",
         "--config.switcher.hold=1", "--config.switcher.share_replay=False"]
  proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  deadline = time.time() + 300
  while time.time() < deadline and proc.poll() is None:
    if os.path.exists(metrics_path) and any(r["step"] >= 12 for r in read_metrics(metrics_path)):
      break
    time.sleep(0.05)
  assert proc.poll() is None, "the run ended before it could be killed"
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  finished = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=300)
  assert finished.returncode == 0, finished.stderr[-3000:]
  assert "resumed from step" in finished.stdout  # from the checkpoint at 8 (or a later one)
  a = read_metrics(os.path.join(runs["straight"], "metrics.jsonl"))
  assert without_timing(read_metrics(metrics_path)) == without_timing(a)


def test_shared_replay_gives_every_member_all_members_transitions(runs, tmp_path):
  config = smoke_config(runs["config"].policies.dir, train_steps=8, checkpoint_every=8,
                        eval_every=0)
  config.switcher.share_replay = True
  config.switcher.hold = 1
  config.switcher.n_step = 3
  loop.train(config, str(tmp_path / "shared"), log=quiet, runners=runs["runners"])
  replay = read_raw(str(tmp_path / "shared"))[2]["replay"]
  rows, steps, n = 4, 8, config.switcher.n_step
  np.testing.assert_array_equal(replay["size"], [(steps - n) * rows * 2] * 2)
  for leaf in jax.tree_util.tree_leaves(replay["data"]):
    np.testing.assert_array_equal(leaf[0], leaf[1])  # the same union of both members' rows
  # The two members act differently (their own rows, seeds and costs), so the union holds both.
  switches = replay["data"]["switch_tm1"][0, :(steps - n) * rows * 2].reshape(steps - n, 2, rows)
  features = replay["data"]["features_tm1"][0, :(steps - n) * rows * 2].reshape(steps - n, 2,
                                                                                 rows, -1)
  assert not np.array_equal(features[:, 0], features[:, 1]) or not np.array_equal(
      switches[:, 0], switches[:, 1])


def test_switcher_reward_kinds():
  assert loop.switcher_reward("env", 0.55, True, {"success": True}) == 0.55
  assert loop.switcher_reward("success", 0.55, True, {"success": True}) == 1.0
  assert loop.switcher_reward("success", 0.0, True, {"success": False}) == 0.0
  assert loop.switcher_reward("success", 0.0, False, {"success": False}) == 0.0


def test_unknown_switcher_reward_is_named(policies):
  config = smoke_config(policies, reward="speed")
  with pytest.raises(ValueError, match="speed"):
    loop.validate(config)


def test_held_calls_stop_at_the_hard_budget(policies, tmp_path):
  """A member paid to call decides every 4 steps; its held calls must stop when its 2 calls per
  episode are spent (the loop's remaining count never goes below zero)."""
  config = smoke_config(policies, train_steps=16, checkpoint_every=16, eval_every=0,
                        member_costs=(-0.5,))
  config.switcher.update(budget=2, hold=4, n_step=1, epsilon_start=0.0, epsilon_end=0.0,
                         min_replay=1)
  trainer = loop.Trainer(config, str(tmp_path / "budget"), log=None)
  lowest = []
  try:
    for _ in range(16):
      trainer.act()
      lowest.append(int(trainer.remaining.min()))
  finally:
    trainer.close()
  assert min(lowest) == 0  # the budget was used up ...
  assert all(x >= 0 for x in lowest)  # ... and never overrun


def test_row_time_fraction_reaches_one_at_the_babyai_step_limit():
  """Turning never picks anything up, so the episode runs to its step limit `T`; the time
  fraction after `k` steps is `k / T`, with `T` counted here, not read from the level."""
  row = Row({"small": {}})
  row.start("babyai_text/BabyAI-PickupLoc-v0", 3)
  fractions, done, info = [row.time_fraction], False, {}
  while not done:
    _, done, info = row.step("turn left")
    fractions.append(row.time_fraction)
  row.close()
  steps = len(fractions) - 1
  assert info["truncated"] and steps > 10
  assert fractions == [k / steps for k in range(steps + 1)]


def test_a_scienceworld_row_reads_its_step_limit_and_prompts():
  pytest.importorskip("scienceworld")
  row = Row({"small": {"num_actions": 1}})
  try:
    row.start("scienceworld/boil", 0)
    row.env.step_limit = 3  # public: the step at which an episode ends truncated
    assert row.prompt("small").startswith("Task: Your task is to boil water")
    fractions, dones = [row.time_fraction], []
    for _ in range(3):
      _, done, info = row.step("look around")
      fractions.append(row.time_fraction)
      dones.append(done)
    assert dones == [False, False, True] and info["truncated"]
    assert fractions == [0.0, 1 / 3, 2 / 3, 1.0]
    assert "\nRecent: look around (+0) -> This room is called the " in row.prompt("small")
  finally:
    row.close()
