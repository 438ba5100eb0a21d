"""Checkpoints of a LONDI run: Orbax `CheckpointManager`s of the whole member state (learner,
replay, pending transitions) and the host state (environment rows as seeds and actions), with the
config and a format version beside them.

    DIR/config.json                 the run's config; a rerun must match it but for the sections
                                    it may change (`eval`, `runtime`, `envs`), which it rewrites
    DIR/checkpoints/<step>/state    every member's `MemberState` (Orbax `StandardSave`)
    DIR/checkpoints/<step>/host     environment rows, budgets, pending rewards (JSON)
    DIR/checkpoints/<step>/meta     format version, config, step, member costs, policy folders
    DIR/best/<step>/...             the same, for the best periodic evaluation so far

The latest `keep_checkpoints` are kept, plus the best. Orbax writes each step to a temporary
folder and renames it when complete, so an interrupted save never leaves a checkpoint that looks
finished; a missing or unreadable one raises `CheckpointError`.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

FORMAT_VERSION = 1
# Fields that may change between runs on one workdir: they do not affect training (a run may
# resume on other devices, processes or environment workers).
_UNCHECKED = ("eval", "runtime", "envs")
# Fields added after runs were saved, with the value that reproduces those runs: a saved config
# without one matches a current config that has it at this value.
_ADDED = {"features.memory": False, "features.progress": False,
          "switcher.paired.continuation_rate": 0.5, "switcher.flops_unit": 0.0,
          "env_kwargs.variation_stride": 1}


class CheckpointError(RuntimeError):
  """A checkpoint is missing, unreadable or of an incompatible run."""


def config_dict(config: ml_collections.ConfigDict) -> dict:
  """The config as plain JSON data (tuples become lists)."""
  return json.loads(config.to_json_best_effort())


def check_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Writes `DIR/config.json`, or checks that the one there describes the same run.

  The sections that do not change what is trained (`eval`, `runtime`, `envs`) may differ; a
  rerun writes its own, so the run is then evaluated as the latest config asks.

  Raises:
    ValueError: the workdir holds a run of a different config (names the differing fields).
  """
  path = os.path.join(workdir, "config.json")
  current = config_dict(config)
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f).get("config", {})
    diffs = sorted(_diff(saved, current, ""))
    if diffs:
      raise ValueError(
          f"workdir {workdir} holds a run of a different config (fields differ: "
          f"{', '.join(diffs)}); use a new --workdir or the same config to resume")
    if all(saved.get(k) == current.get(k) for k in _UNCHECKED):
      return
    current = dict(saved, **{k: current[k] for k in _UNCHECKED if k in current})
  os.makedirs(workdir, exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump({"format_version": FORMAT_VERSION, "config": current}, f, indent=2)
  os.replace(tmp, path)


def _diff(a: Any, b: Any, prefix: str):
  if isinstance(a, dict) and isinstance(b, dict):
    for k in set(a) | set(b):
      name = f"{prefix}{k}"
      if name in _UNCHECKED:
        continue
      if k not in a and name in _ADDED and b[k] == _ADDED[name]:
        continue
      if k not in a or k not in b:
        yield name
      else:
        yield from _diff(a[k], b[k], name + ".")
  elif a != b:
    yield prefix.rstrip(".")


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a run saved in `DIR/config.json`."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise CheckpointError(f"no run in {workdir}: {path} is missing")
  with open(path) as f:
    saved = json.load(f)
  if saved.get("format_version", 0) > FORMAT_VERSION:
    raise CheckpointError(f"{path} has format {saved['format_version']}, newer than "
                          f"{FORMAT_VERSION}")
  return ml_collections.ConfigDict(saved["config"])


class CheckpointStore:
  """The latest few checkpoints of a run and its best one."""

  def __init__(self, workdir: str, keep: int = 3, read_only: bool = False):
    self.workdir = os.path.abspath(workdir)
    # A save interrupted by a kill leaves a temporary folder, never a finished step; it is
    # removed when the run restarts.
    options = dict(create=not read_only, read_only=read_only,
                   cleanup_tmp_directories=not read_only)
    self.latest = ocp.CheckpointManager(
        os.path.join(self.workdir, "checkpoints"),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, **options))
    self.best = ocp.CheckpointManager(
        os.path.join(self.workdir, "best"),
        options=ocp.CheckpointManagerOptions(max_to_keep=1, best_fn=lambda m: m["score"],
                                             best_mode="max", **options))

  def latest_step(self) -> int | None:
    return self.latest.latest_step()

  def save(self, step: int, state, host: dict, meta: dict, score: float | None = None) -> None:
    """Saves asynchronously (`wait` before reading it back or exiting)."""
    args = ocp.args.Composite(
        state=ocp.args.StandardSave(state), host=ocp.args.JsonSave(host),
        meta=ocp.args.JsonSave(dict(meta, format_version=FORMAT_VERSION, step=step)))
    self.latest.save(step, args=args, force=True)
    if score is not None:
      if jax.process_count() > 1:
        # Orbax's multi-process saves synchronise on barriers named by step, which two
        # managers saving one step at once would share.
        self.latest.wait_until_finished()
      self.best.save(step, args=args, metrics={"score": float(score)}, force=True)

  def restore(self, abstract_state, which: str = "latest", step: int | None = None):
    """`(state, host, meta)` of a checkpoint (`which` is `latest` or `best`).

    Raises:
      CheckpointError: there is no checkpoint, or it cannot be read.
    """
    manager = self._manager(which)
    step = manager.latest_step() if step is None else step
    if which == "best" and step is None:
      step = manager.best_step()
    if step is None:
      raise CheckpointError(f"no {which} checkpoint in {manager.directory}")
    try:
      out = manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state), host=ocp.args.JsonRestore(),
          meta=ocp.args.JsonRestore()))
    except Exception as e:  # Orbax raises many kinds; name the checkpoint and the cause.
      raise CheckpointError(f"checkpoint {manager.directory}/{step} is unreadable "
                            f"(corrupt or incomplete): {type(e).__name__}: {e}") from e
    _check_meta(out.meta, f"{manager.directory}/{step}")
    return out.state, out.host, out.meta

  def _manager(self, which: str):
    if which not in ("latest", "best"):
      raise ValueError(f"checkpoint must be 'latest' or 'best', got {which!r}")
    return self.latest if which == "latest" else self.best

  def wait(self) -> None:
    self.latest.wait_until_finished()
    self.best.wait_until_finished()

  def close(self) -> None:
    self.latest.close()
    self.best.close()


def _check_meta(meta: Any, where: str) -> None:
  if not isinstance(meta, dict) or "format_version" not in meta:
    raise CheckpointError(f"checkpoint {where} has no format version; it is corrupt")
  if meta["format_version"] > FORMAT_VERSION:
    raise CheckpointError(f"checkpoint {where} has format {meta['format_version']}, newer than "
                          f"{FORMAT_VERSION}")


def read_raw(workdir: str, which: str = "latest") -> tuple[int, dict, Any, dict]:
  """`(step, meta, state, host)` of a checkpoint from its own files only: the state comes back
  as nested dicts of numpy arrays, without the code that defined its structure.

  Raises:
    CheckpointError: there is no checkpoint, or it cannot be read.
  """
  folder = os.path.join(os.path.abspath(workdir), "checkpoints" if which == "latest" else "best")
  if not os.path.isdir(folder):
    raise CheckpointError(f"no checkpoints in {workdir} ({folder} is missing)")
  steps = sorted(int(d) for d in os.listdir(folder) if d.isdigit())
  if not steps:
    raise CheckpointError(f"no checkpoints in {folder}")
  step = steps[-1]
  path = os.path.join(folder, str(step))
  try:
    with open(os.path.join(path, "meta", "metadata")) as f:
      meta = json.load(f)
    with open(os.path.join(path, "host", "metadata")) as f:
      host = json.load(f)
    state = ocp.StandardCheckpointer().restore(os.path.join(path, "state"))
  except Exception as e:
    raise CheckpointError(f"checkpoint {path} is unreadable (corrupt or incomplete): "
                          f"{type(e).__name__}: {e}") from e
  _check_meta(meta, path)
  return step, meta, jax.tree_util.tree_map(lambda x: x, state), host
