"""Metrics go to `metrics.jsonl` and, as the same numbers, to TensorBoard event files."""

import json
import os
import struct

from tensorboardX.proto import event_pb2

from londi_jax.training.metrics import MetricsWriter, read_metrics, scalars


def _events(logdir):
  """Every `(tag, step, value)` scalar of the TFRecord event files in `logdir`."""
  out = []
  for name in sorted(os.listdir(logdir)):
    with open(os.path.join(logdir, name), "rb") as f:
      data = f.read()
    pos = 0
    while pos < len(data):
      (length,) = struct.unpack("<Q", data[pos:pos + 8])
      event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
      pos += 12 + length + 4
      out += [(v.tag, event.step, v.simple_value) for v in event.summary.value]
  return out


def test_scalars_are_tagged_by_kind_policy_and_member():
  record = {"kind": "train", "step": 10, "steps_per_s": 2.5, "ok": True, "name": "x",
            "members": [{"cost": 0.1, "loss": 0.5}, {"cost": 0.2, "loss": None}]}
  assert sorted(scalars(record)) == [("train/member0/cost", 0.1), ("train/member0/loss", 0.5),
                                     ("train/member1/cost", 0.2), ("train/steps_per_s", 2.5)]
  assert list(scalars({"kind": "val", "policy": "small", "step": 3, "loss": 1.0})) == [
      ("val/small/loss", 1.0)]


def test_records_reach_both_files_and_a_resume_drops_later_events(tmp_path):
  path = str(tmp_path / "metrics.jsonl")
  writer = MetricsWriter(path)
  for step in (1, 2, 3):
    writer.write({"kind": "train", "step": step, "members": [{"loss": float(step)}]})
  writer.close()
  assert [r["step"] for r in read_metrics(path)] == [1, 2, 3]
  logdir = str(tmp_path / "tensorboard")
  assert [(s, v) for tag, s, v in _events(logdir) if tag == "train/member0/loss"] == [
      (1, 1.0), (2, 2.0), (3, 3.0)]

  resumed = MetricsWriter(path)  # as a run resumed from its checkpoint at step 2
  resumed.truncate(2)
  resumed.write({"kind": "train", "step": 3, "members": [{"loss": 30.0}]})
  resumed.close()
  assert [json.loads(line)["members"][0]["loss"] for line in open(path)] == [1.0, 2.0, 30.0]
  # The purge marker makes TensorBoard discard the first run's step 3; the events still hold it,
  # followed by the resumed value.
  assert [(s, v) for tag, s, v in _events(logdir) if tag == "train/member0/loss"][-1] == (3, 30.0)
