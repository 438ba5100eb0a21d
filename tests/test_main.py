"""launch.main end to end on the smoke preset (as a subprocess), then launch.inspect on its run.

The smoke preset pre-trains tiny policies first (`configs/pretrain.py:smoke`, minutes on a busy
machine); here the policies are tiny untrained ones written by the test, to keep the suite fast.
"""

import json
import os
import subprocess
import sys

import pytest

from londi_jax.training.fakes import make_tiny_policies

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args):
  return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True,
                        timeout=600)


@pytest.fixture(scope="module")
def main_run(tmp_path_factory):
  policies = make_tiny_policies(str(tmp_path_factory.mktemp("policies")))
  workdir = str(tmp_path_factory.mktemp("main"))
  proc = run("launch.main", "--config=configs/babyai_text.py:smoke",
             "--config.pretrain.enabled=False", f"--config.policies.dir={policies}",
             f"--workdir={workdir}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir, proc.stdout


def test_main_smoke_writes_report_plot_and_eval(main_run):
  workdir, stdout = main_run
  for name in ("report.md", "cost_quality.png", "eval.json", "metrics.jsonl", "config.json"):
    assert os.path.exists(os.path.join(workdir, name)), name
  with open(os.path.join(workdir, "cost_quality.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  with open(os.path.join(workdir, "eval.json")) as f:
    methods = json.load(f)["methods"]
  report = open(os.path.join(workdir, "report.md")).read()
  for name in methods:
    assert f"| {name} |" in report
  assert "cost_quality.png" in report
  assert "steps/s" in stdout and "report:" in stdout


def test_inspect_prints_the_checkpoint(main_run):
  workdir, _ = main_run
  proc = run("launch.inspect", workdir)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = proc.stdout
  assert "checkpoint: latest, step 40" in out
  assert "Dense_0/kernel: float32[2, " in out
  assert "lambda" in out and "latest metrics" in out


def test_inspect_of_a_folder_without_a_run_fails_clearly(tmp_path):
  proc = run("launch.inspect", str(tmp_path))
  assert proc.returncode != 0
  assert "no checkpoints" in proc.stderr
