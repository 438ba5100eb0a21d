"""Tokenizers for the policies: a checkpoint's own, or a word-level one built from env text.

Both are Hugging Face fast tokenizers, saved as `tokenizer.json` + `tokenizer_config.json`, so
`transformers.AutoTokenizer.from_pretrained(folder)` reads either back offline.

A T5 tokenizer (SentencePiece, no beginning-of-sequence token, `</s>` appended by its own
post-processor) keeps T5's convention: prompts and candidate actions both end with `</s>`, as
GLAM tokenises them (`tokenizer(text)` with special tokens, for the encoder input and for each
action the decoder scores).
"""

from __future__ import annotations

import collections
import os
from typing import Iterable, Sequence

import tokenizers
import transformers
from tokenizers import models, pre_tokenizers

PAD, UNK, BOS = "[PAD]", "[UNK]", "[BOS]"


class Tokenizer:
  """Text to token ids without special tokens, plus an optional beginning-of-sequence id.

  Attributes:
    hf: the wrapped `transformers` tokenizer.
    bos_id: prepended to prompts when not None.
    pad_id: the id padded positions hold (never attended to).
    vocab_size: size of the id space.
    candidate_prefix: put before each candidate action (a space, for BPE vocabularies).
    eos_suffix: whether prompts and candidates end with the end-of-sequence id (T5's convention,
      taken from the tokenizer: no BOS token, and its own special tokens append EOS).
  """

  def __init__(self, hf: transformers.PreTrainedTokenizerBase, candidate_prefix: str = " "):
    self.hf = hf
    self.candidate_prefix = candidate_prefix
    self.bos_id = hf.bos_token_id
    self.pad_id = hf.pad_token_id if hf.pad_token_id is not None else (
        hf.eos_token_id if hf.eos_token_id is not None else 0)
    self.vocab_size = len(hf)
    self.eos_suffix = appends_eos(hf)
    self._suffix = [hf.eos_token_id] if self.eos_suffix else []

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    if not texts:
      return []
    return self.hf(list(texts), add_special_tokens=False)["input_ids"]

  def encode_prompts(self, prompts: Sequence[str]) -> list[list[int]]:
    ids = self.encode_batch(prompts)
    if self.eos_suffix:
      return [x + self._suffix for x in ids]
    return [[self.bos_id, *x] if self.bos_id is not None else x for x in ids]

  def encode_candidates(self, candidates: Sequence[str]) -> list[list[int]]:
    """Token ids of each candidate action.

    Raises:
      ValueError: a candidate encodes to no token (it could never be scored).
    """
    ids = self.encode_batch([self.candidate_prefix + c for c in candidates])
    empty = [c for c, x in zip(candidates, ids) if not x]
    if empty:
      raise ValueError(f"candidates {empty[:4]} encode to no token with {type(self.hf).__name__}")
    return [x + self._suffix for x in ids]

  def save(self, folder: str) -> None:
    os.makedirs(folder, exist_ok=True)
    self.hf.save_pretrained(folder)

  @classmethod
  def load(cls, folder: str, candidate_prefix: str | None = None) -> "Tokenizer":
    """A checkpoint's (or a saved word-level) tokenizer, through `AutoTokenizer`, offline."""
    hf = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    if candidate_prefix is None:
      candidate_prefix = "" if hf.unk_token == UNK or appends_eos(hf) else " "
    return cls(hf, candidate_prefix)


def appends_eos(hf: transformers.PreTrainedTokenizerBase) -> bool:
  """Whether `hf` follows T5's convention: no BOS token, and EOS appended to every text by its
  own special tokens."""
  if hf.bos_token_id is not None or hf.eos_token_id is None:
    return False
  ids = hf("a")["input_ids"]
  return bool(ids) and ids[-1] == hf.eos_token_id and ids != hf("a", add_special_tokens=False)[
      "input_ids"]


def build_word_tokenizer(texts: Iterable[str], min_count: int = 1) -> Tokenizer:
  """A word-level tokenizer over the words of `texts` (split on spaces and punctuation).

  Ids: `[PAD]` 0, `[UNK]` 1, `[BOS]` 2, then words by decreasing count (ties alphabetical).
  """
  counts = collections.Counter()
  split = pre_tokenizers.Whitespace()
  for text in texts:
    counts.update(w for w, _ in split.pre_tokenize_str(text))
  words = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
  vocab = {tok: i for i, tok in enumerate([PAD, UNK, BOS, *words])}
  tok = tokenizers.Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
  tok.pre_tokenizer = pre_tokenizers.Whitespace()
  hf = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, unk_token=UNK,
                                            bos_token=BOS)
  return Tokenizer(hf, candidate_prefix="")
