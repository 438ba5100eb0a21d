"""A readable summary of a run's checkpoint from its own files only (`launch.inspect`): the
config and format version stored in the checkpoint, the step, the parameter tree with shapes, each
member's cost and multiplier, and the latest metrics record."""

from __future__ import annotations

import json
import os

import jax
import numpy as np

from londi_jax.training.checkpoint import read_raw
from londi_jax.training.metrics import read_metrics


def _tree_lines(tree, indent: str = "  ") -> list[str]:
  lines = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    name = "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
    arr = np.asarray(leaf)
    lines.append(f"{indent}{name}: {arr.dtype}{list(arr.shape)}")
  return lines


def inspect_run(workdir: str, which: str = "latest") -> str:
  """The summary text of the `which` (`latest` or `best`) checkpoint of `workdir`."""
  step, meta, state, host = read_raw(workdir, which)
  learner = state["learner"]
  costs = np.asarray(learner["cost"]).reshape(-1)
  lagrange = np.asarray(learner["lagrange"]).reshape(-1)
  updates = np.asarray(learner["step"]).reshape(-1)
  replay = state["replay"]
  lines = [f"run: {os.path.abspath(workdir)}",
           f"checkpoint: {which}, step {step} (format version {meta['format_version']})",
           f"members: {len(costs)}, phi dim {meta.get('feature_dim')}, "
           f"{len(host['rows']['rows'])} environment rows",
           "member  cost      lambda    updates  replay"]
  sizes = np.asarray(replay["size"]).reshape(-1)
  for k in range(len(costs)):
    lines.append(f"{k:>6d}  {costs[k]:<8.4g}  {lagrange[k]:<8.4g}  {int(updates[k]):>7d}  "
                 f"{int(sizes[k])}")
  lines.append("q_params (leading axis: members):")
  lines += _tree_lines(learner["q_params"])
  lines.append("config:")
  lines += ["  " + line for line in json.dumps(meta["config"], indent=2).splitlines()]
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  if os.path.exists(metrics_path):
    records = [r for r in read_metrics(metrics_path) if r.get("step", 0) <= step]
    if records:
      lines.append("latest metrics:")
      lines.append("  " + json.dumps(records[-1]))
  return "\n".join(lines)
