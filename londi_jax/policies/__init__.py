"""Flax LM policies: a Llama-family decoder and a T5 encoder-decoder, checkpoint loading,
candidate-action scoring."""

from londi_jax.policies.checkpoint import load_pretrained, save_pretrained
from londi_jax.policies.config import DecoderConfig, T5Config
from londi_jax.policies.flops import forward_flops, scoring_flops
from londi_jax.policies.model import Decoder, init_params
from londi_jax.policies.policy import Buckets, Policy, PolicyOutput
from londi_jax.policies.store import load_policy, save_policy
from londi_jax.policies.t5 import T5
from londi_jax.policies.tokenizer import Tokenizer, build_word_tokenizer

__all__ = ["Buckets", "Decoder", "DecoderConfig", "Policy", "PolicyOutput", "T5", "T5Config",
           "Tokenizer", "build_word_tokenizer", "forward_flops", "init_params", "load_policy",
           "load_pretrained", "save_policy", "save_pretrained", "scoring_flops"]
