"""The word-level tokenizer: built from text, saved in the HF format, read back by AutoTokenizer."""

import transformers

from londi_jax.policies import build_word_tokenizer
from londi_jax.policies.tokenizer import Tokenizer


def test_word_tokenizer_round_trips_through_autotokenizer(tmp_path):
  tok = build_word_tokenizer(["go to the red_ball\no: wall f2 red_ball l1f2", "a: turn left"])
  ids = tok.encode_prompts(["go to the red_ball", "o: purple_key"])
  assert ids[0][0] == tok.bos_id == 2
  assert ids[1][-1] == tok.hf.unk_token_id == 1
  assert len(ids[0]) == 5
  tok.save(str(tmp_path))
  again = Tokenizer.load(str(tmp_path))
  assert again.encode_prompts(["go to the red_ball", "o: purple_key"]) == ids
  assert again.encode_candidates(["turn left"]) == tok.encode_candidates(["turn left"])
  assert again.pad_id == 0 and again.vocab_size == tok.vocab_size
  auto = transformers.AutoTokenizer.from_pretrained(str(tmp_path), local_files_only=True)
  fast = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
  expected = [tok.hf.convert_tokens_to_ids(w) for w in ("wall", "f2", "red_ball")]
  assert auto("wall f2 red_ball", add_special_tokens=False)["input_ids"] == expected
  assert fast("wall f2 red_ball", add_special_tokens=False)["input_ids"] == expected
