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

import json
import os
import time
import zlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from londi_jax.envs.demo_files import DemoWriter, read_demos
from londi_jax.envs.scienceworld import gold
from londi_jax.envs.scienceworld.prompts import PromptConfig, episode_prompts
from londi_jax.policies import bc, bc_sampled
from londi_jax.policies.policy import Buckets, Policy
from londi_jax.policies.store import save_policy
from londi_jax.policies.tokenizer import Tokenizer, build_word_tokenizer
from londi_jax.training.metrics import MetricsWriter
from londi_jax.training.policy_eval import compare_pair, evaluate_policy


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

  key = jax.random.fold_in(jax.random.key(config.seed), zlib.crc32(name.encode()) % (2 ** 31))
  model, params = bc.initial_model(p.checkpoint, p.model.to_dict(), tokenizer,
                                   jax.random.fold_in(key, 0))
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
  train_step = jax.jit(bc_sampled.make_batch_train_step(model, optimizer), donate_argnums=0)
  meta = {"name": name, "prompt": p.prompt.to_dict(), "levels": list(config.levels),
          "steps": p.steps, "max_candidate_tokens": p.max_candidate_tokens,
          "eval_mode": config.eval.mode}
  policy = Policy(model, state.params, tokenizer, temperature=config.eval.temperature,
                  seed=config.seed, buckets=Buckets(batch=(16, config.eval.num_envs),
                                                    prompt=buckets), meta=meta)
  val_sample = bc_sampled.StateSet(val.prompt_ids[:config.val_states],
                                   val.cand_ids[:config.val_states],
                                   val.targets[:config.val_states])
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
      manager.save(done, args=ocp.args.StandardSave(state))
      manager.wait_until_finished()
  policy.params = state.params
  meta.update(train_accuracy=bc_sampled.full_accuracy(policy, bc_sampled.StateSet(
      train.prompt_ids[:config.val_states], train.cand_ids[:config.val_states],
      train.targets[:config.val_states])), val_accuracy=bc_sampled.full_accuracy(policy, val))
  policy.meta = meta
  folder = os.path.join(workdir, name, "policy")
  save_policy(folder, model.config, state.params, tokenizer, temperature=config.eval.temperature,
              meta=meta)
  log(f"{name}: saved to {folder} (accuracy over all candidates: train "
      f"{meta['train_accuracy']:.3f}, val {meta['val_accuracy']:.3f})")
  return policy


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Everything `launch.pretrain` does for the ScienceWorld family; returns its summary."""
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  metrics = MetricsWriter(os.path.join(workdir, "metrics.jsonl"))
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2))
  episodes = load_episodes(collect_demos(config, workdir))
  log(f"{len(episodes)} gold-path episodes over {len(config.levels)} tasks")

  tok_dir = os.path.join(workdir, "tokenizer")
  if os.path.exists(os.path.join(tok_dir, "tokenizer.json")):
    tokenizer = Tokenizer.load(tok_dir)
  else:
    texts = sorted({a for ep in episodes for r in ep for a in r["valid_actions"]})
    for p in config.policies.values():
      texts += states_of(episodes, PromptConfig(**p.prompt.to_dict()))[0]
    tokenizer = build_word_tokenizer(texts)
    tokenizer.save(tok_dir)
  log(f"tokenizer: {tokenizer.vocab_size} words")

  env_kwargs = config.env_kwargs.to_dict()
  summary = {"levels": list(config.levels), "eval_mode": config.eval.mode, "policies": {}}
  for name, p in config.policies.items():
    eval_path = os.path.join(workdir, name, "eval.json")
    if os.path.exists(eval_path):
      with open(eval_path) as f:
        summary["policies"][name] = json.load(f)
      log(f"{name}: already trained and evaluated")
      continue
    policy = train_policy(name, p, config, episodes, tokenizer, workdir, metrics)
    log(f"{name}: playing {config.eval.episodes} test variations ({config.eval.mode})")
    finished = []

    def progress(n: int, name=name) -> None:
      finished.append(n)
      if len(finished) % 20 == 0:
        log(f"{name}: {len(finished)}/{config.eval.episodes} test episodes played")

    result = evaluate_policy(policy, p.prompt.to_dict(), config.levels, config.eval.episodes,
                             seed=config.seed, split="test", num_envs=config.eval.num_envs,
                             mode=config.eval.mode, progress=progress, env_kwargs=env_kwargs)
    result.update(params=policy.config.num_params(), train_accuracy=policy.meta["train_accuracy"],
                  val_accuracy=policy.meta["val_accuracy"])
    metrics.write({"kind": "eval", "policy": name, **result})
    with open(eval_path, "w") as f:
      json.dump(result, f, indent=2)
    lo, hi = result["score_ci95"]
    log(f"{name}: mean score {result['mean_score']:.1f} [{lo:.1f}, {hi:.1f}], success "
        f"{result['success_rate']:.3f} over {result['episodes']} test variations; "
        f"{result['flops_per_step']:.3g} FLOPs/step; per task "
        + ", ".join(f"{k.split('/')[-1]} {v['mean_score']:.1f}"
                    for k, v in result["per_level"].items()))
    summary["policies"][name] = result
  line = compare_pair(summary, "mean_score", "score_gap")
  if line:
    log(line)
  with open(os.path.join(workdir, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
  return summary
