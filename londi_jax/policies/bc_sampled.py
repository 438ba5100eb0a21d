"""Behaviour cloning when every state offers its own candidates (ScienceWorld: hundreds to
thousands of them), by a sampled softmax.

A training example is a state's prompt, the expert's candidate `a*` and `n = num_candidates - 1`
other candidates `N(s)` of that state, drawn uniformly without replacement (all of them when it
has fewer). With `u(a) = log p_theta(a | prompt(s))` the candidate's score, `K(s)` the state's
candidate count and each sampled negative standing for `(K(s) - 1) / n` of them (the sampled
softmax's correction for uniform proposals, Bengio and Senecal 2008, Jean et al. 2015), the loss is

    L = -E_(s, a*) [ u(a*) - log( exp u(a*) + sum_{a in N(s)} exp(u(a) + log((K(s) - 1) / n)) ) ]

an estimate of the full softmax's normaliser, so the trained policy's probabilities over all of a
state's candidates, which it acts from, are calibrated like a full softmax's. `accuracy` in
training is the expert's rank among the sampled candidates; `full_accuracy` ranks all of them.

States are tokenised once on the host (`StateSet`); `sample_batch` packs a batch into a
`TokenBatch` of fixed shapes (the prompt padded to one of a few lengths), so the jitted step
(`make_batch_train_step`) compiles once per prompt length.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import numpy as np
import optax

import jax.numpy as jnp

from londi_jax.gradients import gradient_step
from londi_jax.policies.bc import Model, TrainState
from londi_jax.policies.policy import Policy
from londi_jax.policies.scoring import (TokenBatch, bucket, candidate_log_softmax,
                                        make_candidate_scorer, pack)
from londi_jax.policies.tokenizer import Tokenizer


@dataclasses.dataclass
class StateSet:
  """Tokenised demonstration states, each with its own candidates.

  Attributes:
    prompt_ids: per state, its prompt's token ids (cut to the last `max_prompt_len`).
    cand_ids: per state, each candidate's token ids.
    targets: [N] int, the expert's candidate index in its state's list.
  """

  prompt_ids: list[list[int]]
  cand_ids: list[list[list[int]]]
  targets: np.ndarray

  @property
  def size(self) -> int:
    return len(self.prompt_ids)

  def head(self, n: int) -> StateSet:
    """The first `n` states."""
    return StateSet(self.prompt_ids[:n], self.cand_ids[:n], self.targets[:n])


def make_states(tokenizer: Tokenizer, prompts: Sequence[str], actions: Sequence[str],
                candidates: Sequence[Sequence[str]], max_prompt_len: int,
                max_candidate_tokens: int | None = None) -> StateSet:
  """Tokenises each state's prompt and candidates; every action must be one of its candidates.

  Candidates are cut to their first `max_candidate_tokens` tokens (None: never), as a `Policy`
  whose metadata holds the same `max_candidate_tokens` cuts them.

  Raises:
    ValueError: a state whose action is not among its candidates (naming the state).
  """
  prompt_ids = [p[-max_prompt_len:] for p in tokenizer.encode_prompts(list(prompts))]
  unique = sorted({c for cands in candidates for c in cands})
  ids = {c: t[:max_candidate_tokens]
         for c, t in zip(unique, tokenizer.encode_candidates(unique))}
  targets = []
  for i, (action, cands) in enumerate(zip(actions, candidates)):
    try:
      targets.append(list(cands).index(action))
    except ValueError:
      raise ValueError(f"state {i}: the expert's action {action!r} is not one of its "
                       f"{len(cands)} candidates") from None
  return StateSet(prompt_ids, [[ids[c] for c in cands] for cands in candidates],
                  np.asarray(targets, np.int64))


def sample_batch(states: StateSet, rng: np.random.Generator, batch_size: int,
                 num_candidates: int, prompt_buckets: Sequence[int], cand_len: int,
                 pad_id: int) -> tuple[TokenBatch, np.ndarray]:
  """A batch of states, each with its expert candidate (index 0) and sampled others.

  Args:
    states: the states.
    rng: draws the states (uniformly, with replacement) and each state's other candidates.
    batch_size: states per batch.
    num_candidates: candidates per state (the expert's and `num_candidates - 1` others; a state
      with fewer has the rest masked).
    prompt_buckets: padded prompt lengths; the batch takes the smallest that holds its longest
      prompt.
    cand_len: padded candidate length (at least the longest candidate).
    pad_id: the tokenizer's padding id.

  Returns:
    The `TokenBatch` (the expert's candidate first in each row) and `[batch_size]` float32
    corrections `log((K(s) - 1) / n)` of the rows' sampled candidates (0 where none was left out).
  """
  index = rng.integers(0, states.size, batch_size)
  prompts, cands, offsets = [], [], []
  for i in index:
    own = states.cand_ids[i]
    target = int(states.targets[i])
    others = np.delete(np.arange(len(own)), target)
    chosen = rng.choice(others, min(num_candidates - 1, others.size), replace=False)
    prompts.append(states.prompt_ids[i])
    cands.append([own[target]] + [own[j] for j in chosen])
    offsets.append(np.log(others.size / chosen.size) if chosen.size else 0.0)
  longest = max(len(p) for p in prompts)
  batch = pack(prompts, cands, pad_id=pad_id, batch_size=batch_size,
               prompt_len=bucket(longest, tuple(prompt_buckets)), num_candidates=num_candidates,
               cand_len=cand_len)
  return batch, np.asarray(offsets, np.float32)


def make_sampled_loss(model: Model):
  """`loss(params, batch, offsets) -> (mean corrected cross-entropy, {"accuracy"})` of a
  `sample_batch` batch (the module docstring's `L`)."""
  scorer = make_candidate_scorer(model)

  def loss(params, batch: TokenBatch, offsets: jax.Array):
    scores = scorer(params, batch).log_probs  # [B, K']
    negative = jnp.arange(scores.shape[1]) > 0
    logp = candidate_log_softmax(scores + jnp.where(negative, offsets[:, None], 0.0),
                                 batch.cand_valid)
    correct = jnp.argmax(jnp.where(batch.cand_valid, scores, -jnp.inf), -1) == 0
    return -jnp.mean(logp[:, 0]), {"accuracy": jnp.mean(correct.astype(jnp.float32))}

  return loss


def make_batch_train_step(model: Model, optimizer: optax.GradientTransformation):
  """Builds `train_step(state, batch, offsets) -> (state, metrics)` on a `sample_batch` batch."""
  loss_fn = make_sampled_loss(model)

  def train_step(state: TrainState, batch: TokenBatch, offsets: jax.Array):
    loss, aux, params, opt_state = gradient_step(
        lambda p: loss_fn(p, batch, offsets), state.params, state.opt_state, optimizer)
    return TrainState(params, opt_state, state.step + 1), {"loss": loss, **aux}

  return train_step


def greedy_accuracy_and_flops(policy: Policy, states: StateSet, batch_size: int = 16
                              ) -> tuple[float, float]:
  """The share of states whose greedy action over all their candidates is the expert's, and the
  policy's forward FLOPs per state (`score_tokens`' count) while scoring them."""
  # States with similar candidate counts share a batch, so few are padded to a long list.
  order = np.argsort([len(c) for c in states.cand_ids], kind="stable")
  correct, flops = 0, 0
  for start in range(0, states.size, batch_size):
    rows = order[start:start + batch_size]
    out = policy.score_tokens([states.prompt_ids[i] for i in rows],
                              [states.cand_ids[i] for i in rows])
    correct += int(np.sum(out.greedy == states.targets[rows]))
    flops += out.flops
  n = max(states.size, 1)
  return correct / n, flops / n


def full_accuracy(policy: Policy, states: StateSet, batch_size: int = 16) -> float:
  """The share of states whose greedy action over all their candidates is the expert's."""
  return greedy_accuracy_and_flops(policy, states, batch_size)[0]
