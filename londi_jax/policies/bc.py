"""Behaviour cloning of an LM policy on expert demonstrations.

The loss is the cross-entropy of the expert's action under the candidate distribution that the
policy acts from (`scoring.make_candidate_scorer`, GLAM's action scoring, for a decoder or a T5
encoder-decoder alike):

    L = -E_(h, a*) [ log softmax_a( log p_theta(a | prompt(h)) )[a*] ]

BabyAI-Text demonstration records (`londi_jax.envs.demo_files`, `envs.babyai.expert`) carry each
step's `mission`, `sentences` and `action`, so the prompts are rebuilt here with the policy's own
BabyAI-Text template and history length (`envs.babyai.prompts.episode_prompts`).
"""

from __future__ import annotations

import collections
from typing import Any, Iterable, Mapping, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from londi_jax.envs.babyai.prompts import PromptConfig, episode_prompts
from londi_jax.gradients import gradient_step
from londi_jax.policies.checkpoint import load_pretrained, model_for, random_params
from londi_jax.policies.config import DecoderConfig, ModelConfig, T5Config
from londi_jax.policies.model import Decoder
from londi_jax.policies.scoring import TokenBatch, candidate_log_softmax, make_candidate_scorer
from londi_jax.policies.t5 import T5
from londi_jax.policies.tokenizer import Tokenizer

Model = Decoder | T5


@flax.struct.dataclass
class TrainState:
  """Everything that changes while cloning: params, optimiser state, step."""

  params: Any
  opt_state: Any
  step: jax.Array


@flax.struct.dataclass
class Dataset:
  """Tokenised demonstrations on device.

  Attributes:
    prompt_ids: [N, prompt_tokens] int32, right-padded.
    prompt_mask: [N, prompt_tokens] bool.
    targets: [N] int32, the expert's candidate index.
    cand_ids: [K, cand_tokens] int32, the candidates (the same in every state).
    cand_mask: [K, cand_tokens] bool.
  """

  prompt_ids: jax.Array
  prompt_mask: jax.Array
  targets: jax.Array
  cand_ids: jax.Array
  cand_mask: jax.Array

  @property
  def size(self) -> int:
    return self.targets.shape[0]


def episodes_of(records: Iterable[dict]) -> list[list[dict]]:
  """Groups demonstration records by `(env_id, episode)`, each in step order."""
  groups: dict[tuple, list[dict]] = collections.defaultdict(list)
  for r in records:
    groups[(r["env_id"], r["episode"])].append(r)
  return [sorted(g, key=lambda r: r["step"]) for _, g in sorted(groups.items())]


def prompts_and_actions(episodes: Sequence[Sequence[dict]], config: PromptConfig
                        ) -> tuple[list[str], list[str], tuple[str, ...]]:
  """Every step's prompt under `config`, the expert's action, and the candidate actions."""
  prompts, actions = [], []
  candidates = tuple(episodes[0][0]["valid_actions"])
  for ep in episodes:
    if any(tuple(r["valid_actions"]) != candidates for r in ep):
      raise ValueError("behaviour cloning here expects the same candidates in every state")
    acts = [r["action"] for r in ep]
    prompts += episode_prompts(ep[0]["mission"], [r["sentences"] for r in ep], acts, candidates,
                               config)
    actions += acts
  return prompts, actions, candidates


def round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


def model_config(spec: Mapping[str, Any], tokenizer: Tokenizer) -> ModelConfig:
  """The config of a new model for `tokenizer` (its vocabulary rounded up to a multiple of 8).

  Args:
    spec: a `configs/pretrain.py` `model`: `architecture` (`llama`, the default, or `t5`),
      `num_layers`, `hidden_size`, `num_heads`, `num_kv_heads`, `intermediate_size`, `rope_theta`,
      `tie_word_embeddings`. A `t5` model has `num_layers` blocks in each stack, heads of
      `hidden_size / num_heads`, `intermediate_size` as `d_ff`, the `feed_forward_proj` of `spec`
      (default `gated-gelu`), and the original T5 head (tied, output scaled) when
      `tie_word_embeddings`, else the T5 v1.1 one; `num_kv_heads` and `rope_theta` are unused.
    tokenizer: the tokenizer the model reads.
  """
  vocab_size = round_up(tokenizer.vocab_size, 8)
  head_dim = spec["hidden_size"] // spec["num_heads"]
  architecture = spec.get("architecture", "llama")
  if architecture == "t5":
    eos = tokenizer.hf.eos_token_id
    return T5Config(
        vocab_size=vocab_size, d_model=spec["hidden_size"], d_kv=head_dim,
        d_ff=spec["intermediate_size"], num_layers=spec["num_layers"],
        num_decoder_layers=spec["num_layers"], num_heads=spec["num_heads"],
        feed_forward_proj=spec.get("feed_forward_proj", "gated-gelu"),
        tie_word_embeddings=spec["tie_word_embeddings"],
        scale_decoder_outputs=spec["tie_word_embeddings"], pad_token_id=tokenizer.pad_id,
        eos_token_id=tokenizer.pad_id if eos is None else eos,
        decoder_start_token_id=tokenizer.pad_id)
  if architecture != "llama":
    raise ValueError(f"model.architecture must be 'llama' or 't5', got {architecture!r}")
  return DecoderConfig(
      vocab_size=vocab_size, hidden_size=spec["hidden_size"],
      intermediate_size=spec["intermediate_size"], num_layers=spec["num_layers"],
      num_heads=spec["num_heads"], num_kv_heads=spec["num_kv_heads"], head_dim=head_dim,
      rope_theta=spec["rope_theta"], tie_word_embeddings=spec["tie_word_embeddings"])


def initial_model(checkpoint: str, spec: Mapping[str, Any], tokenizer: Tokenizer,
                  key: jax.Array) -> tuple[Model, Any]:
  """The model to clone into and its initial params: a Hugging Face `checkpoint` folder's, or
  random ones of a new model of shape `spec` (`model_config`) when `checkpoint` is ""."""
  if checkpoint:
    return load_pretrained(checkpoint)
  config = model_config(spec, tokenizer)
  return model_for(config), random_params(config, key)


def make_dataset(tokenizer: Tokenizer, prompts: Sequence[str], actions: Sequence[str],
                 candidates: Sequence[str], max_prompt_len: int,
                 length_buckets: Sequence[int] = ()) -> list[Dataset]:
  """Tokenises prompts (keeping their last `max_prompt_len` tokens) and the candidates.

  Returns one `Dataset` per prompt-length bucket (prompts padded to the smallest bucket bound
  that holds them, the longest bucket to a multiple of 8), so a training step pays for its own
  bucket's length, not the longest prompt's; empty buckets are left out.
  """
  ids = [p[-max_prompt_len:] for p in tokenizer.encode_prompts(prompts)]
  longest = round_up(max(len(p) for p in ids), 8)
  bounds = sorted({b for b in length_buckets if b < longest} | {longest})
  cand_tokens = tokenizer.encode_candidates(list(candidates))
  cand_len = max(2, max(len(c) for c in cand_tokens))
  cand_ids = np.full((len(candidates), cand_len), tokenizer.pad_id, np.int32)  # [K, cand_tokens]
  cand_mask = np.zeros((len(candidates), cand_len), bool)
  for j, c in enumerate(cand_tokens):
    cand_ids[j, :len(c)] = c
    cand_mask[j, :len(c)] = True
  index = {a: j for j, a in enumerate(candidates)}
  targets = np.array([index[a] for a in actions], np.int32)  # [N]
  which = np.searchsorted(np.array(bounds), [len(p) for p in ids])  # [N] bucket of each prompt
  sets = []
  for b, length in enumerate(bounds):
    rows = np.flatnonzero(which == b)
    if rows.size == 0:
      continue
    prompt_ids = np.full((rows.size, length), tokenizer.pad_id, np.int32)  # [n, prompt_tokens]
    prompt_mask = np.zeros((rows.size, length), bool)
    for i, r in enumerate(rows):
      prompt_ids[i, :len(ids[r])] = ids[r]
      prompt_mask[i, :len(ids[r])] = True
    sets.append(Dataset(jnp.asarray(prompt_ids), jnp.asarray(prompt_mask),
                        jnp.asarray(targets[rows]), jnp.asarray(cand_ids), jnp.asarray(cand_mask)))
  return sets


def _batch(data: Dataset, index: jax.Array) -> tuple[TokenBatch, jax.Array]:
  b = index.shape[0]
  k, l = data.cand_ids.shape
  batch = TokenBatch(data.prompt_ids[index], data.prompt_mask[index],
                     jnp.broadcast_to(data.cand_ids, (b, k, l)),
                     jnp.broadcast_to(data.cand_mask, (b, k, l)))
  return batch, data.targets[index]


def make_per_example(model: Model):
  """`per_example(params, batch, targets) -> (nll [B], correct [B])` of the expert's action."""
  scorer = make_candidate_scorer(model)

  def per_example(params, batch: TokenBatch, targets: jax.Array):
    logp = candidate_log_softmax(scorer(params, batch).log_probs, batch.cand_valid)  # [B, K]
    nll = -jnp.take_along_axis(logp, targets[:, None], axis=-1)[:, 0]
    return nll, (jnp.argmax(logp, -1) == targets).astype(jnp.float32)

  return per_example


def make_loss(model: Model):
  """`loss(params, batch, targets) -> (mean cross-entropy, {"accuracy"})`."""
  per_example = make_per_example(model)

  def loss(params, batch: TokenBatch, targets: jax.Array):
    nll, correct = per_example(params, batch, targets)
    return jnp.mean(nll), {"accuracy": jnp.mean(correct)}

  return loss


def make_optimizer(lr: float, steps: int, warmup: int, clip: float = 1.0,
                   weight_decay: float = 0.0) -> optax.GradientTransformation:
  """AdamW with linear warm-up and cosine decay to 10% (Loshchilov and Hutter 2019)."""
  schedule = optax.warmup_cosine_decay_schedule(0.0, lr, max(warmup, 1), max(steps, warmup + 1),
                                                end_value=0.1 * lr)
  return optax.chain(optax.clip_by_global_norm(clip),
                     optax.adamw(schedule, weight_decay=weight_decay))


def make_train_step(model: Model, optimizer: optax.GradientTransformation, batch_size: int):
  """Builds `train_step(state, data, key) -> (state, metrics)` on a uniform minibatch."""
  loss_fn = make_loss(model)

  def train_step(state: TrainState, data: Dataset, key: jax.Array):
    key = jax.random.fold_in(key, state.step)
    index = jax.random.randint(key, (batch_size,), 0, data.size)
    batch, targets = _batch(data, index)
    loss, aux, params, opt_state = gradient_step(
        lambda p: loss_fn(p, batch, targets), state.params, state.opt_state, optimizer)
    return TrainState(params, opt_state, state.step + 1), {"loss": loss, **aux}

  return train_step


def make_eval_fn(model: Model, batch_size: int):
  """Builds `evaluate(params, data) -> {"loss", "accuracy"}` over the whole dataset, in chunks."""
  per_example = make_per_example(model)

  def evaluate(params, data: Dataset):
    n = data.size
    chunks = -(-n // batch_size)

    def one(carry, c):
      position = c * batch_size + jnp.arange(batch_size)
      batch, targets = _batch(data, jnp.minimum(position, n - 1))
      nll, correct = per_example(params, batch, targets)
      real = position < n
      return (carry[0] + jnp.sum(nll * real), carry[1] + jnp.sum(correct * real)), None

    (total, correct), _ = jax.lax.scan(one, (0.0, 0.0), jnp.arange(chunks))
    return {"loss": total / n, "accuracy": correct / n}

  return evaluate
