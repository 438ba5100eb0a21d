"""What every family's `launch.pretrain` shares: the run folder, the shared word tokenizer, and
training then evaluating each policy once, resumable, into `summary.json`."""

from __future__ import annotations

import json
import os
import zlib
from typing import Any, Callable, Iterable

import jax
import jax.numpy as jnp
import ml_collections
import optax
import orbax.checkpoint as ocp

from londi_jax.policies import bc
from londi_jax.policies.policy import Policy
from londi_jax.policies.tokenizer import Tokenizer, build_word_tokenizer
from londi_jax.training.metrics import MetricsWriter


def start(config: ml_collections.ConfigDict, workdir: str) -> tuple[str, MetricsWriter]:
  """Creates the run folder, writes its `config.json`; returns its absolute path and the
  `metrics.jsonl` writer."""
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2))
  return workdir, MetricsWriter(os.path.join(workdir, "metrics.jsonl"))


def shared_tokenizer(workdir: str, texts: Callable[[], Iterable[str]]) -> Tokenizer:
  """`workdir/tokenizer`, or a word-level tokenizer over `texts()` saved there."""
  folder = os.path.join(workdir, "tokenizer")
  if os.path.exists(os.path.join(folder, "tokenizer.json")):
    return Tokenizer.load(folder)
  tokenizer = build_word_tokenizer(texts())
  tokenizer.save(folder)
  return tokenizer


def policy_key(seed: int, name: str) -> jax.Array:
  """The PRNG key of policy `name`'s training: crc32, not hash(), whose value for a string
  changes between processes (and so would the initialisation)."""
  return jax.random.fold_in(jax.random.key(seed), zlib.crc32(name.encode()) % (2 ** 31))


def initial_state(name: str, p: ml_collections.ConfigDict, seed: int, tokenizer: Tokenizer,
                  workdir: str, log: Callable[[str], None]
                  ) -> tuple[bc.Model, optax.GradientTransformation, bc.TrainState,
                             ocp.CheckpointManager]:
  """Policy `name`'s model (`bc.initial_model`), optimiser and train state, restored from the
  latest checkpoint of `workdir/<name>/ckpt` when there is one, and that checkpoint manager."""
  key = jax.random.fold_in(policy_key(seed, name), 0)
  model, params = bc.initial_model(p.checkpoint, p.model.to_dict(), tokenizer, key)
  log(f"{name}: {model.config.num_params():,} params, {model.config.num_layers} layers, "
      f"d={model.config.hidden_size}")
  optimizer = bc.make_optimizer(p.lr, p.steps, p.warmup, weight_decay=p.weight_decay)
  state = bc.TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32))
  manager = ocp.CheckpointManager(
      os.path.join(workdir, name, "ckpt"),
      options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True))
  if manager.latest_step() is not None:
    state = manager.restore(manager.latest_step(), args=ocp.args.StandardRestore(state))
    log(f"{name}: resumed at step {int(state.step)}")
  return model, optimizer, state, manager


def save_checkpoint(manager: ocp.CheckpointManager, step: int, state: bc.TrainState) -> None:
  """Saves `state` and waits for it: a run killed later always finds the checkpoint whole."""
  manager.save(step, args=ocp.args.StandardSave(state))
  manager.wait_until_finished()


def compare_pair(summary: dict[str, Any], metric: str, gap_key: str) -> str | None:
  """Adds `flops_ratio_large_to_small` and the large policy's lead in `metric` (`success_rate`
  or `mean_score`) as `gap_key` to a pretraining summary once both policies are evaluated;
  returns a line saying both (None before)."""
  pols = summary["policies"]
  if "small" not in pols or "large" not in pols:
    return None
  ratio = pols["large"]["flops_per_step"] / pols["small"]["flops_per_step"]
  gap = pols["large"][metric] - pols["small"][metric]
  summary["flops_ratio_large_to_small"] = ratio
  summary[gap_key] = gap
  return f"large/small FLOPs per step: {ratio:.1f}x; {metric} gap {gap:.3g}"


def train_and_evaluate_each(
    config: ml_collections.ConfigDict, workdir: str, metrics: MetricsWriter,
    train_and_play: Callable[[str, ml_collections.ConfigDict], tuple[Policy, dict]],
    describe: Callable[[str, dict], str], metric: str, gap_key: str,
    log: Callable[[str], None]) -> dict:
  """Each policy of `config.policies`: its `eval.json` when it has one, else
  `train_and_play(name, p) -> (policy, evaluation)`, recorded with the policy's size and
  accuracies in `metrics.jsonl` and `<name>/eval.json`; then `compare_pair` and `summary.json`.

  Args:
    describe: `describe(name, evaluation)`, the line logged after an evaluation.
    metric, gap_key: of `compare_pair`.

  Returns:
    The summary written: `levels`, `eval_mode`, `policies` (each evaluation) and the pair's
    comparison.
  """
  summary = {"levels": list(config.levels), "eval_mode": config.eval.mode, "policies": {}}
  for name, p in config.policies.items():
    eval_path = os.path.join(workdir, name, "eval.json")
    if os.path.exists(eval_path):
      with open(eval_path) as f:
        summary["policies"][name] = json.load(f)
      log(f"{name}: already trained and evaluated")
      continue
    policy, result = train_and_play(name, p)
    result.update(params=policy.config.num_params(), train_accuracy=policy.meta["train_accuracy"],
                  val_accuracy=policy.meta["val_accuracy"])
    metrics.write({"kind": "eval", "policy": name, **result})
    with open(eval_path, "w") as f:
      json.dump(result, f, indent=2)
    log(describe(name, result))
    summary["policies"][name] = result
  line = compare_pair(summary, metric, gap_key)
  if line:
    log(line)
  with open(os.path.join(workdir, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
  return summary
