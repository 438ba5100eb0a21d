"""The demonstration file format shared by every environment family.

A demonstration folder holds `demos.jsonl`, one JSON record per line (one per expert step), and
`summary.json`. Every record has at least the keys of `REQUIRED_KEYS`:

    {"env_id": "babyai_text/BabyAI-GoToLocal-v0", "episode": 0, "step": 0,
     "prompt": "...", "action": "go forward", "valid_actions": ["turn left", ...], ...}

plus any family-specific keys (BabyAI-Text adds `mission`, `sentences`, `previous_actions`, ...),
so a training script can rebuild other prompt templates later. `DemoWriter` writes to a temporary
file renamed into place on a successful close, so a crashed run never leaves a half-written
`demos.jsonl`; `read_demos` streams the records back.
"""

from __future__ import annotations

import collections
import json
import os
import pathlib
import tempfile
from typing import Any, Iterator, Mapping

REQUIRED_KEYS = ("env_id", "episode", "step", "prompt", "action", "valid_actions")
DEMOS_FILE = "demos.jsonl"
SUMMARY_FILE = "summary.json"


class DemoWriter:
  """Writes demonstration records to `out_dir/demos.jsonl`, atomically.

  Use as a context manager:

      with DemoWriter(out_dir) as writer:
        writer.write({"env_id": ..., "episode": 0, "step": 0, "prompt": ..., "action": ...,
                      "valid_actions": [...]})
        writer.summary["expert_success"] = {...}

  On a normal exit the records are renamed to `demos.jsonl` and `summary.json` is written
  (the caller's `summary` entries plus `records`, `episodes` and `records_per_env`); on an
  exception the temporary file is removed and nothing is published.

  Attributes:
    out_dir: the output folder (created if missing).
    summary: free-form entries merged into `summary.json` on close.
    records_written: how many records were written so far.
  """

  def __init__(self, out_dir: str | os.PathLike[str]):
    self.out_dir = pathlib.Path(out_dir)
    self.out_dir.mkdir(parents=True, exist_ok=True)
    self.summary: dict[str, Any] = {}
    self.records_written = 0
    self._episodes: set[tuple[str, Any]] = set()
    self._per_env: collections.Counter[str] = collections.Counter()
    fd, self._tmp_path = tempfile.mkstemp(prefix=f".{DEMOS_FILE}.", suffix=".tmp",
                                          dir=self.out_dir)
    self._file = os.fdopen(fd, "w", encoding="utf-8")

  @property
  def path(self) -> pathlib.Path:
    """Where `demos.jsonl` appears once the writer is closed."""
    return self.out_dir / DEMOS_FILE

  def write(self, record: Mapping[str, Any]) -> None:
    """Appends one record (a JSON-serialisable mapping with at least `REQUIRED_KEYS`)."""
    missing = [key for key in REQUIRED_KEYS if key not in record]
    if missing:
      raise ValueError(f"demonstration record lacks {missing}; required keys are {REQUIRED_KEYS}")
    if self._file.closed:
      raise ValueError("DemoWriter is closed")
    self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
    self.records_written += 1
    self._episodes.add((record["env_id"], record["episode"]))
    self._per_env[record["env_id"]] += 1

  def close(self) -> None:
    """Publishes `demos.jsonl` and writes `summary.json`. Closing twice does nothing."""
    if self._file.closed:
      return
    self._file.flush()
    os.fsync(self._file.fileno())
    self._file.close()
    os.chmod(self._tmp_path, 0o644)  # mkstemp makes it private
    os.replace(self._tmp_path, self.path)
    summary = dict(self.summary)
    summary.update(records=self.records_written, episodes=len(self._episodes),
                   records_per_env=dict(self._per_env))
    _write_json_atomically(self.out_dir / SUMMARY_FILE, summary)

  def abort(self) -> None:
    """Drops what was written: removes the temporary file, publishes nothing."""
    if not self._file.closed:
      self._file.close()
    if os.path.exists(self._tmp_path):
      os.remove(self._tmp_path)

  def __enter__(self) -> DemoWriter:
    return self

  def __exit__(self, exc_type, exc, tb) -> None:
    if exc_type is None:
      self.close()
    else:
      self.abort()


def _write_json_atomically(path: pathlib.Path, data: Mapping[str, Any]) -> None:
  tmp = path.with_name(f".{path.name}.tmp")
  tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
  os.replace(tmp, path)


def read_demos(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
  """Streams the records of a demonstration file, one dict per line.

  Args:
    path: a `demos.jsonl` file, or the folder holding one.

  Yields:
    The records in the order they were written.
  """
  path = pathlib.Path(path)
  if path.is_dir():
    path = path / DEMOS_FILE
  with path.open(encoding="utf-8") as f:
    for line in f:
      if line.strip():
        yield json.loads(line)


def read_summary(out_dir: str | os.PathLike[str]) -> dict[str, Any]:
  """Reads `summary.json` of a demonstration folder."""
  return json.loads((pathlib.Path(out_dir) / SUMMARY_FILE).read_text(encoding="utf-8"))
