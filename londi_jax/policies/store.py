"""Saving and loading a whole policy: params (Orbax), model config, tokenizer and metadata.

A policy folder reads back with no other input:

    folder/config.json      Hugging Face style model config (`DecoderConfig.to_hf` or
                            `T5Config.to_hf`; `model_type` says which)
    folder/policy.json      format version, temperature, metadata (prompt config, metrics)
    folder/tokenizer/       `tokenizer.json` + `tokenizer_config.json`
    folder/params/          Orbax `StandardCheckpointer` pytree
"""

from __future__ import annotations

import json
import os
import shutil

import jax
import orbax.checkpoint as ocp

from londi_jax.policies.checkpoint import abstract_params, model_for
from londi_jax.policies.config import ModelConfig, config_from_hf
from londi_jax.policies.policy import Policy
from londi_jax.policies.tokenizer import Tokenizer

FORMAT_VERSION = 1


def save_policy(folder: str, config: ModelConfig, params, tokenizer: Tokenizer, *,
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
    config = config_from_hf(json.load(f))
  with open(os.path.join(folder, "policy.json")) as f:
    info = json.load(f)
  if info["format_version"] > FORMAT_VERSION:
    raise ValueError(f"policy format {info['format_version']} is newer than {FORMAT_VERSION}")
  # Onto this process's first device: the saved parameters name the device that wrote them,
  # which another process (or machine) may not have.
  local = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=local), abstract_params(config))
  params = ocp.StandardCheckpointer().restore(os.path.join(folder, "params"), target)
  tokenizer = Tokenizer.load(os.path.join(folder, "tokenizer"))
  policy_kwargs.setdefault("temperature", info["temperature"])
  return Policy(model_for(config), params, tokenizer, meta=info["meta"], **policy_kwargs)
