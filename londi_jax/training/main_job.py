"""The main job (`launch.main`): policies -> switchers at several costs -> evaluation -> report.

    DIR/pretrain/     the `launch.pretrain` workdir, when `config.pretrain.enabled`
    DIR/config.json, DIR/metrics.jsonl, DIR/checkpoints/   the training run (`launch.train`)
    DIR/eval.json     every method on the same episodes (`launch.evaluate`)
    DIR/report.md, DIR/cost_quality.png

Each stage resumes: pre-training is skipped when its summary exists, training resumes from its
latest checkpoint, evaluation and the report are redone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Callable

import ml_collections

from londi_jax.training.evaluate_run import evaluate_run
from londi_jax.training.lm import load_runners
from londi_jax.training.loop import train
from londi_jax.training.report import write_report


def pretrain(config: ml_collections.ConfigDict, workdir: str, log: Callable[[str], None]) -> str:
  """Runs `launch.pretrain` at `config.pretrain.preset` into `DIR/pretrain` (once)."""
  out = os.path.join(workdir, "pretrain")
  if os.path.exists(os.path.join(out, "summary.json")):
    log(f"policies already pre-trained in {out}")
    return out
  cmd = [sys.executable, "-m", "launch.pretrain",
         f"--config=configs/pretrain.py:{config.pretrain.preset}", f"--workdir={out}"]
  log("pre-training: " + " ".join(cmd[1:]))
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  subprocess.run(cmd, check=True, cwd=root)
  return out


def resolved(config: ml_collections.ConfigDict, policies_dir: str | None
             ) -> ml_collections.ConfigDict:
  """A copy of the config with references resolved and, if given, the policies folder set (the
  parsed config itself is never changed)."""
  config = config.copy_and_resolve_references()
  if policies_dir is not None:
    config.policies.dir = os.path.abspath(policies_dir)
    config.policies.small = config.policies.large = ""
  return config


def run_main(config: ml_collections.ConfigDict, workdir: str, command: str = "",
             log: Callable[[str], None] = print) -> str:
  """Everything `launch.main` does; returns the report's path."""
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  start = time.perf_counter()
  policies_dir = pretrain(config, workdir, log) if config.pretrain.enabled else None
  config = resolved(config, policies_dir)
  runners = load_runners(config)
  t0 = time.perf_counter()
  train(config, workdir, log=log, runners=runners)
  t1 = time.perf_counter()
  evaluate_run(workdir, runners=runners, log=log)
  t2 = time.perf_counter()
  path = write_report(workdir, command, extra={
      "training time": f"{t1 - t0:.0f} s", "evaluation time": f"{t2 - t1:.0f} s",
      "total time": f"{t2 - start:.0f} s"})
  log(f"report: {path}")
  return path
