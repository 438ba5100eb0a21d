"""launch.sweep: variants as overrides, members as costs x seeds, aggregation over seeds."""

import json
import os
import shutil

import numpy as np
import pytest

from configs import sweep as sweep_config
from londi_jax.training import sweep
from londi_jax.training.fakes import make_tiny_policies


def test_overrides_take_the_type_of_the_field_they_replace():
  base = sweep_config.get_config().base
  c = sweep.apply_overrides(base, "switcher.target=td; switcher.hold=4; "
                                  "features.time=False; switcher.hidden_sizes=(8, 8); cost=0.5")
  assert (c.switcher.target, c.switcher.hold, c.features.time) == ("td", 4, False)
  assert c.switcher.hidden_sizes == (8, 8) and c.cost == 0.5
  assert base.switcher.target == "paired"  # the base is not changed
  with pytest.raises(KeyError, match="switcher.holdd"):
    sweep.apply_overrides(base, "switcher.holdd=4")


def test_members_are_every_cost_times_every_seed():
  s = sweep_config.get_config()
  s.costs, s.seeds = (0.1, 0.2), 3
  config = sweep.variant_config(s, "switcher.target=paired")
  assert config.member_costs == (0.1, 0.1, 0.1, 0.2, 0.2, 0.2)
  # A variant that tests a cost replaces the sweep's costs for itself alone.
  config = sweep.variant_config(s, "costs=(0.3,); switcher.target=td")
  assert config.member_costs == (0.3, 0.3, 0.3) and config.switcher.target == "td"
  assert sweep.variant_config(s, "costs=0.4").member_costs == (0.4, 0.4, 0.4)
  with pytest.raises(ValueError, match="empty costs"):
    sweep.variant_config(s, "costs=()")


@pytest.mark.parametrize("preset", ["default", "cpu", "smoke", "scienceworld"])
def test_every_variant_of_every_preset_names_known_fields(preset):
  s = sweep_config.get_config(preset)
  for name, overrides in s.variants.items():
    config = sweep.variant_config(s, overrides)
    assert len(config.member_costs) % int(s.seeds) == 0, name


def _tiny_sweep(tmp_path, steps: int):
  """The smoke sweep over tiny untrained policies, `steps` acting steps per run."""
  s = sweep_config.get_config("smoke")
  s.base.pretrain.enabled = False
  s.base.policies.dir = make_tiny_policies(str(tmp_path / "policies"))
  s.base.train_steps = steps
  s.base.log_every = 4
  s.base.checkpoint_every = steps
  s.base.eval_every = 0
  return s


def test_a_sweep_runs_and_aggregates_each_cost_over_its_seeds(tmp_path, monkeypatch):
  s = _tiny_sweep(tmp_path, 8)
  s.base.eval.episodes = 4
  s.base.eval.dev_episodes = 4
  s.costs, s.seeds = (-0.5, 0.5), 2
  s.variants = {"td": "switcher.target=td",
                "td_few": "switcher.target=td; seed=7; eval.baselines=('random_held',); "
                          "costs=(0.5,)"}
  out = str(tmp_path / "sweep")
  lines = []
  summary = sweep.run_sweep(s, out, log=lines.append)
  with open(os.path.join(out, "sweep.json")) as f:
    assert json.load(f) == json.loads(json.dumps(summary))
  assert os.path.exists(os.path.join(out, "report.md"))
  assert os.path.exists(os.path.join(out, "cost_quality.png"))
  with open(os.path.join(out, "td", "eval.json")) as f:
    methods = json.load(f)["methods"]
  for i, cost in enumerate(("-0.5", "0.5")):
    members = (2 * i, 2 * i + 1)
    entry = summary["variants"]["td"][cost]
    londi = [methods[f"londi_c{cost}_m{m}"] for m in members]
    assert entry["londi"]["success_rate"] == pytest.approx(
        np.mean([r["success_rate"] for r in londi]))
    # By hand: per episode (matched by seed), each seed's LONDI minus its own random_held
    # baseline, averaged over the two seeds.
    diffs = []
    for m, r in zip(members, londi):
      base = {e["seed"]: e["success"] for e in methods[f"random_held_c{cost}_m{m}"]["episodes"]}
      diffs.append([float(e["success"]) - float(base[e["seed"]]) for e in r["episodes"]])
    d = np.mean(diffs, axis=0)
    assert entry["vs_random_held"]["mean"] == pytest.approx(d.mean())
    assert entry["vs_random_held"]["seed_means"] == pytest.approx(np.mean(diffs, axis=1))
    # Each member on its own: its mean difference and the 95% normal interval of its episodes.
    assert [e["member"] for e in entry["members"]] == list(members)
    for e, r, dm in zip(entry["members"], londi, diffs):
      assert e["calls"] == r["large_call_fraction"] and e["quality"] == r["success_rate"]
      held = methods[f"random_held_c{cost}_m{e['member']}"]
      assert e["vs_random_held"]["mean"] == pytest.approx(np.mean(dm))
      assert e["vs_random_held"]["ci95"] == pytest.approx(
          1.96 * np.std(dm, ddof=1) / np.sqrt(len(dm)), rel=1e-3, nan_ok=True)
      assert e["vs_random_held"]["calls"] == held["large_call_fraction"]
  with open(os.path.join(out, "report.md")) as f:
    report = f.read()
  assert "## Per member (td, c = 0.5)" in report and "## Per member (td_few, c = 0.5)" in report
  # A later variant (another training seed) copies the references (same policies and episodes)
  # instead of playing them, and plays only the baselines it names.
  assert sum("copied from the reference evaluation" in line for line in lines) == 3
  with open(os.path.join(out, "td_few", "eval.json")) as f:
    few = json.load(f)["methods"]
  for name in ("small_only", "large_only", "disagreement"):
    assert few[name] == methods[name]
  # ... at its own cost only.
  assert sorted(n.rsplit("_c", 1)[0] for n in few) == sorted(
      ["small_only", "large_only", "disagreement"] + ["londi", "random_held"] * 2)
  assert list(summary["variants"]["td_few"]) == ["0.5"] and summary["costs"] == [-0.5, 0.5]
  assert summary["variants"]["td_few"]["0.5"].keys() >= {"vs_random_held", "vs_large_only"}
  assert "vs_schedule" not in summary["variants"]["td_few"]["0.5"]
  # A rerun keeps the finished training and evaluation.
  mtime = os.path.getmtime(os.path.join(out, "td", "eval.json"))
  assert sweep.run_sweep(s, out, log=None) == summary
  assert os.path.getmtime(os.path.join(out, "td", "eval.json")) == mtime
  # `only` runs the variants it names; one not yet evaluated and not named is left out.
  s.variants["td_later"] = "switcher.target=td; seed=9"
  lines = []
  assert sweep.run_sweep(s, out, log=lines.append, only=["td_few"]) == summary
  assert not os.path.exists(os.path.join(out, "td_later"))
  assert any("td_later: not evaluated yet" in line for line in lines)
  with pytest.raises(ValueError, match="td_fwe"):
    sweep.run_sweep(s, out, log=None, only=["td_fwe"])
  # An evaluation another process finishes while this one runs enters this one's report.
  train = sweep.train

  def train_while_another_process_evaluates(config, run_dir, **kwargs):
    os.makedirs(os.path.join(out, "td_later"), exist_ok=True)
    shutil.copy(os.path.join(out, "td", "eval.json"), os.path.join(out, "td_later"))
    return train(config, run_dir, **kwargs)

  monkeypatch.setattr(sweep, "train", train_while_another_process_evaluates)
  later = sweep.run_sweep(s, out, log=None, only=["td_few"])
  assert later["variants"]["td_later"] == summary["variants"]["td"]


def test_an_unknown_baseline_is_named(tmp_path):
  s = _tiny_sweep(tmp_path, 4)
  s.variants = {"td": "switcher.target=td; eval.baselines=('random_held', 'coin')"}
  with pytest.raises(ValueError, match="coin"):
    sweep.run_sweep(s, str(tmp_path / "sweep"), log=None)
