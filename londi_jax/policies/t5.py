"""A T5 encoder-decoder in flax.linen: original T5, T5 v1.1 and Flan-T5.

T5 (Raffel et al. 2020, "Exploring the limits of transfer learning with a unified text-to-text
transformer", JMLR 21:140) as transformers' `T5ForConditionalGeneration` computes it:

- a shared token embedding for the encoder, the decoder and (when tied) the output head;
- pre-norm blocks `x + attn(norm(x))`, `x + ff(norm(x))`; the norm is T5's RMS layer norm, with
  no mean subtraction and no bias (Zhang and Sennrich 2019);
- attention scores `q k^T + b(j - i)` with no `1 / sqrt(d)` scaling (Mesh TensorFlow folds it
  into the initialisation) and a learned bias per head and relative-position bucket (Shaw et al.
  2018; buckets in Sec. 2.1 of Raffel et al.), computed by the first block of each stack and
  shared by all its blocks; bidirectional in the encoder, causal in the decoder; cross-attention
  has no position bias;
- feed-forward `wo(relu(wi x))` (original T5) or `wo(gelu_tanh(wi_0 x) * wi_1 x)` (T5 v1.1 and
  Flan-T5, Shazeer 2020);
- a tied head with the decoder output scaled by `d_model ** -0.5` (original T5), or an untied
  head without scaling (T5 v1.1 and Flan-T5).

Parameter names follow Hugging Face's (`decoder/block_1/layer_1/EncDecAttention/q/kernel` for
`decoder.block.1.layer.1.EncDecAttention.q.weight`), so checkpoints map one to one (`flax_path`,
`hf_name`).

Decoder sequences carry a group axis, `[batch, groups, tokens]`, as in `model.Decoder`: candidate
scoring decodes every candidate action of a state as its own group, attending causally to itself,
to a shared decoder prefix (the start token) and, through cross-attention, to the state's encoder
output `[batch, prompt_tokens, ...]`, which is never copied per candidate.
"""

from __future__ import annotations

import math
import re
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from londi_jax.policies.config import T5Config
from londi_jax.policies.model import RMSNorm

KV = tuple[jax.Array, jax.Array]
# Keys, values, mask and bias of one block of keys (see `attend`).
KeyBlock = tuple[jax.Array, jax.Array, jax.Array, jax.Array | None]

_MASKED = -1e30


def relative_position_bucket(relative_position: np.ndarray, bidirectional: bool,
                             num_buckets: int = 32, max_distance: int = 128) -> np.ndarray:
  """The bucket of each relative position `key - query` (Raffel et al. 2020, Sec. 2.1).

  Half of the buckets (per direction when bidirectional) hold the exact distances
  `0 .. max_exact - 1`; the rest split `[max_exact, max_distance)` logarithmically, and every
  larger distance shares the last bucket. A causal decoder maps every future position
  (`key > query`) to bucket 0. Float32 arithmetic as in Mesh TensorFlow and transformers, so
  boundary distances land in the same bucket.

  Positions are static in every call of this module, so this runs in numpy at trace time.

  Args:
    relative_position: int array of `key_position - query_position`.
    bidirectional: whether keys after the query get buckets of their own (the encoder).
    num_buckets: buckets in all.
    max_distance: distance from which on positions share a bucket.

  Returns:
    int32 buckets in `[0, num_buckets)`, shaped as `relative_position`.
  """
  rel = np.asarray(relative_position, np.int64)
  buckets = np.zeros_like(rel)
  if bidirectional:
    num_buckets //= 2
    buckets += (rel > 0) * num_buckets
    rel = np.abs(rel)
  else:
    rel = -np.minimum(rel, 0)
  max_exact = num_buckets // 2
  is_small = rel < max_exact
  with np.errstate(divide="ignore"):
    scaled = (np.log(rel.astype(np.float32) / np.float32(max_exact))
              / np.float32(math.log(max_distance / max_exact))
              * np.float32(num_buckets - max_exact))
  large = max_exact + np.where(is_small, 0, scaled).astype(np.int64)
  large = np.minimum(large, num_buckets - 1)
  return (buckets + np.where(is_small, rel, large)).astype(np.int32)


def attend(q: jax.Array, blocks: Sequence[KeyBlock]) -> jax.Array:
  """T5 attention: `softmax(q k^T + bias) v` with one softmax over every block's keys.

  There is no `1 / sqrt(d)` factor (T5 folds it into the initialisation of `q`). A block's keys
  either belong to each group (`[B, G, K, heads, d_kv]`) or are shared by every group of a row
  (`[B, K, heads, d_kv]`: the encoder output, or a shared decoder prefix), in which case they are
  broadcast inside the products and never copied per group.

  Args:
    q: [B, G, L, heads, d_kv].
    blocks: `(k, v, mask, bias)` per block of keys; `mask` bool, broadcastable to `[B, G, L, K]`,
      True where attention is allowed; `bias` `[heads, L, K]` or None.

  Returns:
    [B, G, L, heads * d_kv].
  """
  scores = []
  for k, v, mask, bias in blocks:
    spec = "bglhd,bgkhd->bghlk" if k.ndim == 5 else "bglhd,bkhd->bghlk"
    s = jnp.einsum(spec, q, k).astype(jnp.float32)  # [B, G, heads, L, K]
    if bias is not None:
      s = s + bias.astype(jnp.float32)
    scores.append(jnp.where(mask[:, :, None], s, _MASKED))
  probs = jax.nn.softmax(jnp.concatenate(scores, axis=-1), axis=-1).astype(q.dtype)
  out, start = 0.0, 0
  for (_, v, _, _), s in zip(blocks, scores):
    p = probs[..., start:start + s.shape[-1]]
    start += s.shape[-1]
    spec = "bghlk,bgkhd->bglhd" if v.ndim == 5 else "bghlk,bkhd->bglhd"
    out = out + jnp.einsum(spec, p, v)
  return out.reshape(*out.shape[:3], -1)


def _dense(config: T5Config, features: int, std: float, name: str | None = None) -> nn.Dense:
  return nn.Dense(features, use_bias=False, dtype=config.jnp_dtype, param_dtype=config.jnp_dtype,
                  kernel_init=nn.initializers.normal(std), name=name)


_ACTIVATIONS = {
    "relu": nn.relu,
    "gelu": lambda x: nn.gelu(x, approximate=False),
    "gelu_new": lambda x: nn.gelu(x, approximate=True),
    "silu": nn.silu,
}


class T5Attention(nn.Module):
  """q, k, v, o projections (no bias) and, in a stack's first block, the relative position bias.

  Initialisation as Mesh TensorFlow's: q `N(0, (d d_kv)^-1)`, k and v `N(0, 1 / d)`, o
  `N(0, 1 / (heads d_kv))`, the bias table `N(0, 1 / d)`.
  """

  config: T5Config
  has_relative_attention_bias: bool = False
  bidirectional: bool = True

  def setup(self):
    c = self.config
    self.q = _dense(c, c.inner_dim, (c.d_model * c.d_kv) ** -0.5)
    self.k = _dense(c, c.inner_dim, c.d_model ** -0.5)
    self.v = _dense(c, c.inner_dim, c.d_model ** -0.5)
    self.o = _dense(c, c.d_model, c.inner_dim ** -0.5)
    if self.has_relative_attention_bias:
      self.relative_attention_bias = nn.Embed(
          c.relative_attention_num_buckets, c.num_heads, dtype=c.jnp_dtype,
          param_dtype=c.jnp_dtype, embedding_init=nn.initializers.normal(c.d_model ** -0.5))

  def _heads(self, x: jax.Array) -> jax.Array:
    return x.reshape(*x.shape[:-1], self.config.num_heads, self.config.d_kv)

  def kv(self, x: jax.Array) -> KV:
    """Keys and values `[..., T, heads, d_kv]` of `x` `[..., T, d]`."""
    return self._heads(self.k(x)), self._heads(self.v(x))

  def position_bias(self, query_positions: np.ndarray, key_positions: np.ndarray) -> jax.Array:
    """The learned bias `[heads, Lq, Lk]` of each (query, key) pair of static positions."""
    c = self.config
    buckets = relative_position_bucket(
        key_positions[None, :] - query_positions[:, None], self.bidirectional,
        c.relative_attention_num_buckets, c.relative_attention_max_distance)  # [Lq, Lk]
    return jnp.transpose(self.relative_attention_bias(jnp.asarray(buckets)), (2, 0, 1))

  def __call__(self, x: jax.Array, blocks: Sequence[KeyBlock],
               own: tuple[jax.Array, jax.Array | None] | None = None
               ) -> tuple[jax.Array, KV | None]:
    """Attention of `x` [B, G, L, d] over `blocks` and, with `own = (mask, bias)`, over its own
    keys first (self-attention). Returns the output [B, G, L, d] and the own keys and values."""
    q = self._heads(self.q(x))  # [B, G, L, heads, d_kv]
    kv = None
    if own is not None:
      kv = self.kv(x)
      blocks = [(*kv, *own), *blocks]
    return self.o(attend(q, blocks)), kv


class T5LayerSelfAttention(nn.Module):
  config: T5Config
  has_relative_attention_bias: bool = False
  bidirectional: bool = True

  def setup(self):
    self.SelfAttention = T5Attention(self.config, self.has_relative_attention_bias,
                                     self.bidirectional)
    self.layer_norm = RMSNorm(self.config.layer_norm_epsilon, self.config.jnp_dtype)

  def __call__(self, x, mask, bias, prefix: Sequence[KeyBlock] = ()):
    out, kv = self.SelfAttention(self.layer_norm(x), prefix, own=(mask, bias))
    return x + out, kv


class T5LayerCrossAttention(nn.Module):
  config: T5Config

  def setup(self):
    self.EncDecAttention = T5Attention(self.config)
    self.layer_norm = RMSNorm(self.config.layer_norm_epsilon, self.config.jnp_dtype)

  def __call__(self, x, cross: KeyBlock):
    out, _ = self.EncDecAttention(self.layer_norm(x), [cross])
    return x + out


class T5DenseFF(nn.Module):
  """`wo(act(wi x))`, or gated `wo(act(wi_0 x) * wi_1 x)`; wi `N(0, 1/d)`, wo `N(0, 1/d_ff)`."""

  config: T5Config

  def setup(self):
    c = self.config
    if c.is_gated:
      self.wi_0 = _dense(c, c.d_ff, c.d_model ** -0.5)
      self.wi_1 = _dense(c, c.d_ff, c.d_model ** -0.5)
    else:
      self.wi = _dense(c, c.d_ff, c.d_model ** -0.5)
    self.wo = _dense(c, c.d_model, c.d_ff ** -0.5)

  def __call__(self, x):
    act = _ACTIVATIONS[self.config.activation]
    if self.config.is_gated:
      return self.wo(act(self.wi_0(x)) * self.wi_1(x))
    return self.wo(act(self.wi(x)))


class T5LayerFF(nn.Module):
  config: T5Config

  def setup(self):
    self.DenseReluDense = T5DenseFF(self.config)
    self.layer_norm = RMSNorm(self.config.layer_norm_epsilon, self.config.jnp_dtype)

  def __call__(self, x):
    return x + self.DenseReluDense(self.layer_norm(x))


class T5Block(nn.Module):
  """Self-attention, cross-attention (decoder only), feed-forward: `layer_0`, `layer_1`, ..."""

  config: T5Config
  has_relative_attention_bias: bool = False
  is_decoder: bool = False

  def setup(self):
    c = self.config
    layers = [T5LayerSelfAttention(c, self.has_relative_attention_bias, not self.is_decoder)]
    if self.is_decoder:
      layers.append(T5LayerCrossAttention(c))
    self.layer = layers + [T5LayerFF(c)]

  def __call__(self, x, mask, bias, prefix: Sequence[KeyBlock] = (),
               cross: KeyBlock | None = None):
    x, kv = self.layer[0](x, mask, bias, prefix)
    if self.is_decoder:
      x = self.layer[1](x, cross)
    return self.layer[-1](x), kv


class T5Stack(nn.Module):
  """The encoder's or the decoder's blocks and final norm (the embedding is the model's)."""

  config: T5Config
  is_decoder: bool = False

  def setup(self):
    c = self.config
    n = c.num_decoder_layers if self.is_decoder else c.num_layers
    self.block = [T5Block(c, i == 0, self.is_decoder) for i in range(n)]
    self.final_layer_norm = RMSNorm(c.layer_norm_epsilon, c.jnp_dtype)

  def position_bias(self, query_positions: np.ndarray, key_positions: np.ndarray) -> jax.Array:
    """The first block's bias `[heads, Lq, Lk]`, which every block of the stack adds."""
    return self.block[0].layer[0].SelfAttention.position_bias(query_positions, key_positions)

  def cross_kv(self, encoder_hidden: jax.Array) -> list[KV]:
    """Each decoder block's cross-attention keys and values `[B, P, heads, d_kv]`."""
    return [blk.layer[1].EncDecAttention.kv(encoder_hidden) for blk in self.block]

  def __call__(self, x: jax.Array, mask: jax.Array, positions: np.ndarray,
               prefix: Sequence[KV] | None = None, prefix_mask: jax.Array | None = None,
               prefix_positions: np.ndarray | None = None, cross: Sequence[KV] | None = None,
               cross_mask: jax.Array | None = None) -> tuple[jax.Array, list[KV]]:
    """Runs the blocks on `x` [B, G, L, d].

    Args:
      x: embedded tokens.
      mask: [B, G, L, L] (or broadcastable) bool attention among the group's own tokens.
      positions: static [L] positions of the tokens.
      prefix: per block, shared keys and values [B, S, heads, d_kv] every group attends to.
      prefix_mask: [B, S] bool.
      prefix_positions: static [S] positions of the prefix.
      cross: per block, cross-attention keys and values [B, P, heads, d_kv] (decoder).
      cross_mask: [B, P] bool, the real encoder tokens.

    Returns:
      The final normed hidden states [B, G, L, d], and every block's own keys and values
      [B, G, L, heads, d_kv].
    """
    bias = self.position_bias(positions, positions)
    prefix_blocks = []
    if prefix is not None:
      prefix_bias = self.position_bias(positions, prefix_positions)
      prefix_blocks = [(k, v, prefix_mask[:, None, None, :], prefix_bias) for k, v in prefix]
    kvs = []
    for i, blk in enumerate(self.block):
      cross_block = None
      if self.is_decoder:
        k, v = cross[i]
        cross_block = (k, v, cross_mask[:, None, None, :], None)
      x, kv = blk(x, mask, bias, prefix_blocks[i:i + 1], cross_block)
      kvs.append(kv)
    return self.final_layer_norm(x), kvs


class T5(nn.Module):
  """The encoder-decoder. `apply({"params": p}, input_ids, attention_mask, decoder_input_ids,
  decoder_attention_mask)` gives logits [B, T_dec, vocab] for right-padded inputs.

  Other entry points (through `apply(..., method=...)`): `encode` (the encoder's final hidden
  states), `cross_kv` (each decoder block's cross-attention keys and values of those states),
  `decode` (decoder token groups over the encoder output and an optional shared decoder prefix)
  and `logits`.
  """

  config: T5Config

  def setup(self):
    c = self.config
    self.shared = nn.Embed(c.vocab_size, c.d_model, dtype=c.jnp_dtype, param_dtype=c.jnp_dtype,
                           embedding_init=nn.initializers.normal(1.0))
    self.encoder = T5Stack(c, is_decoder=False)
    self.decoder = T5Stack(c, is_decoder=True)
    if not c.tie_word_embeddings:
      self.lm_head = _dense(c, c.vocab_size, 1.0)

  def __call__(self, input_ids: jax.Array, attention_mask: jax.Array | None = None,
               decoder_input_ids: jax.Array | None = None,
               decoder_attention_mask: jax.Array | None = None) -> jax.Array:
    """Logits [B, T_dec, vocab].

    Args:
      input_ids: [B, P] encoder tokens, right-padded.
      attention_mask: [B, P], 1 for real tokens; defaults to all ones.
      decoder_input_ids: [B, T_dec] decoder tokens (starting with `decoder_start_token_id`),
        right-padded; defaults to the start token alone.
      decoder_attention_mask: [B, T_dec]; defaults to all ones.
    """
    b, p = input_ids.shape
    if attention_mask is None:
      attention_mask = jnp.ones((b, p), jnp.int32)
    if decoder_input_ids is None:
      decoder_input_ids = jnp.full((b, 1), self.config.decoder_start_token_id, jnp.int32)
    t = decoder_input_ids.shape[1]
    if decoder_attention_mask is None:
      decoder_attention_mask = jnp.ones((b, t), jnp.int32)
    encoder_mask = attention_mask.astype(bool)
    hidden = self.encode(input_ids, attention_mask)
    causal = jnp.tril(jnp.ones((t, t), bool))
    mask = causal & decoder_attention_mask.astype(bool)[:, None, :]  # [B, T(query), T(key)]
    out, _ = self.decode(decoder_input_ids[:, None], mask[:, None], self.cross_kv(hidden),
                         encoder_mask)
    return self.logits(out[:, 0])

  def encode(self, input_ids: jax.Array, attention_mask: jax.Array | None = None) -> jax.Array:
    """The encoder's final (normed) hidden states [B, P, d] of right-padded `input_ids`."""
    b, p = input_ids.shape
    if attention_mask is None:
      attention_mask = jnp.ones((b, p), jnp.int32)
    x = self.shared(input_ids)[:, None]  # [B, 1, P, d]
    mask = attention_mask.astype(bool)[:, None, None, :]  # [B, 1, 1, P(key)]
    hidden, _ = self.encoder(x, mask, np.arange(p))
    return hidden[:, 0]

  def cross_kv(self, encoder_hidden: jax.Array) -> list[KV]:
    """Per decoder block, the cross-attention keys and values [B, P, heads, d_kv]: computed once
    per state, shared by all the state's candidates."""
    return self.decoder.cross_kv(encoder_hidden)

  def decode(self, decoder_input_ids: jax.Array, mask: jax.Array, cross: Sequence[KV],
             encoder_mask: jax.Array, prefix: Sequence[KV] | None = None,
             prefix_mask: jax.Array | None = None) -> tuple[jax.Array, list[KV]]:
    """Final decoder hidden states [B, G, L, d] of token groups, and their keys and values.

    A group's tokens attend causally (through `mask`) to themselves, to a shared decoder prefix
    of S tokens (positions `0 .. S-1`; the groups' tokens take positions `S ..`), and to the
    row's encoder output.

    Args:
      decoder_input_ids: [B, G, L].
      mask: [B, G, L, L] bool attention within each group.
      cross: per decoder block, keys and values [B, P, heads, d_kv] from `cross_kv`.
      encoder_mask: [B, P] bool, the real encoder tokens.
      prefix: per decoder block, keys and values [B, S, heads, d_kv] of a shared prefix.
      prefix_mask: [B, S] bool.
    """
    s = 0 if prefix is None else prefix[0][0].shape[1]
    length = decoder_input_ids.shape[-1]
    x = self.shared(decoder_input_ids)  # [B, G, L, d]
    return self.decoder(x, mask, s + np.arange(length), prefix, prefix_mask, np.arange(s), cross,
                        encoder_mask)

  def logits(self, hidden: jax.Array) -> jax.Array:
    """Vocabulary logits of decoder hidden states (scaled by `d ** -0.5` when configured)."""
    c = self.config
    if c.scale_decoder_outputs:
      hidden = hidden * jnp.asarray(c.d_model ** -0.5, hidden.dtype)
    if c.tie_word_embeddings:
      return self.shared.attend(hidden)
    return self.lm_head(hidden)


def init_params(config: T5Config, rng: jax.Array) -> dict:
  """Random parameters with Mesh TensorFlow's initialisation (as transformers' T5)."""
  ids = jnp.zeros((1, 2), jnp.int32)
  return T5(config).init(rng, ids, None, ids)["params"]


_BLOCK = re.compile(r"^(encoder|decoder)\.block\.(\d+)\.layer\.(\d+)\.(.+)\.weight$")
_IGNORED = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")


def flax_path(name: str) -> tuple[str, ...] | None:
  """The Flax param path of a Hugging Face T5 tensor name, or None for tensors the model lacks
  (the stacks' copies of the shared embedding, the decoder's unused cross-attention bias)."""
  if name == "shared.weight":
    return ("shared", "embedding")
  if name == "lm_head.weight":
    return ("lm_head", "kernel")
  if name in ("encoder.final_layer_norm.weight", "decoder.final_layer_norm.weight"):
    return (name.split(".")[0], "final_layer_norm", "weight")
  m = _BLOCK.match(name)
  if m is None:
    return None
  stack, block, layer, rest = m.groups()
  parts = tuple(rest.split("."))
  prefix = (stack, f"block_{block}", f"layer_{layer}")
  if parts == ("layer_norm",):
    return (*prefix, "layer_norm", "weight")
  if parts[-1] == "relative_attention_bias":
    return None if parts[0] == "EncDecAttention" else (*prefix, *parts, "embedding")
  return (*prefix, *parts, "kernel")


def hf_name(path: tuple[str, ...]) -> str:
  """The Hugging Face tensor name of a Flax param path (`flax_path`'s inverse)."""
  if path == ("shared", "embedding"):
    return "shared.weight"
  if path == ("lm_head", "kernel"):
    return "lm_head.weight"
  return ".".join(re.sub(r"^(block|layer)_(\d+)$", r"\1.\2", p) for p in path[:-1]) + ".weight"


def resolve_head(config: T5Config, flat: dict[tuple[str, ...], jax.Array]
                 ) -> tuple[T5Config, dict[tuple[str, ...], jax.Array]]:
  """Ties or unties the output head as the checkpoint holds it (transformers 5's rule).

  A config that ties the head keeps a checkpoint's `lm_head` only when it differs from the
  shared embedding (the head is then untied, the output scaling kept); an equal copy is dropped.
  """
  head = flat.get(("lm_head", "kernel"))
  if config.tie_word_embeddings and head is not None:
    shared = flat.get(("shared", "embedding"))
    if shared is not None and np.array_equal(np.asarray(head).T, np.asarray(shared)):
      flat = {k: v for k, v in flat.items() if k != ("lm_head", "kernel")}
    else:
      config = config.replace(tie_word_embeddings=False)
  return config, flat
