"""`launch.pretrain` for ScienceWorld: a small and a large policy cloned from gold paths.

    python -m launch.pretrain --config configs/pretrain.py:scienceworld --workdir DIR

Plays the simulator's gold path on each task's train variations (`envs.scienceworld.gold`, each
variation once), rebuilds every step's prompt in each policy's template
(`envs.scienceworld.prompts.episode_prompts`), builds a word-level tokenizer over the prompts and
candidates, clones each policy by a sampled softmax over its state's candidates
(`policies.bc_sampled`), and plays each on the tasks' test variations. Resumable like the
BabyAI-Text path: finished demonstrations, tokenizer, checkpoints and evaluations are reused.

    DIR/demos/<task>/            demos.jsonl + summary.json of each task
    DIR/tokenizer/               the shared word-level tokenizer
    DIR/<policy>/ckpt/           Orbax train-state checkpoints
    DIR/<policy>/policy/         the trained policy (`londi_jax.policies.load_policy`)
    DIR/<policy>/eval.json       mean score and success on test variations, 95% intervals
    DIR/metrics.jsonl, DIR/summary.json
"""

from __future__ import annotations

import os
import time
import zlib

import jax
import ml_collections
import numpy as np

from londi_jax.envs.demo_files import DemoWriter, read_demos
from londi_jax.envs.scienceworld import gold
from londi_jax.envs.scienceworld.prompts import PromptConfig, episode_prompts
from londi_jax.policies import bc, bc_sampled
from londi_jax.policies.policy import Buckets, Policy
from londi_jax.policies.store import save_policy
from londi_jax.policies.tokenizer import Tokenizer
from londi_jax.training import pretrain_run
from londi_jax.training.metrics import MetricsWriter
from londi_jax.training.policy_eval import evaluate_policy


def log(msg: str) -> None:
  print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def collect_demos(config: ml_collections.ConfigDict, workdir: str) -> list[str]:
  """The demonstration folders: `config.demos.path`, or one per task under `workdir/demos/`."""
  if config.demos.path:
    return [config.demos.path]
  folders = []
  for env_id in config.levels:
    out = os.path.join(workdir, "demos", env_id.split("/", 1)[1])
    if not os.path.exists(os.path.join(out, "demos.jsonl")):
      log(f"demos {env_id}: playing gold paths of up to {config.demos.episodes_per_level} train "
          "variations")
      with DemoWriter(out) as writer:
        s = gold.collect(env_id, writer, episodes=config.demos.episodes_per_level,
                         seed=config.seed, split="train", distinct=True,
                         simplification=config.env_kwargs.simplification)
      log(f"demos {env_id}: {s['episodes']} episodes, gold success {s['success_rate']:.3f}, "
          f"{s['records']} steps, gold coverage {s['gold_coverage']:.4f}, candidates median "
          f"{s['candidates']['median']} max {s['candidates']['max']}")
    folders.append(out)
  return folders


def load_episodes(folders: list[str]) -> list[list[dict]]:
  """Every demonstration episode, grouped by `(env_id, episode)`, steps in order."""
  return bc.episodes_of(r for folder in folders for r in read_demos(folder))


def states_of(episodes: list[list[dict]], prompt_config: PromptConfig
              ) -> tuple[list[str], list[str], list[list[str]]]:
  """Prompts, expert actions and candidates of every step whose gold action is a candidate."""
  prompts, actions, candidates = [], [], []
  for ep in episodes:
    for r, prompt in zip(ep, episode_prompts(ep, prompt_config)):
      if r["action"] in r["valid_actions"]:
        prompts.append(prompt)
        actions.append(r["action"])
        candidates.append(r["valid_actions"])
  return prompts, actions, candidates


def _split(episodes: list, config: ml_collections.ConfigDict) -> dict[str, list]:
  order = np.random.default_rng(config.seed).permutation(len(episodes))
  n_val = max(1, int(len(episodes) * config.demos.val_fraction))
  return {"train": [episodes[i] for i in order[n_val:]],
          "val": [episodes[i] for i in order[:n_val]]}


def train_policy(name: str, p: ml_collections.ConfigDict, config: ml_collections.ConfigDict,
                 episodes: list, tokenizer: Tokenizer, workdir: str,
                 metrics: MetricsWriter) -> Policy:
  """Clones the gold paths into one policy; resumes from its latest checkpoint."""
  prompt_config = PromptConfig(**p.prompt.to_dict())
  sets = {split: bc_sampled.make_states(tokenizer, *states_of(eps, prompt_config),
                                        p.max_prompt_tokens, p.max_candidate_tokens)
          for split, eps in _split(episodes, config).items()}
  train, val = sets["train"], sets["val"]
  longest = max(len(c) for cands in train.cand_ids for c in cands)
  cand_len = max(2, bc.round_up(longest, 4))
  buckets = tuple(sorted({*config.length_buckets, p.max_prompt_tokens}))
  log(f"{name}: {train.size} training states, {val.size} validation states; prompts up to "
      f"{max(len(x) for x in train.prompt_ids)} tokens, candidates up to {longest}")

  model, optimizer, state, manager = pretrain_run.initial_state(name, p, config.seed, tokenizer,
                                                                workdir, log)
  train_step = jax.jit(bc_sampled.make_batch_train_step(model, optimizer), donate_argnums=0)
  meta = {"name": name, "prompt": p.prompt.to_dict(), "levels": list(config.levels),
          "steps": p.steps, "max_candidate_tokens": p.max_candidate_tokens,
          "eval_mode": config.eval.mode}
  policy = Policy(model, state.params, tokenizer, temperature=config.eval.temperature,
                  seed=config.seed, buckets=Buckets(batch=(16, config.eval.num_envs),
                                                    prompt=buckets), meta=meta)
  val_sample = val.head(config.val_states)
  start, tick = int(state.step), time.time()
  for step in range(start, p.steps):
    rng = np.random.default_rng([config.seed, zlib.crc32(name.encode()), step])
    batch, offsets = bc_sampled.sample_batch(train, rng, p.batch_size, p.num_candidates, buckets,
                                             cand_len, tokenizer.pad_id)
    state, m = train_step(state, batch, offsets)
    done = step + 1
    if done % config.log_every == 0 or done == p.steps:
      m = jax.device_get(m)
      rate = config.log_every / (time.time() - tick)
      policy.params = state.params
      val_acc = bc_sampled.full_accuracy(policy, val_sample)
      tick = time.time()
      log(f"{name} step {done}/{p.steps}: loss {m['loss']:.4f} sampled acc "
          f"{m['accuracy']:.3f} | val acc over all candidates {val_acc:.3f} | {rate:.2f} steps/s, "
          f"ETA {(p.steps - done) / rate / 60:.1f} min")
      metrics.write({"kind": "train", "policy": name, "step": done, "loss": float(m["loss"]),
                     "accuracy": float(m["accuracy"]), "steps_per_s": rate})
      metrics.write({"kind": "val", "policy": name, "step": done, "accuracy": val_acc})
    if done % config.checkpoint_every == 0 or done == p.steps:
      pretrain_run.save_checkpoint(manager, done, state)
  policy.params = state.params
  meta.update(train_accuracy=bc_sampled.full_accuracy(policy, train.head(config.val_states)),
              val_accuracy=bc_sampled.full_accuracy(policy, val))
  policy.meta = meta
  folder = os.path.join(workdir, name, "policy")
  save_policy(folder, model.config, state.params, tokenizer, temperature=config.eval.temperature,
              meta=meta)
  log(f"{name}: saved to {folder} (accuracy over all candidates: train "
      f"{meta['train_accuracy']:.3f}, val {meta['val_accuracy']:.3f})")
  return policy


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Everything `launch.pretrain` does for the ScienceWorld family; returns its summary."""
  workdir, metrics = pretrain_run.start(config, workdir)
  episodes = load_episodes(collect_demos(config, workdir))
  log(f"{len(episodes)} gold-path episodes over {len(config.levels)} tasks")

  def texts() -> list[str]:
    out = sorted({a for ep in episodes for r in ep for a in r["valid_actions"]})
    for p in config.policies.values():
      out += states_of(episodes, PromptConfig(**p.prompt.to_dict()))[0]
    return out

  tokenizer = pretrain_run.shared_tokenizer(workdir, texts)
  log(f"tokenizer: {tokenizer.vocab_size} words")
  env_kwargs = config.env_kwargs.to_dict()

  def train_and_play(name: str, p: ml_collections.ConfigDict) -> tuple[Policy, dict]:
    policy = train_policy(name, p, config, episodes, tokenizer, workdir, metrics)
    log(f"{name}: playing {config.eval.episodes} test variations ({config.eval.mode})")
    finished = []

    def progress(n: int) -> None:
      finished.append(n)
      if len(finished) % 20 == 0:
        log(f"{name}: {len(finished)}/{config.eval.episodes} test episodes played")

    return policy, evaluate_policy(
        policy, p.prompt.to_dict(), config.levels, config.eval.episodes, seed=config.seed,
        split="test", num_envs=config.eval.num_envs, mode=config.eval.mode, progress=progress,
        env_kwargs=env_kwargs)

  def describe(name: str, result: dict) -> str:
    lo, hi = result["score_ci95"]
    return (f"{name}: mean score {result['mean_score']:.1f} [{lo:.1f}, {hi:.1f}], success "
            f"{result['success_rate']:.3f} over {result['episodes']} test variations; "
            f"{result['flops_per_step']:.3g} FLOPs/step; per task "
            + ", ".join(f"{k.split('/')[-1]} {v['mean_score']:.1f}"
                        for k, v in result["per_level"].items()))

  return pretrain_run.train_and_evaluate_each(config, workdir, metrics, train_and_play, describe,
                                              "mean_score", "score_gap", log)
