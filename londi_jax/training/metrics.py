"""Metrics as data: one JSON object per line in `DIR/metrics.jsonl` (`kind`, `step`, values)."""

from __future__ import annotations

import json
import os
import time


class MetricsWriter:
  """Appends records; `truncate(step)` drops records after a step (a resumed run rewrites them)."""

  def __init__(self, path: str):
    self.path = path

  def write(self, record: dict) -> None:
    with open(self.path, "a") as f:
      f.write(json.dumps(dict(record, time=time.time())) + "\n")

  def truncate(self, step: int) -> None:
    if not os.path.exists(self.path):
      return
    kept = [line for line in read_metrics(self.path) if line.get("step", 0) <= step]
    tmp = self.path + ".tmp"
    with open(tmp, "w") as f:
      for rec in kept:
        f.write(json.dumps(rec) + "\n")
    os.replace(tmp, self.path)


def read_metrics(path: str) -> list[dict]:
  """Every record of a metrics file (a torn last line, from a killed run, is skipped)."""
  out = []
  with open(path) as f:
    for line in f:
      try:
        out.append(json.loads(line))
      except json.JSONDecodeError:
        continue
  return out
