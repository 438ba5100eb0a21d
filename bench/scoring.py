"""Candidates scored per second: shared prompt vs one pass per candidate (vs PyTorch if present).

    python -m bench.scoring [--repeats 3] [--layers 4 --d 128 --vocab 128] [--t5_layers 4]

Two settings: BabyAI-Text (6 candidates of 2 tokens, 32 states, 64-token prompts) and a
ScienceWorld-sized one (1,000 candidates of 8 tokens, 1 state, 64-token prompt), each for two
random models of width `d`: a Llama-family decoder and a Flan-T5-shaped encoder-decoder (gated
GELU, untied head; `t5_layers` blocks per stack, 0 for none).

- decoder: `shared` is `scoring.make_candidate_scorer` (prompt once, candidates over its cached
  keys and values); `naive` runs prompt + candidate through the model once per candidate.
- T5: `shared` runs the encoder once per state and decodes all its candidates in one batched
  pass over the shared encoder output; `naive` runs the encoder and the decoder once per
  candidate (`[start] + candidate[:-1]`), as GLAM's scoring does without pre-encoded inputs.

Naive passes are batched (in chunks of `naive_chunk` sequences). With torch importable, the same
checkpoint (written by `save_pretrained`) is scored naively by transformers'
`LlamaForCausalLM` / `T5ForConditionalGeneration`, and for T5 its scores are compared with ours;
without torch that column is skipped with a note. Also counts backend compilations over a
steady-state run of `Policy` calls whose sizes vary within one bucket, per model. Prints a table
and, last, one JSON line.
"""

from __future__ import annotations

import json
import tempfile
import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

from londi_jax.policies import DecoderConfig, Policy, build_word_tokenizer, init_params
from londi_jax.policies import save_pretrained
from londi_jax.policies import t5 as t5_lib
from londi_jax.policies.config import T5Config
from londi_jax.policies.model import Decoder
from londi_jax.policies.scoring import TokenBatch, make_candidate_scorer

_REPEATS = flags.DEFINE_integer("repeats", 3, "timed calls per setting")
_LAYERS = flags.DEFINE_integer("layers", 4, "decoder layers")
_D = flags.DEFINE_integer("d", 128, "model width")
_VOCAB = flags.DEFINE_integer("vocab", 128, "vocabulary size")
_T5_LAYERS = flags.DEFINE_integer("t5_layers", 4, "T5 blocks per stack (0: no T5 rows)")
_CHUNK = flags.DEFINE_integer("naive_chunk", 1024, "sequences per naive forward pass")

SETTINGS = {  # name: (states, prompt tokens, candidates, candidate tokens)
    "babyai_6": (32, 64, 6, 2),
    "scienceworld_1000": (1, 64, 1000, 8),
}


def make_batch(rng, vocab, states, prompt_len, cands, cand_len) -> TokenBatch:
  prompt_ids = rng.integers(3, vocab, (states, prompt_len)).astype(np.int32)  # [b, p]
  cand_ids = rng.integers(3, vocab, (states, cands, cand_len)).astype(np.int32)  # [b, k, l]
  return TokenBatch(jnp.asarray(prompt_ids), jnp.ones((states, prompt_len), bool),
                    jnp.asarray(cand_ids), jnp.ones((states, cands, cand_len), bool))


def make_naive(model: Decoder, chunk: int):
  """Scores every candidate by a plain forward pass over prompt + candidate."""

  def naive(params, batch: TokenBatch):
    b, k, l = batch.cand_ids.shape
    p = batch.prompt_ids.shape[1]
    seqs = jnp.concatenate([jnp.repeat(batch.prompt_ids[:, None], k, 1), batch.cand_ids], -1)
    seqs = seqs.reshape(b * k, p + l)  # [b * k, p + l]
    pad = -seqs.shape[0] % chunk if seqs.shape[0] > chunk else 0
    seqs = jnp.concatenate([seqs, jnp.zeros((pad, p + l), seqs.dtype)])
    n = seqs.shape[0] // min(chunk, seqs.shape[0])

    def one(x):  # [chunk, p + l]
      logits = model.apply({"params": params}, x).astype(jnp.float32)
      logp = jax.nn.log_softmax(logits[:, p - 1:-1], -1)  # [chunk, l, vocab]
      return jnp.take_along_axis(logp, x[:, p:, None], -1)[..., 0].sum(-1)

    out = jax.lax.map(one, seqs.reshape(n, -1, p + l)).reshape(-1)
    return out[:b * k].reshape(b, k)

  return naive


def make_naive_t5(model: t5_lib.T5, chunk: int):
  """Scores every candidate by a full T5 pass: encoder on the prompt, decoder on
  `[start] + candidate[:-1]`."""
  start = model.config.decoder_start_token_id

  def naive(params, batch: TokenBatch):
    b, k, l = batch.cand_ids.shape
    p = batch.prompt_ids.shape[1]
    prompts = jnp.repeat(batch.prompt_ids[:, None], k, 1).reshape(b * k, p)  # [b * k, p]
    cands = batch.cand_ids.reshape(b * k, l)  # [b * k, l]
    pad = -prompts.shape[0] % chunk if prompts.shape[0] > chunk else 0
    prompts = jnp.concatenate([prompts, jnp.zeros((pad, p), prompts.dtype)])
    cands = jnp.concatenate([cands, jnp.zeros((pad, l), cands.dtype)])
    n = prompts.shape[0] // min(chunk, prompts.shape[0])

    def one(xs):  # [chunk, p], [chunk, l]
      x, c = xs
      dec = jnp.concatenate([jnp.full((c.shape[0], 1), start, c.dtype), c[:, :-1]], 1)
      logits = model.apply({"params": params}, x, None, dec).astype(jnp.float32)
      logp = jax.nn.log_softmax(logits, -1)  # [chunk, l, vocab]
      return jnp.take_along_axis(logp, c[..., None], -1)[..., 0].sum(-1)

    out = jax.lax.map(one, (prompts.reshape(n, -1, p), cands.reshape(n, -1, l))).reshape(-1)
    return out[:b * k].reshape(b, k)

  return naive


def timed(fn, *args, repeats: int) -> float:
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def count_steady_state_compiles(model, params, vocab, rng) -> dict:
  """Compilations over 20 `Policy` calls whose sizes stay within one bucket of each kind."""
  events = []
  jax.monitoring.register_event_duration_secs_listener(
      lambda event, *a, **k: events.append(event)
      if event == "/jax/core/compile/backend_compile_duration" else None)
  policy = Policy(model, params, build_word_tokenizer(["x"]))

  def call(states):
    prompts = [list(rng.integers(3, vocab, rng.integers(33, 65))) for _ in range(states)]
    cands = [[list(rng.integers(3, vocab, rng.integers(1, 3))) for _ in range(rng.integers(5, 7))]
             for _ in range(states)]
    prompts[0] = prompts[0][:1] * 64
    cands[0] = [[3, 4]] * 6
    policy.score_tokens(prompts, cands)

  call(32)
  warm = len(events)
  for _ in range(20):
    call(int(rng.integers(17, 33)))
  return {"warmup_compiles": warm, "steady_state_compiles": len(events) - warm,
          "jit_cache_size": policy.num_compilations, "calls": 20}


def torch_candidates_per_s(config: DecoderConfig, params, batch: TokenBatch, repeats: int):
  """Naive scoring of the same checkpoint in PyTorch transformers, or None without torch."""
  try:
    import torch
    import transformers
  except ImportError:
    return None
  with tempfile.TemporaryDirectory() as folder:
    save_pretrained(folder, config, params)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
  prompt = torch.tensor(np.asarray(batch.prompt_ids), dtype=torch.long)
  cands = torch.tensor(np.asarray(batch.cand_ids), dtype=torch.long)
  b, k, l = cands.shape
  p = prompt.shape[1]
  seqs = torch.cat([prompt[:, None].expand(b, k, p), cands], -1).reshape(b * k, p + l)

  def run():
    with torch.no_grad():
      out = []
      for x in seqs.split(_CHUNK.value):
        logp = torch.log_softmax(model(x).logits[:, p - 1:-1].float(), -1)
        out.append(logp.gather(-1, x[:, p:, None])[..., 0].sum(-1))
      return torch.cat(out)

  run()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    run()
    times.append(time.perf_counter() - start)
  return b * k / float(np.median(times))


def torch_t5_scores(config: T5Config, params, batch: TokenBatch, repeats: int):
  """Naive scoring of the same T5 checkpoint by transformers' `T5ForConditionalGeneration`:
  `(candidates per second, scores [b, k])`, or None without torch."""
  try:
    import torch
    import transformers
  except ImportError:
    return None
  with tempfile.TemporaryDirectory() as folder:
    save_pretrained(folder, config, params)
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
  prompt = torch.tensor(np.asarray(batch.prompt_ids), dtype=torch.long)
  cands = torch.tensor(np.asarray(batch.cand_ids), dtype=torch.long)
  b, k, l = cands.shape
  prompts = prompt[:, None].expand(b, k, prompt.shape[1]).reshape(b * k, -1)
  cands = cands.reshape(b * k, l)
  dec = torch.cat([torch.full((b * k, 1), config.decoder_start_token_id), cands[:, :-1]], 1)

  def run():
    with torch.no_grad():
      out = []
      for x, d, c in zip(prompts.split(_CHUNK.value), dec.split(_CHUNK.value),
                         cands.split(_CHUNK.value)):
        logp = torch.log_softmax(model(input_ids=x, decoder_input_ids=d).logits.float(), -1)
        out.append(logp.gather(-1, c[..., None])[..., 0].sum(-1))
      return torch.cat(out)

  scores = run().reshape(b, k).numpy()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    run()
    times.append(time.perf_counter() - start)
  return b * k / float(np.median(times)), scores


def decoder_model():
  config = DecoderConfig(vocab_size=_VOCAB.value, hidden_size=_D.value,
                         intermediate_size=3 * _D.value, num_layers=_LAYERS.value,
                         num_heads=4, num_kv_heads=2, head_dim=_D.value // 4,
                         tie_word_embeddings=True)
  return config, Decoder(config), init_params(config, jax.random.key(0))


def t5_model():
  config = T5Config(vocab_size=_VOCAB.value, d_model=_D.value, d_kv=_D.value // 4,
                    d_ff=2 * _D.value, num_layers=_T5_LAYERS.value,
                    num_decoder_layers=_T5_LAYERS.value, num_heads=4)
  return config, t5_lib.T5(config), t5_lib.init_params(config, jax.random.key(0))


def main(argv):
  del argv
  models = {"decoder": decoder_model()}
  if _T5_LAYERS.value > 0:
    models["t5"] = t5_model()
  rng = np.random.default_rng(0)
  report = {"device": str(jax.devices()[0])}
  torch_missing = False
  print(f"{'model':8s} {'setting':20s} {'shared cand/s':>14s} {'naive cand/s':>14s} {'ratio':>7s} "
        f"{'torch cand/s':>13s} {'vs torch':>9s} {'max |diff|':>11s}")
  for kind, (config, model, params) in models.items():
    report[kind] = {"model": {"layers": config.num_layers, "d": config.hidden_size,
                              "vocab": config.vocab_size, "params": config.num_params()}}
    shared = jax.jit(lambda p, b, model=model: make_candidate_scorer(model)(p, b).log_probs)
    naive = jax.jit((make_naive_t5 if kind == "t5" else make_naive)(model, _CHUNK.value))
    for name, (states, p, k, l) in SETTINGS.items():
      batch = make_batch(rng, config.vocab_size, states, p, k, l)
      ours = shared(params, batch)
      diff = float(jnp.abs(ours - naive(params, batch)).max())
      t_shared = timed(shared, params, batch, repeats=_REPEATS.value)
      t_naive = timed(naive, params, batch, repeats=_REPEATS.value)
      row = {"shared_cand_per_s": states * k / t_shared, "naive_cand_per_s": states * k / t_naive,
             "shared_over_naive": t_naive / t_shared, "max_abs_diff": diff}
      if kind == "t5":
        torch_out = torch_t5_scores(config, params, batch, _REPEATS.value)
        torch_rate = None if torch_out is None else torch_out[0]
        if torch_out is not None:
          row["torch_max_abs_diff"] = float(np.abs(torch_out[1] - np.asarray(ours)).max())
      else:
        torch_rate = torch_candidates_per_s(config, params, batch, _REPEATS.value)
      torch_missing |= torch_rate is None
      row["torch_naive_cand_per_s"] = torch_rate
      row["shared_over_torch"] = (None if torch_rate is None
                                  else states * k / t_shared / torch_rate)
      report[kind][name] = row
      torch_text = ("skipped", "") if torch_rate is None else (
          f"{torch_rate:13.0f}", f"{row['shared_over_torch']:8.1f}x")
      print(f"{kind:8s} {name:20s} {row['shared_cand_per_s']:14.0f} "
            f"{row['naive_cand_per_s']:14.0f} {row['shared_over_naive']:6.1f}x "
            f"{torch_text[0]:>13s} {torch_text[1]:>9s} {diff:11.2e}")
    report[kind]["compiles"] = count_steady_state_compiles(model, params, config.vocab_size, rng)
    print(f"{kind} compilations: {report[kind]['compiles']}")
  if torch_missing:
    print("note: torch is not importable here, so the PyTorch columns are skipped")
  print(json.dumps(report))


if __name__ == "__main__":
  app.run(main)
