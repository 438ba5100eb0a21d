"""Behaviour cloning of a small and a large LM policy on expert demonstrations.

    python -m launch.pretrain --config configs/pretrain.py:babyai_text --workdir DIR
    python -m launch.pretrain --config configs/pretrain.py:scienceworld --workdir DIR

The ScienceWorld family (gold paths, per-state candidates) is `launch.pretrain_scienceworld`;
what follows describes BabyAI-Text.

Collects (or reads, `--config.demos.path`) BabyAI-Text demonstrations, builds a word-level
tokenizer from their text, trains each policy of `config.policies` by cross-entropy of the
expert's action under the candidate distribution, and measures its success rate on held-out
seeds. Resumable: rerun the same command and it continues from the latest Orbax checkpoint.

    DIR/demos/                   demos.jsonl + summary.json
    DIR/tokenizer/               the shared word-level tokenizer
    DIR/<policy>/ckpt/           Orbax train-state checkpoints (params, optimiser, step)
    DIR/<policy>/policy/         the trained policy; `londi_jax.policies.load_policy` reads it
    DIR/<policy>/eval.json       success rate with its 95% interval, FLOPs per step
    DIR/metrics.jsonl            train, validation and evaluation metrics (and DIR/tensorboard/)
    DIR/summary.json             both evaluations and the FLOPs ratio
"""

from __future__ import annotations

import os
import time

from absl import app, flags, logging
import jax
import numpy as np
from ml_collections import config_flags
import ml_collections

from londi_jax.envs.demo_files import DemoWriter, read_demos
from londi_jax.envs.babyai import expert as babyai_expert
from londi_jax.envs.babyai.env import ACTIONS
from londi_jax.envs.babyai.prompts import PromptConfig, compact_sentence
from londi_jax.policies import bc
from londi_jax.policies.policy import Buckets, Policy
from londi_jax.policies.store import save_policy
from londi_jax.policies.tokenizer import Tokenizer
from londi_jax.training import pretrain_run
from londi_jax.training.metrics import MetricsWriter
from londi_jax.training.policy_eval import evaluate_policy

_CONFIG = config_flags.DEFINE_config_file("config", "configs/pretrain.py:babyai_text",
                                          "behaviour-cloning config", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "output folder", required=True)

_COLORS = ("red", "green", "blue", "purple", "yellow", "grey")
_OBJECTS = ("ball", "box", "key")


def log(msg: str) -> None:
  print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def collect_demos(config: ml_collections.ConfigDict, workdir: str) -> str:
  """The demonstration folder: `config.demos.path`, or the bot's episodes under `workdir`."""
  if config.demos.path:
    return config.demos.path
  out = os.path.join(workdir, "demos")
  if os.path.exists(os.path.join(out, "demos.jsonl")):
    return out
  with DemoWriter(out) as writer:
    for env_id in config.levels:
      s = babyai_expert.collect(env_id, writer, episodes=config.demos.episodes_per_level,
                               seed=config.seed, split="train")
      log(f"demos {env_id}: {s['episodes']} episodes, expert success {s['success_rate']:.3f}, "
          f"{s['records']} steps")
  return out


def vocabulary_texts(prompts: list[str]) -> list[str]:
  """Demonstration prompts plus every compact object and position word, so held-out episodes
  meet no unknown word."""
  words = [f"{c}_{o}" for c in _COLORS for o in _OBJECTS]
  words += [f"{s}_{c}_door" for s in ("open", "closed", "locked") for c in _COLORS]
  where = [f"f{y}" for y in range(1, 7)] + [f"{s}{x}" for s in "lr" for x in range(1, 4)]
  where += [f"{s}{x}f{y}" for s in "lr" for x in range(1, 4) for y in range(1, 7)]
  return prompts + [" ".join(words + where), " ".join(ACTIONS),
                    compact_sentence("You see a wall 1 step forward")]


def check_checkpoints(config: ml_collections.ConfigDict) -> None:
  """Fails early, naming the field to set, when a policy's `checkpoint` is not a checkpoint folder
  (the `paper` presets hold placeholders)."""
  unset = {f"policies.{name}.checkpoint": p.checkpoint for name, p in config.policies.items()
           if p.checkpoint and not os.path.exists(os.path.join(p.checkpoint, "config.json"))}
  if unset:
    raise FileNotFoundError(
        "no Hugging Face checkpoint folder (config.json, *.safetensors, tokenizer) at "
        + ", ".join(f"{field} = {folder!r}" for field, folder in unset.items()) + "; set "
        + " and ".join(f"--config.{field}" for field in unset))


def evaluate_sets(evaluate, params, sets: list) -> dict[str, float]:
  """Loss and accuracy over several datasets, weighted by their sizes."""
  n = sum(d.size for d in sets)
  out = [jax.device_get(evaluate(params, d)) for d in sets]
  return {k: float(sum(o[k] * d.size for o, d in zip(out, sets)) / n) for k in ("loss", "accuracy")}


def train_policy(name: str, p: ml_collections.ConfigDict, config: ml_collections.ConfigDict,
                 episodes: list, tokenizer: Tokenizer, workdir: str, metrics: MetricsWriter) -> Policy:
  """Clones the expert into one policy; resumes from its latest checkpoint."""
  prompt_config = PromptConfig(**p.prompt.to_dict())
  n_val = max(1, int(len(episodes) * config.demos.val_fraction))
  episodes = [episodes[i] for i in np.random.default_rng(config.seed).permutation(len(episodes))]
  sets = {}
  for split, eps in (("train", episodes[n_val:]), ("val", episodes[:n_val])):
    prompts, actions, candidates = bc.prompts_and_actions(eps, prompt_config)
    sets[split] = bc.make_dataset(tokenizer, prompts, actions, candidates, p.max_prompt_tokens,
                                  config.length_buckets)
  sizes = np.array([d.size for d in sets["train"]])
  log(f"{name}: {sizes.sum()} training states in prompt-length buckets "
      f"{[(d.prompt_ids.shape[1], d.size) for d in sets['train']]}; "
      f"{sum(d.size for d in sets['val'])} validation states")

  model, optimizer, state, manager = pretrain_run.initial_state(name, p, config.seed, tokenizer,
                                                                workdir, log)
  train_step = jax.jit(bc.make_train_step(model, optimizer, p.batch_size), donate_argnums=0)
  evaluate = jax.jit(bc.make_eval_fn(model, p.batch_size))
  data_key = jax.random.fold_in(pretrain_run.policy_key(config.seed, name), 1)
  start, tick = int(state.step), time.time()
  for step in range(start, p.steps):
    bucket = np.random.default_rng([config.seed, step]).choice(len(sizes), p=sizes / sizes.sum())
    state, m = train_step(state, sets["train"][bucket], data_key)
    done = step + 1
    if done % config.log_every == 0 or done == p.steps:
      m = jax.device_get(m)
      rate = config.log_every / (time.time() - tick)
      tick = time.time()
      val = evaluate_sets(evaluate, state.params, sets["val"])
      log(f"{name} step {done}/{p.steps}: loss {m['loss']:.4f} acc {m['accuracy']:.3f} | val "
          f"loss {val['loss']:.4f} acc {val['accuracy']:.3f} | {rate:.2f} steps/s, ETA "
          f"{(p.steps - done) / rate / 60:.1f} min")
      metrics.write({"kind": "train", "policy": name, "step": done, "loss": float(m["loss"]),
                     "accuracy": float(m["accuracy"]), "steps_per_s": rate})
      metrics.write({"kind": "val", "policy": name, "step": done, "loss": float(val["loss"]),
                     "accuracy": float(val["accuracy"])})
    if done % config.checkpoint_every == 0 or done == p.steps:
      pretrain_run.save_checkpoint(manager, done, state)
  train_acc = evaluate_sets(evaluate, state.params, [
      d.replace(prompt_ids=d.prompt_ids[:1024], prompt_mask=d.prompt_mask[:1024],
                targets=d.targets[:1024]) for d in sets["train"]])
  val = evaluate_sets(evaluate, state.params, sets["val"])
  meta = {"name": name, "prompt": p.prompt.to_dict(), "levels": list(config.levels),
          "steps": p.steps, "train_accuracy": float(train_acc["accuracy"]),
          "val_accuracy": float(val["accuracy"]), "eval_mode": config.eval.mode}
  folder = os.path.join(workdir, name, "policy")
  save_policy(folder, model.config, state.params, tokenizer, temperature=config.eval.temperature,
              meta=meta)
  log(f"{name}: saved to {folder} (train acc {meta['train_accuracy']:.3f}, val acc "
      f"{meta['val_accuracy']:.3f})")
  return Policy(model, state.params, tokenizer, temperature=config.eval.temperature,
                seed=config.seed, meta=meta, buckets=Buckets(batch=(config.eval.num_envs,)))


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Everything the command does; returns the summary it writes."""
  check_checkpoints(config)
  family = config.get("family", "babyai_text")
  if family == "scienceworld":
    from launch import pretrain_scienceworld  # pylint: disable=import-outside-toplevel
    return pretrain_scienceworld.run(config, workdir)
  if family != "babyai_text":
    raise ValueError(f"config.family must be babyai_text or scienceworld, got {family!r}")
  workdir, metrics = pretrain_run.start(config, workdir)
  demo_dir = collect_demos(config, workdir)
  episodes = bc.episodes_of(read_demos(os.path.join(demo_dir, "demos.jsonl")))
  log(f"{len(episodes)} demonstration episodes from {demo_dir}")

  def texts() -> list[str]:
    prompts = []
    for p in config.policies.values():
      prompts += bc.prompts_and_actions(episodes, PromptConfig(**p.prompt.to_dict()))[0]
    return vocabulary_texts(prompts)

  tokenizer = pretrain_run.shared_tokenizer(workdir, texts)
  log(f"tokenizer: {tokenizer.vocab_size} words")

  def train_and_play(name: str, p: ml_collections.ConfigDict) -> tuple[Policy, dict]:
    tok = Tokenizer.load(p.checkpoint) if p.checkpoint else tokenizer
    policy = train_policy(name, p, config, episodes, tok, workdir, metrics)
    log(f"{name}: evaluating on {config.eval.episodes} held-out episodes ({config.eval.mode})")
    return policy, evaluate_policy(policy, PromptConfig(**p.prompt.to_dict()), config.levels,
                                   config.eval.episodes, seed=config.seed, split="test",
                                   num_envs=config.eval.num_envs, mode=config.eval.mode)

  def describe(name: str, result: dict) -> str:
    lo, hi = result["ci95"]
    return (f"{name}: success {result['success_rate']:.3f} [{lo:.3f}, {hi:.3f}] over "
            f"{result['episodes']} episodes; {result['flops_per_step']:.3g} FLOPs/step; per level "
            + ", ".join(f"{k.split('/')[-1]} {v['success_rate']:.3f}"
                        for k, v in result["per_level"].items()))

  return pretrain_run.train_and_evaluate_each(config, workdir, metrics, train_and_play, describe,
                                              "success_rate", "success_gap", log)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  run(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
