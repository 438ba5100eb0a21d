"""Flax LM policies: a Llama-family decoder, checkpoint loading, candidate-action scoring."""

from londi_jax.policies.checkpoint import load_pretrained, save_pretrained
from londi_jax.policies.config import DecoderConfig
from londi_jax.policies.model import Decoder, init_params

__all__ = ["Decoder", "DecoderConfig", "init_params", "load_pretrained", "save_pretrained"]
