"""Metrics as data: one JSON object per line in `DIR/metrics.jsonl` (`kind`, `step`, values), and
the same numbers as TensorBoard scalars in `DIR/tensorboard/` so a run can be watched live
(`tensorboard --logdir DIR/tensorboard`).

A record's numeric fields become scalars tagged `<kind>/<field>`; a record naming a `policy` puts
it in the tag (`train/small/loss`), and a `members` list gives one tag per member
(`train/member0/loss`). Reports are built from `metrics.jsonl`; the event files are for watching.
"""

from __future__ import annotations

import json
import numbers
import os
import time
from typing import Any, Iterator

TENSORBOARD_DIR = "tensorboard"
_NOT_SCALARS = ("kind", "step", "time", "policy", "members")


class MetricsWriter:
  """Appends records; `truncate(step)` drops records after a step (a resumed run rewrites them).

  Args:
    path: the `metrics.jsonl` file; event files go to `tensorboard/` beside it.
    tensorboard: also write TensorBoard event files.
  """

  def __init__(self, path: str, tensorboard: bool = True):
    self.path = path
    self.tensorboard = tensorboard
    self._events = None
    self._purge_step: int | None = None

  def write(self, record: dict) -> None:
    with open(self.path, "a") as f:
      f.write(json.dumps(dict(record, time=time.time())) + "\n")
    if self.tensorboard:
      events = self._event_writer()
      step = record.get("step")
      for tag, value in scalars(record):
        events.add_scalar(tag, value, global_step=step)
      events.flush()

  def truncate(self, step: int) -> None:
    """Keeps the records up to `step`; TensorBoard drops later events when the writer opens."""
    self._purge_step = step
    if not os.path.exists(self.path):
      return
    kept = [line for line in read_metrics(self.path) if line.get("step", 0) <= step]
    tmp = self.path + ".tmp"
    with open(tmp, "w") as f:
      for rec in kept:
        f.write(json.dumps(rec) + "\n")
    os.replace(tmp, self.path)

  def close(self) -> None:
    if self._events is not None:
      self._events.close()
      self._events = None

  def _event_writer(self):
    if self._events is None:
      import tensorboardX  # imported on first use: reading metrics needs no TensorBoard

      logdir = os.path.join(os.path.dirname(os.path.abspath(self.path)), TENSORBOARD_DIR)
      purge = None if self._purge_step is None else self._purge_step + 1
      self._events = tensorboardX.SummaryWriter(logdir, purge_step=purge)
    return self._events


def scalars(record: dict) -> Iterator[tuple[str, float]]:
  """The `(tag, value)` TensorBoard scalars of one record (see the module docstring)."""
  prefix = record.get("kind", "metrics")
  if isinstance(record.get("policy"), str):
    prefix += "/" + record["policy"]
  yield from _numeric(prefix, {k: v for k, v in record.items() if k not in _NOT_SCALARS})
  for k, member in enumerate(record.get("members") or []):
    yield from _numeric(f"{prefix}/member{k}", member)


def _numeric(prefix: str, values: dict[str, Any]) -> Iterator[tuple[str, float]]:
  for key, value in values.items():
    if isinstance(value, bool) or value is None:
      continue
    if isinstance(value, numbers.Real):
      yield f"{prefix}/{key}", float(value)
    elif isinstance(value, dict):
      yield from _numeric(f"{prefix}/{key}", value)


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
