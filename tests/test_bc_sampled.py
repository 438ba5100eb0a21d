"""Behaviour cloning over per-state candidates by a sampled softmax (`policies.bc_sampled`): the
batches it packs, and a tiny decoder that learns, from sampled candidates, to pick the right one
among all of a state's candidates."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from londi_jax.policies import bc, bc_sampled
from londi_jax.policies.checkpoint import model_for, random_params
from londi_jax.policies.policy import Buckets, Policy
from londi_jax.policies.tokenizer import build_word_tokenizer

COLOURS = ("red", "green", "blue", "purple", "yellow", "grey", "orange", "white")
THINGS = ("ball", "box", "key", "cup", "book", "lamp")


def _states(rng, n):
  """A state asks for one object ('Task: pick up the red ball'); its candidates are `pick up X`
  for a random subset of all objects (10 to 40 of them) that includes the asked one."""
  objects = [f"{c} {t}" for c in COLOURS for t in THINGS]
  prompts, actions, candidates = [], [], []
  for _ in range(n):
    target = objects[rng.integers(len(objects))]
    others = [o for o in objects if o != target]
    chosen = list(rng.choice(others, rng.integers(9, 40), replace=False)) + [target]
    rng.shuffle(chosen)
    prompts.append(f"Task: pick up the {target} . Next action:")
    actions.append(f"pick up {target}")
    candidates.append([f"pick up {o}" for o in chosen])
  return prompts, actions, candidates


@pytest.fixture(scope="module")
def data():
  rng = np.random.default_rng(0)
  train, test = _states(rng, 400), _states(rng, 100)
  tokenizer = build_word_tokenizer(train[0] + [c for cands in train[2] for c in cands])
  return tokenizer, [bc_sampled.make_states(tokenizer, *s, 32) for s in (train, test)]


def test_batches_put_the_expert_first_among_distinct_candidates_of_its_state(data):
  tokenizer, (train, _) = data
  batch, offsets = bc_sampled.sample_batch(train, np.random.default_rng(1), 8, 12, (16, 32), 4,
                                           tokenizer.pad_id)
  assert batch.cand_ids.shape == (8, 12, 4) and batch.prompt_ids.shape == (8, 16)
  for i in range(8):
    prompt = [int(t) for t, m in zip(batch.prompt_ids[i], batch.prompt_mask[i]) if m]
    rows = [tuple(int(t) for t, m in zip(ids, mask) if m)
            for ids, mask in zip(batch.cand_ids[i], batch.cand_mask[i])]
    assert len(set(rows)) == 12
    # Some state with this prompt (several ask for the same object) holds them all, with the
    # expert's first.
    # Each of the 11 sampled others stands for (K - 1) / 11 of the state's K candidates.
    assert any(rows[0] == tuple(train.cand_ids[s][train.targets[s]])
               and set(rows) <= {tuple(c) for c in train.cand_ids[s]}
               and np.isclose(offsets[i], np.log((len(train.cand_ids[s]) - 1) / 11))
               for s in range(train.size) if train.prompt_ids[s] == prompt)


def test_the_corrected_loss_is_the_full_softmax_loss_when_nothing_is_left_out(data):
  """With every candidate of a state in the batch (offsets 0), the sampled loss is the plain
  cross-entropy over all candidates; with a corrected subset it is a larger normaliser."""
  tokenizer, (train, _) = data
  spec = dict(num_layers=1, hidden_size=16, num_heads=2, num_kv_heads=1, intermediate_size=32,
              rope_theta=10000.0, tie_word_embeddings=True)
  config = bc.model_config(spec, tokenizer)
  model, params = model_for(config), random_params(config, jax.random.key(1))
  batch, offsets = bc_sampled.sample_batch(train, np.random.default_rng(2), 4, 64, (16,), 4,
                                           tokenizer.pad_id)
  assert np.all(offsets == 0)  # 64 slots hold all of every state's 10-40 candidates
  loss, _ = bc_sampled.make_sampled_loss(model)(params, batch, jnp.asarray(offsets))
  plain, _ = bc.make_loss(model)(params, batch, jnp.zeros(4, jnp.int32))
  np.testing.assert_allclose(loss, plain, rtol=1e-6)
  shifted, _ = bc_sampled.make_sampled_loss(model)(params, batch, jnp.full(4, np.log(3.0)))
  assert shifted > loss


def test_an_action_outside_its_candidates_is_named(data):
  tokenizer, _ = data
  with pytest.raises(ValueError, match="state 1: the expert's action 'jump'"):
    bc_sampled.make_states(tokenizer, ["a", "b"], ["x", "jump"], [["x"], ["x", "y"]], 8)


def test_sampled_softmax_learns_the_full_candidate_choice(data):
  tokenizer, (train, test) = data
  spec = dict(num_layers=1, hidden_size=32, num_heads=2, num_kv_heads=1, intermediate_size=64,
              rope_theta=10000.0, tie_word_embeddings=True)
  config = bc.model_config(spec, tokenizer)
  model, params = model_for(config), random_params(config, jax.random.key(0))
  optimizer = bc.make_optimizer(1e-2, 150, 10)
  state = bc.TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32))
  step = jax.jit(bc_sampled.make_batch_train_step(model, optimizer))
  policy = Policy(model, params, tokenizer, buckets=Buckets(batch=(16,)), candidate_chunk=16)
  before = bc_sampled.full_accuracy(policy, test)
  for i in range(150):
    batch, offsets = bc_sampled.sample_batch(train, np.random.default_rng(i), 32, 8, (16,), 4,
                                             tokenizer.pad_id)
    state, _ = step(state, batch, offsets)
  policy.params = state.params
  after = bc_sampled.full_accuracy(policy, test)
  # Chance among 10-40 candidates is under 0.1; trained on 8 candidates a state, the policy picks
  # the asked-for object among all of a held-out state's candidates.
  assert before < 0.2 and after > 0.9, (before, after)
