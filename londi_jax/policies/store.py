"""Saving and loading a whole policy: params (Orbax), model config, tokenizer and metadata.

A policy folder reads back with no other input:

    folder/config.json      Hugging Face style model config (`DecoderConfig.to_hf`)
    folder/policy.json      format version, temperature, metadata (prompt config, metrics)
    folder/tokenizer/       `tokenizer.json` + `tokenizer_config.json`
    folder/params/          Orbax `StandardCheckpointer` pytree
"""

from __future__ import annotations

import json
import os
import shutil

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from londi_jax.policies.config import DecoderConfig
from londi_jax.policies.model import Decoder
from londi_jax.policies.policy import Policy
from londi_jax.policies.tokenizer import Tokenizer

FORMAT_VERSION = 1


def abstract_params(config: DecoderConfig):
  """Shapes and dtypes of a decoder's params, without allocating them."""
  return jax.eval_shape(
      lambda: Decoder(config).init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32))["params"])


def save_policy(folder: str, config: DecoderConfig, params, tokenizer: Tokenizer, *,
                temperature: float = 1.0, meta: dict | None = None) -> None:
  """Writes a policy folder (replacing one already there)."""
  folder = os.path.abspath(folder)
  if os.path.exists(folder):
    shutil.rmtree(folder)
  os.makedirs(folder)
  with open(os.path.join(folder, "config.json"), "w") as f:
    json.dump(config.to_hf(), f, indent=2)
  with open(os.path.join(folder, "policy.json"), "w") as f:
    json.dump({"format_version": FORMAT_VERSION, "temperature": temperature,
               "meta": meta or {}}, f, indent=2)
  tokenizer.save(os.path.join(folder, "tokenizer"))
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(os.path.join(folder, "params"), params)
  checkpointer.wait_until_finished()


def load_policy(folder: str, **policy_kwargs) -> Policy:
  """Reads a policy folder written by `save_policy` (or `launch.pretrain`).

  Args:
    folder: the policy folder.
    **policy_kwargs: passed to `Policy` (e.g. `temperature`, `buckets`, `seed`), overriding the
      saved temperature.
  """
  folder = os.path.abspath(folder)
  with open(os.path.join(folder, "config.json")) as f:
    config = DecoderConfig.from_hf(json.load(f))
  with open(os.path.join(folder, "policy.json")) as f:
    info = json.load(f)
  if info["format_version"] > FORMAT_VERSION:
    raise ValueError(f"policy format {info['format_version']} is newer than {FORMAT_VERSION}")
  params = ocp.StandardCheckpointer().restore(os.path.join(folder, "params"),
                                              abstract_params(config))
  tokenizer = Tokenizer.load(os.path.join(folder, "tokenizer"))
  policy_kwargs.setdefault("temperature", info["temperature"])
  return Policy(Decoder(config), params, tokenizer, meta=info["meta"], **policy_kwargs)
