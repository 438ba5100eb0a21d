"""T5 policies: encoder-once candidate scoring against full passes, no per-candidate copy of the
encoder states, buckets and compilations, FLOPs, T5's tokenizer convention, policy folders, and
T5 folders through `launch.pretrain` (behaviour cloning) and the LONDI loop and evaluation, at
the shapes of the `paper` presets, alone or beside a decoder."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import transformers
from flax import traverse_util

from configs import londi
from configs import pretrain as pretrain_config
from launch import pretrain
from londi_jax.envs.babyai import expert as babyai_expert
from londi_jax.envs.babyai.prompts import PromptConfig
from londi_jax.envs.demo_files import DemoWriter, read_demos
from londi_jax.policies import (Buckets, Policy, bc, build_word_tokenizer, load_policy,
                                load_pretrained, save_policy, save_pretrained)
from londi_jax.policies.checkpoint import random_params
from londi_jax.policies.config import DecoderConfig, T5Config
from londi_jax.policies.flops import (cross_kv_flops, decoder_flops, encoder_flops,
                                      naive_scoring_flops, scoring_flops)
from londi_jax.policies.model import Decoder
from londi_jax.policies.scoring import TokenBatch, make_candidate_scorer
from londi_jax.policies.t5 import T5
from londi_jax.policies.tokenizer import Tokenizer
from londi_jax.training import loop
from londi_jax.training.evaluate_run import evaluate_run
from londi_jax.training.lm import load_runners

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "t5")
WORDS = ("Possible actions of the agent turn left right go forward pick up drop toggle Goal "
         "Observation Action Start You see a wall step steps and carry red green blue purple "
         "yellow grey ball box key door open closed locked the to put next in front of behind "
         "then after you o a s").split()


@pytest.fixture(scope="module")
def policy():
  model, params = load_pretrained(os.path.join(FIXTURES, "flan_t5"))
  return Policy(model, params, build_word_tokenizer(["unused"]), temperature=0.7)


def _random_tokens(rng, n_rows, vocab=96):
  prompts = [list(rng.integers(3, vocab, rng.integers(3, 15))) for _ in range(n_rows)]
  cands = [[list(rng.integers(3, vocab, rng.integers(1, 5))) for _ in range(rng.integers(1, 7))]
           for _ in range(n_rows)]
  return prompts, cands


def _naive(policy, prompts, cands):
  """log p(cand | prompt) of each row's candidates from one full pass per candidate, decoder
  input `[start] + cand[:-1]` (all passes batched, right-padded to 24 / 8 tokens)."""
  pairs = [(p, c) for p, cs in zip(prompts, cands) for c in cs]
  ids = np.zeros((len(pairs), 24), np.int32)
  dec = np.zeros((len(pairs), 8), np.int32)
  for i, (p, c) in enumerate(pairs):
    ids[i, :len(p)] = p
    dec[i, :len(c)] = [policy.config.decoder_start_token_id] + c[:-1]
  lens = np.array([[len(p), len(c)] for p, c in pairs])
  logits = jax.jit(policy.model.apply)({"params": policy.params}, ids, np.arange(24) < lens[:, :1],
                                       dec, np.arange(8) < lens[:, 1:])
  logp = np.asarray(jax.nn.log_softmax(logits.astype(jnp.float32), -1))
  scores = iter([sum(logp[i, j, tok] for j, tok in enumerate(c)) for i, (_, c) in enumerate(pairs)])
  return [np.array([next(scores) for _ in cs]) for cs in cands]


def test_encoder_once_scores_match_one_full_pass_per_candidate(policy):
  prompts, cands = _random_tokens(np.random.default_rng(0), 3)
  out = policy.score_tokens(prompts, cands)
  for i, (cs, expected) in enumerate(zip(cands, _naive(policy, prompts, cands))):
    np.testing.assert_allclose(out.log_probs[i, :len(cs)], expected, atol=1e-4, rtol=1e-5)
    assert np.all(np.isneginf(out.log_probs[i, len(cs):]))
    z = expected / 0.7
    np.testing.assert_allclose(out.probs[i, :len(cs)], np.exp(z - z.max()) / np.exp(
        z - z.max()).sum(), atol=1e-5)
  assert out.features.shape == (3, policy.config.d_model) and out.features.dtype == np.float32


def test_padding_rows_candidates_and_buckets_change_nothing(policy):
  prompts, cands = _random_tokens(np.random.default_rng(0), 3)
  out = policy.score_tokens(prompts, cands)
  big = Policy(policy.model, policy.params, policy.tokenizer, temperature=0.7,
               buckets=Buckets(batch=(8,), prompt=(32,), candidates=(16,), cand_tokens=(8,)))
  padded = big.score_tokens(prompts, cands)
  k = out.log_probs.shape[1]
  np.testing.assert_allclose(padded.log_probs[:3, :k], out.log_probs, atol=1e-5, rtol=1e-6)
  np.testing.assert_allclose(padded.features, out.features, atol=1e-5)


def test_no_recompilation_within_a_bucket(policy):
  compiles = []
  jax.monitoring.register_event_duration_secs_listener(
      lambda event, *a, **k: compiles.append(event)
      if event == "/jax/core/compile/backend_compile_duration" else None)
  rng = np.random.default_rng(3)
  fresh = Policy(policy.model, policy.params, policy.tokenizer)
  prompts, cands = _random_tokens(rng, 4)
  fresh.score_tokens(prompts, [[[4, 5, 6, 7]] * 6] + cands[1:])
  first = len(compiles)
  for n_rows in (3, 4, 3, 4):
    prompts, cands = _random_tokens(rng, n_rows)
    cands[0] = [[4, 5, 6, 7]] * 6  # the same buckets: 4 rows, 16 prompt tokens, 8 x 4 candidates
    assert fresh.score_tokens(prompts, cands).compile_time_s == 0.0
  assert fresh.num_compilations == 1
  assert len(compiles) == first


def _encoder_copies(jaxpr, batch, k, p, d_kv) -> list:
  """Intermediates holding a [candidates, prompt tokens] grid of feature vectors: arrays whose
  shape has both `k` and `p` and that are at least `batch * k * p * d_kv` large."""
  found = []
  for eqn in jaxpr.eqns:
    for var in eqn.outvars:
      shape = getattr(var.aval, "shape", ())
      if k in shape and p in shape and np.prod(shape) >= batch * k * p * d_kv:
        found.append((eqn.primitive.name, shape))
    for param in eqn.params.values():
      for sub in param if isinstance(param, (tuple, list)) else [param]:
        inner = getattr(sub, "jaxpr", sub)  # a ClosedJaxpr's Jaxpr, or a Jaxpr
        if hasattr(inner, "eqns"):
          found += _encoder_copies(inner, batch, k, p, d_kv)
  return found


def test_candidates_share_the_encoder_output_without_copies(policy):
  """The scorer broadcasts the state's encoder output (and its cross-attention keys and values)
  over the candidates: no intermediate is as large as a per-candidate copy of them. The check
  itself flags a scorer that copies them."""
  b, p, k, l = 2, 24, 5, 3
  batch = TokenBatch(jnp.ones((b, p), jnp.int32), jnp.ones((b, p), bool),
                     jnp.ones((b, k, l), jnp.int32), jnp.ones((b, k, l), bool))
  d_kv = policy.config.d_kv
  jaxpr = jax.make_jaxpr(make_candidate_scorer(policy.model))(policy.params, batch).jaxpr
  assert _encoder_copies(jaxpr, b, k, p, d_kv) == []

  def copying(params, batch):
    encoded = policy.model.apply({"params": params}, batch.prompt_ids, method=T5.encode)
    return jnp.repeat(encoded[:, None], k, axis=1).sum()  # [b, k, p, d]

  assert _encoder_copies(jax.make_jaxpr(copying)(policy.params, batch).jaxpr, b, k, p, d_kv)


def test_flops_from_config_count_the_real_weights(policy):
  c = policy.config
  flat = traverse_util.flatten_dict(policy.params)
  kernels = {k: v.size for k, v in flat.items() if k[0] in ("encoder", "decoder")
             and k[-1] == "kernel"}
  assert sum(kernels.values()) == c.matmul_params()
  enc = sum(v for k, v in kernels.items() if k[0] == "encoder")
  cross_kv = sum(v for k, v in kernels.items() if k[3] == "EncDecAttention" and k[4] in "kv")
  assert encoder_flops(c, 10) == 2 * 10 * enc + 4 * c.num_layers * c.inner_dim * 100
  assert cross_kv_flops(c, 10) == 2 * 10 * cross_kv
  # One decoder token over 1 decoder key and 10 encoder keys, with its logits.
  dec = sum(kernels.values()) - enc - cross_kv
  assert decoder_flops(c, 1, 1, 10, 1) == (2 * dec + 4 * c.num_decoder_layers * c.inner_dim * 11
                                           + 2 * c.d_model * c.vocab_size)
  # 6 candidates of 3 tokens after a 20-token prompt. Encoder once: the prompt, its
  # cross-attention keys and values, the start token (1 self key, 20 encoder keys, its logits),
  # then each candidate's 2 other tokens (2 + 3 self keys, 2 x 20 encoder keys, 2 logits).
  shared = scoring_flops(c, [20], [[3] * 6])
  assert shared == (encoder_flops(c, 20) + cross_kv_flops(c, 20) + decoder_flops(c, 1, 1, 20, 1)
                    + 6 * decoder_flops(c, 2, 5, 40, 2))
  # One full pass per candidate: the encoder and `[start, a_1, a_2]` (1 + 2 + 3 self keys).
  naive = naive_scoring_flops(c, [20], [[3] * 6])
  assert naive == 6 * (encoder_flops(c, 20) + cross_kv_flops(c, 20)
                       + decoder_flops(c, 3, 6, 60, 3))
  assert naive > 3 * shared
  out = policy.score_tokens([[5] * 20], [[[6, 7, 8]] * 6])
  assert out.flops == shared and out.padded_flops >= shared


def t5_tokenizer() -> transformers.PreTrainedTokenizerBase:
  """A T5 (Unigram, SentencePiece-style) tokenizer over BabyAI-Text's words, with single
  characters to spell anything else."""
  pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
  words = sorted({w for word in WORDS for w in (word, word.lower(), word + ":", word + ",")})
  pieces += [("▁" + w, -3.0) for w in words]
  pieces += [(ch, -8.0) for ch in "abcdefghijklmnopqrstuvwxyz0123456789:,._-"]
  pieces += [("▁" + ch, -8.5) for ch in "abcdefghijklmnopqrstuvwxyz0123456789"]
  return transformers.T5Tokenizer(vocab=pieces, extra_ids=0)


def test_t5_tokenizer_convention_ends_prompts_and_candidates_with_eos(tmp_path):
  hf = t5_tokenizer()
  hf.save_pretrained(str(tmp_path))
  tok = Tokenizer.load(str(tmp_path))
  assert tok.eos_suffix and tok.candidate_prefix == "" and tok.bos_id is None
  eos = hf.eos_token_id
  # GLAM tokenises the prompt and each action with the tokenizer's special tokens.
  assert tok.encode_prompts(["go to the red ball"]) == [hf("go to the red ball")["input_ids"]]
  assert tok.encode_candidates(["turn left", "pick up"]) == [
      hf("turn left")["input_ids"], hf("pick up")["input_ids"]]
  assert tok.encode_candidates(["turn left"])[0][-1] == eos and tok.pad_id == 0
  word = build_word_tokenizer(["go to the red ball"])
  assert not word.eos_suffix and word.encode_prompts(["go to"])[0][0] == word.bos_id


def tiny_t5_folder(folder: str, seed: int, **shape) -> str:
  """A random Flan-T5-shaped Hugging Face folder (weights, config, tokenizer)."""
  hf = t5_tokenizer()
  shape = {**dict(d_model=16, d_kv=8, d_ff=32, num_layers=1, num_decoder_layers=1, num_heads=2),
           **shape}
  config = T5Config(vocab_size=-(-len(hf) // 8) * 8, **shape)
  save_pretrained(folder, config, random_params(config, jax.random.key(seed)))
  hf.save_pretrained(folder)
  return folder


def test_policy_folder_round_trip(tmp_path):
  """`save_policy` / `load_policy` of a T5 policy: the same model, params and tokenizer."""
  folder = tiny_t5_folder(str(tmp_path / "hf"), 0)
  model, params = load_pretrained(folder)
  tokenizer = Tokenizer.load(folder)
  save_policy(str(tmp_path / "p"), model.config, params, tokenizer, meta={"name": "t5"})
  loaded = load_policy(str(tmp_path / "p"))
  assert isinstance(loaded.model, T5) and loaded.config == model.config
  assert loaded.meta == {"name": "t5"}
  saved, read = traverse_util.flatten_dict(params), traverse_util.flatten_dict(loaded.params)
  assert saved.keys() == read.keys()
  for path, value in saved.items():
    np.testing.assert_array_equal(np.asarray(read[path]), np.asarray(value), err_msg=str(path))
  text = ["go to the red ball", "turn left"]
  assert loaded.tokenizer.eos_suffix and loaded.tokenizer.candidate_prefix == ""
  assert loaded.tokenizer.encode_prompts(text) == tokenizer.encode_prompts(text)
  assert loaded.tokenizer.encode_candidates(text) == tokenizer.encode_candidates(text)


def test_behaviour_cloning_trains_a_t5_from_scratch(tmp_path):
  """`bc` on a new T5 (`configs/pretrain.py` `model.architecture = "t5"`): on the training
  minibatches, the expert's cross-entropy over the candidates falls well below its start, and the
  greedy action beats always playing the expert's most frequent one."""
  with DemoWriter(str(tmp_path)) as writer:
    babyai_expert.collect("babyai_text/BabyAI-GoToLocal-v0", writer, episodes=6, split="train")
  episodes = bc.episodes_of(read_demos(str(tmp_path / "demos.jsonl")))
  prompts, actions, candidates = bc.prompts_and_actions(
      episodes, PromptConfig(template="compact", num_observations=1, num_actions=0))
  tokenizer = build_word_tokenizer(prompts + list(candidates))
  spec = pretrain_config.get_config("smoke").policies.small.model.to_dict()
  config = bc.model_config({**spec, "architecture": "t5"}, tokenizer)
  assert isinstance(config, T5Config) and config.feed_forward_proj == "gated-gelu"
  assert config.decoder_start_token_id == tokenizer.pad_id
  (data,) = bc.make_dataset(tokenizer, prompts, actions, candidates, 64)
  model = T5(config)
  optimizer = bc.make_optimizer(1e-2, 40, 5)
  params = random_params(config, jax.random.key(0))
  state = bc.TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32))
  step = jax.jit(bc.make_train_step(model, optimizer, 32))
  metrics = []
  for _ in range(40):
    state, m = step(state, data, jax.random.key(1))
    metrics.append(jax.device_get(m))  # of the minibatch the step trained on, before its update
  first, last = metrics[0], {k: np.mean([m[k] for m in metrics[-5:]]) for k in metrics[0]}
  majority = max(actions.count(a) for a in set(actions)) / len(actions)
  assert last["loss"] < 0.6 * first["loss"]
  assert last["accuracy"] > majority + 0.1


def test_pretrain_paper_presets_differ_only_in_their_folders_and_rate():
  paper, paper_t5 = (pretrain_config.get_config(p).to_dict() for p in ("paper", "paper_t5"))
  for name in ("small", "large"):
    for c in (paper, paper_t5):
      c["policies"][name].pop("checkpoint")
      c["policies"][name].pop("lr")
  assert paper == paper_t5


@pytest.mark.parametrize("preset", ["paper", "paper_t5"])
def test_pretrain_paper_presets_fail_clearly_until_their_folders_are_set(preset, tmp_path):
  config = pretrain_config.get_config(preset)
  with pytest.raises(FileNotFoundError) as error:
    pretrain.run(config, str(tmp_path))
  for name in ("small", "large"):
    assert f"--config.policies.{name}.checkpoint" in str(error.value)
  assert not os.listdir(tmp_path)  # failed before writing anything


def _shrink_pretrain(config, steps=4):
  config.demos.episodes_per_level = 3
  config.demos.val_fraction = 0.34
  config.length_buckets = ()
  config.log_every = steps
  config.checkpoint_every = steps
  config.eval.episodes = 2
  config.eval.num_envs = 2
  for p in config.policies.values():
    p.steps = steps
    p.batch_size = 8
    p.warmup = 1
    p.max_prompt_tokens = 96
  return config


def tiny_decoder_folder(folder: str, seed: int) -> str:
  """A random Llama-shaped Hugging Face folder with a word-level tokenizer."""
  tokenizer = build_word_tokenizer([" ".join(WORDS) + " : , 0 1 2 3 4 5 6 7 8 9"])
  config = DecoderConfig(vocab_size=-(-tokenizer.vocab_size // 8) * 8, hidden_size=16,
                         intermediate_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                         head_dim=8, tie_word_embeddings=True)
  save_pretrained(folder, config, random_params(config, jax.random.key(seed)))
  tokenizer.save(folder)
  return folder


def test_pretrain_paper_preset_fine_tunes_a_decoder_and_a_t5_folder(tmp_path):
  """The `paper` preset's shape (GLAM prompts over checkpoint folders; `paper_t5` differs only
  in its folders and rate) on tiny random folders, counts shrunk: a decoder as the small
  policy, a T5 (original T5 shape: ReLU, tied and scaled head) as the large one."""
  config = _shrink_pretrain(pretrain_config.get_config("paper"))
  config.policies.small.checkpoint = tiny_decoder_folder(str(tmp_path / "small"), 0)
  config.policies.large.checkpoint = tiny_t5_folder(
      str(tmp_path / "large"), 1, feed_forward_proj="relu", tie_word_embeddings=True,
      scale_decoder_outputs=True)
  summary = pretrain.run(config, str(tmp_path / "run"))
  for name, kind in (("small", Decoder), ("large", T5)):
    assert summary["policies"][name]["episodes"] == 2
    assert summary["policies"][name]["flops_per_step"] > 0
    pol = load_policy(str(tmp_path / "run" / name / "policy"))
    assert isinstance(pol.model, kind) and pol.meta["prompt"]["template"] == "glam"
  assert pol.tokenizer.eos_suffix and pol.config.tie_word_embeddings


def test_londi_paper_preset_fails_clearly_until_its_folders_are_set():
  config = londi.get_config("babyai_text:paper")
  with pytest.raises(FileNotFoundError, match=r"--config\.policies\.small"):
    load_runners(config)


def _shrink_londi(config):
  config.num_envs = 2
  config.train_steps = 8
  config.log_every = 4
  config.checkpoint_every = 8
  config.eval_every = 0
  config.eval.episodes = 2
  config.eval.dev_episodes = 2
  config.eval.num_envs = 2
  config.eval.baselines = ()
  config.policies.batch_buckets = (2,)
  config.policies.prompt_buckets = (128,)
  config.switcher.hidden_sizes = (8,)
  config.switcher.replay_capacity = 64
  config.switcher.min_replay = 4
  config.switcher.batch_size = 4
  config.switcher.hold = 1
  config.switcher.n_step = 1
  config.switcher.train_every = 2
  config.switcher.num_updates = 1
  return config


def test_londi_paper_preset_trains_and_evaluates_over_t5_folders(tmp_path):
  """`launch.train` and `launch.evaluate` (their library calls) at the `paper` preset's shape,
  counts shrunk, both policies Hugging Face T5 folders (GLAM prompts): the small one a Flan-T5
  shape, the large one an original T5 shape twice as wide. (`launch.pretrain` above pairs a T5
  with a decoder.)"""
  config = _shrink_londi(londi.get_config("babyai_text:paper"))
  config.policies.small = tiny_t5_folder(str(tmp_path / "small"), 0)
  config.policies.large = tiny_t5_folder(
      str(tmp_path / "large"), 1, d_model=32, num_layers=2, num_decoder_layers=2,
      feed_forward_proj="relu", tie_word_embeddings=True, scale_decoder_outputs=True)
  small, large = load_runners(config)
  assert isinstance(small.policy.model, T5) and isinstance(large.policy.model, T5)
  assert small.hidden_size == 16 and not small.prompt_config  # GLAM's template
  workdir = str(tmp_path / "run")
  loop.train(config, workdir, log=lambda line: None, runners=(small, large))
  out = evaluate_run(workdir, episodes=2, seed=0, runners=(small, large), log=lambda line: None)
  methods = out["methods"]
  assert {"small_only", "large_only"} <= set(methods)
  assert methods["small_only"]["flops"] > 0
  assert methods["large_only"]["compute_relative_to_large"] == 1.0
