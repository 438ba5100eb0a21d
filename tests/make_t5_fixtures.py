"""Writes tiny random T5 checkpoints and their PyTorch outputs for the T5 parity tests.

Needs torch and transformers, which the project's environment does not have; run it once from a
separate one and commit the output:

    python3 -m venv /tmp/t5torch
    /tmp/t5torch/bin/pip install torch==2.13.0 transformers==5.24.0 safetensors numpy
    /tmp/t5torch/bin/python tests/make_t5_fixtures.py

Each `tests/fixtures/t5/<name>/` holds `config.json`, the safetensors weights and `reference.npz`:

- `input_ids`, `attention_mask`, `decoder_input_ids`, `decoder_attention_mask`: a right-padded
  batch; `encoder_hidden` and `logits`: `T5ForConditionalGeneration`'s encoder output and logits
  on it, from the folder as transformers reads it back;
- `cand_prompt_ids`, `cand_prompt_mask` `[S, P]`, `cand_ids`, `cand_mask` `[S, K, L]`: states and
  their candidate actions (each ending with `</s>`, as GLAM tokenises them), and `cand_log_probs`
  `[S, K]`: each candidate's summed token log-probability from one full forward pass per
  candidate with decoder input `[start] + candidate`, as GLAM (lamorel) scores them;
- `bucket_positions`, `buckets_bidirectional`, `buckets_causal`: transformers' relative-position
  buckets of the fixture's config, and `buckets_default_*` those of the default 32 buckets and
  distance 128.

Fixtures:

- `flan_t5`: T5 v1.1 / Flan-T5 shape (gated-gelu, untied head, no output scaling), 3 decoder
  blocks over 2 encoder blocks, 8 buckets up to distance 16 (so short inputs reach the
  logarithmic buckets), sharded, with a `config.json` as the Hub's Flan-T5 ones read
  (`tie_word_embeddings: false`, no `scale_decoder_outputs`);
- `t5`: original T5 shape (ReLU, tied head, output scaled by `d_model ** -0.5`), one file, the
  `config.json` transformers 5 writes;
- `flan_t5_bf16`: `flan_t5` saved in bfloat16; its reference is the float32 model's.
"""

from __future__ import annotations

import copy
import json
import os
import shutil

import numpy as np
import torch
import transformers
from transformers.models.t5.modeling_t5 import T5Attention

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "t5")

COMMON = dict(vocab_size=96, d_model=16, d_kv=8, d_ff=32, num_heads=2, num_layers=2,
              decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, dropout_rate=0.0,
              layer_norm_epsilon=1e-6)

CONFIGS = {
    "flan_t5": dict(feed_forward_proj="gated-gelu", num_decoder_layers=3, tie_word_embeddings=False,
                    relative_attention_num_buckets=8, relative_attention_max_distance=16),
    "t5": dict(feed_forward_proj="relu", num_decoder_layers=2, tie_word_embeddings=True),
}

PROMPT_LENGTHS = (20, 11, 4)
DECODER_LENGTHS = (6, 3, 1)
CAND_LENGTHS = ((3, 1, 4, 2), (2, 4, 1, 3))  # tokens of each state's candidates, </s> included
EOS = 1


def _randomise(model: torch.nn.Module, seed: int) -> None:
  """Larger-than-default random weights, so that outputs differ visibly between positions."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      noise = torch.randn(p.shape, generator=g)
      if name.endswith("layer_norm.weight"):
        p.copy_(1.0 + 0.2 * noise)
      elif name in ("shared.weight", "lm_head.weight") or "relative_attention_bias" in name:
        p.copy_(noise)
      else:
        p.copy_(0.3 * noise)


def _right_padded(rng, lengths, vocab, width=None) -> tuple[np.ndarray, np.ndarray]:
  width = width or max(lengths)
  ids = rng.integers(3, vocab, size=(len(lengths), width))  # [batch, tokens]
  mask = (np.arange(width)[None] < np.array(lengths)[:, None]).astype(np.int64)
  return ids * mask, mask


def _candidates(rng, vocab) -> tuple[np.ndarray, np.ndarray]:
  k = max(len(c) for c in CAND_LENGTHS)
  width = max(max(c) for c in CAND_LENGTHS)
  ids = np.zeros((len(CAND_LENGTHS), k, width), np.int64)  # [states, candidates, tokens]
  mask = np.zeros_like(ids)
  for i, lengths in enumerate(CAND_LENGTHS):
    for j, n in enumerate(lengths):
      ids[i, j, :n] = list(rng.integers(3, vocab, size=n - 1)) + [EOS]
      mask[i, j, :n] = 1
  return ids, mask


def _glam_scores(model, prompt_ids, prompt_mask, cand_ids, cand_mask) -> np.ndarray:
  """sum_j log p(a_j | prompt, a_<j) of every candidate, one full forward pass per candidate."""
  s, k, width = cand_ids.shape
  start = model.config.decoder_start_token_id
  out = np.zeros((s, k), np.float32)
  with torch.no_grad():
    for i in range(s):
      dec = np.concatenate([np.full((k, 1), start), cand_ids[i]], 1)  # [k, 1 + width]
      dec_mask = np.concatenate([np.ones((k, 1), np.int64), cand_mask[i]], 1)
      logits = model(input_ids=torch.tensor(np.repeat(prompt_ids[i:i + 1], k, 0)),
                     attention_mask=torch.tensor(np.repeat(prompt_mask[i:i + 1], k, 0)),
                     decoder_input_ids=torch.tensor(dec),
                     decoder_attention_mask=torch.tensor(dec_mask)).logits
      logp = torch.log_softmax(logits[:, :-1].float(), -1)  # [k, width, vocab]
      tok = logp.gather(-1, torch.tensor(cand_ids[i])[..., None])[..., 0].numpy()
      out[i] = (tok * cand_mask[i]).sum(-1)
  return out


def _buckets(config) -> dict[str, np.ndarray]:
  positions = np.arange(-300, 301)
  rel = torch.tensor(positions)
  out = {"bucket_positions": positions}
  for prefix, nb, md in (("buckets", config.relative_attention_num_buckets,
                          config.relative_attention_max_distance), ("buckets_default", 32, 128)):
    for direction, bidirectional in (("bidirectional", True), ("causal", False)):
      out[f"{prefix}_{direction}"] = T5Attention._relative_position_bucket(
          rel, bidirectional=bidirectional, num_buckets=nb, max_distance=md).numpy()
  return out


def _reference(model, rng) -> dict[str, np.ndarray]:
  vocab = model.config.vocab_size
  ids, mask = _right_padded(rng, PROMPT_LENGTHS, vocab)
  dec, dec_mask = _right_padded(rng, DECODER_LENGTHS, vocab)
  dec[:, 0] = model.config.decoder_start_token_id
  cand_ids, cand_mask = _candidates(rng, vocab)
  with torch.no_grad():
    enc = model.encoder(input_ids=torch.tensor(ids),
                        attention_mask=torch.tensor(mask)).last_hidden_state
    logits = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                   decoder_input_ids=torch.tensor(dec),
                   decoder_attention_mask=torch.tensor(dec_mask)).logits
  prompt_ids, prompt_mask = ids[:len(CAND_LENGTHS)], mask[:len(CAND_LENGTHS)]
  return dict(input_ids=ids, attention_mask=mask, decoder_input_ids=dec,
              decoder_attention_mask=dec_mask, encoder_hidden=enc.float().numpy(),
              logits=logits.float().numpy(), cand_prompt_ids=prompt_ids,
              cand_prompt_mask=prompt_mask, cand_ids=cand_ids, cand_mask=cand_mask,
              cand_log_probs=_glam_scores(model, prompt_ids, prompt_mask, cand_ids, cand_mask),
              **_buckets(model.config))


def _build(name: str, seed: int) -> transformers.T5ForConditionalGeneration:
  torch.manual_seed(seed)
  model = transformers.T5ForConditionalGeneration(
      transformers.T5Config(**COMMON, **CONFIGS[name])).eval()
  _randomise(model, seed)
  if not model.config.scale_decoder_outputs:
    # transformers 5 ties the head at construction; T5 v1.1 / Flan-T5 have their own.
    g = torch.Generator().manual_seed(seed + 100)
    model.lm_head.weight = torch.nn.Parameter(torch.randn(model.lm_head.weight.shape, generator=g))
  return model


def _write(folder: str, model, dtype, shard: str | None, hub_config: bool) -> None:
  save = model.to(dtype) if dtype != torch.float32 else model
  save.save_pretrained(folder, safe_serialization=True,
                       **({"max_shard_size": shard} if shard else {}))
  if hub_config:  # as google/flan-t5-* config.json files read (written by transformers 4)
    path = os.path.join(folder, "config.json")
    with open(path) as f:
      hf = json.load(f)
    hf["tie_word_embeddings"] = False
    hf.pop("scale_decoder_outputs", None)
    with open(path, "w") as f:
      json.dump(hf, f, indent=2)


def main() -> None:
  shutil.rmtree(OUT, ignore_errors=True)
  plan = {"flan_t5": ("flan_t5", torch.float32, "30KB", True),
          "t5": ("t5", torch.float32, None, False),
          "flan_t5_bf16": ("flan_t5", torch.bfloat16, None, False)}
  models = {name: _build(name, seed) for seed, name in enumerate(CONFIGS)}
  for name, (base, dtype, shard, hub_config) in plan.items():
    folder = os.path.join(OUT, name)
    model = copy.deepcopy(models[base])
    _write(folder, model, dtype, shard, hub_config)
    if dtype == torch.float32:
      # The reference is the folder as transformers reads it back, config.json included.
      ref_model = transformers.T5ForConditionalGeneration.from_pretrained(folder).eval()
      with torch.no_grad():
        for (n, p), (_, q) in zip(ref_model.named_parameters(), models[base].named_parameters()):
          assert torch.equal(p, q), n
    else:
      ref_model = models[base]
    ref = _reference(ref_model, np.random.default_rng(0))
    np.savez_compressed(os.path.join(folder, "reference.npz"), **ref)
    files = sorted(os.listdir(folder))
    size = sum(os.path.getsize(os.path.join(folder, f)) for f in files)
    print(f"{name}: {files} {size / 1e3:.0f} KB; |logits| max {np.abs(ref['logits']).max():.2f}")


if __name__ == "__main__":
  main()
