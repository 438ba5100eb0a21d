"""Candidates scored per second: shared prompt vs one pass per candidate (vs PyTorch if present).

    python -m bench.scoring [--repeats 3] [--layers 4 --d 128 --vocab 128]

Two settings: BabyAI-Text (6 candidates of 2 tokens, 32 states, 64-token prompts) and a
ScienceWorld-sized one (1,000 candidates of 8 tokens, 1 state, 64-token prompt). `shared` is
`scoring.make_candidate_scorer` (prompt once, candidates over its cached keys and values);
`naive` runs prompt + candidate through the model once per candidate, batched. Also counts
backend compilations over a steady-state run of `Policy` calls whose sizes vary within one bucket.
With torch importable, the same checkpoint is scored naively by transformers' `LlamaForCausalLM`.
Prints a table and, last, one JSON line.
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
from londi_jax.policies.model import Decoder
from londi_jax.policies.scoring import TokenBatch, make_candidate_scorer

_REPEATS = flags.DEFINE_integer("repeats", 3, "timed calls per setting")
_LAYERS = flags.DEFINE_integer("layers", 4, "decoder layers")
_D = flags.DEFINE_integer("d", 128, "model width")
_VOCAB = flags.DEFINE_integer("vocab", 128, "vocabulary size")
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


def main(argv):
  del argv
  config = DecoderConfig(vocab_size=_VOCAB.value, hidden_size=_D.value,
                         intermediate_size=3 * _D.value, num_layers=_LAYERS.value,
                         num_heads=4, num_kv_heads=2, head_dim=_D.value // 4,
                         tie_word_embeddings=True)
  model = Decoder(config)
  params = init_params(config, jax.random.key(0))
  shared = jax.jit(lambda p, b: make_candidate_scorer(model)(p, b).log_probs)
  naive = jax.jit(make_naive(model, _CHUNK.value))
  rng = np.random.default_rng(0)
  report = {"device": str(jax.devices()[0]), "model": {"layers": config.num_layers,
                                                       "d": config.hidden_size,
                                                       "vocab": config.vocab_size,
                                                       "params": config.num_params()}}
  print(f"{'setting':20s} {'shared cand/s':>14s} {'naive cand/s':>14s} {'ratio':>7s} "
        f"{'torch cand/s':>13s} {'max |diff|':>11s}")
  for name, (states, p, k, l) in SETTINGS.items():
    batch = make_batch(rng, config.vocab_size, states, p, k, l)
    diff = float(jnp.abs(shared(params, batch) - naive(params, batch)).max())
    t_shared = timed(shared, params, batch, repeats=_REPEATS.value)
    t_naive = timed(naive, params, batch, repeats=_REPEATS.value)
    torch_rate = torch_candidates_per_s(config, params, batch, _REPEATS.value)
    row = {"shared_cand_per_s": states * k / t_shared, "naive_cand_per_s": states * k / t_naive,
           "shared_over_naive": t_naive / t_shared, "max_abs_diff": diff,
           "torch_naive_cand_per_s": torch_rate,
           "shared_over_torch": None if torch_rate is None else states * k / t_shared / torch_rate}
    report[name] = row
    torch_text = "skipped" if torch_rate is None else f"{torch_rate:13.0f}"
    print(f"{name:20s} {row['shared_cand_per_s']:14.0f} {row['naive_cand_per_s']:14.0f} "
          f"{row['shared_over_naive']:6.1f}x {torch_text:>13s} {diff:11.2e}")
  report["compiles"] = count_steady_state_compiles(model, params, config.vocab_size, rng)
  print(f"compilations: {report['compiles']}")
  print(json.dumps(report))


if __name__ == "__main__":
  app.run(main)
