"""The switcher's view of a state, `phi(s)` (docs/architecture.md: what the switcher sees).

    phi(s) = [ h_small(prompt) | max_prob, entropy, margin | t / T | h_small(history), its stats ]

`h_small` is the small LM's mean-pooled final hidden state on its prompt (computed anyway, since
the small LM runs on every row; it is data to the switcher, so no gradient reaches the LM), the
three confidence statistics describe the small LM's action distribution, and `t / T` is the
episode's time fraction (step over the environment's step limit). The optional history view
(`features.history`) is the small LM's pooled state and confidence on the *large* LM's prompt,
which holds the earlier observations and actions the large LM's edge comes from; it costs one more
small-LM pass per step, counted as small-LM compute. Each part is switched by `config.features`;
the remaining-budget fraction `z / n` enters the Q network itself whenever a hard budget is set
(`switching.network.SwitchQNetwork`).
"""

from __future__ import annotations

from typing import Any, Sequence

import ml_collections
import numpy as np

from londi_jax.policies.policy import PolicyOutput


def feature_dim(config: ml_collections.ConfigDict, hidden_size: int) -> int:
  """Length `F` of `phi(s)`; at least 1 (a constant when every part is off)."""
  f = config.features
  dim = hidden_size * bool(f.hidden) + 3 * bool(f.confidence) + bool(f.time)
  dim += (hidden_size + 3) * uses_history(config)
  return max(dim, 1)


def uses_history(config: ml_collections.ConfigDict) -> bool:
  """Whether `phi(s)` holds the history view (a small-LM pass on the large LM's prompt)."""
  return bool(config.features.get("history", False))


def history_view(config: ml_collections.ConfigDict, small, rows: Sequence[Any],
                 candidates: Sequence[Sequence[str]]):
  """The small LM (an `LMRunner`) on the rows' large-LM prompts, or None without the view."""
  if not uses_history(config):
    return None
  return small([row.prompt("large") for row in rows], candidates)


def build_features(config: ml_collections.ConfigDict, out: PolicyOutput,
                   time_fraction: np.ndarray, history: PolicyOutput | None = None) -> np.ndarray:
  """`phi(s)` `[R, F]` float32 from the small LM's output on `R` rows, `t / T` `[R]` and, with
  `features.history`, the small LM's output on their large-LM prompts (`history_view`)."""
  f = config.features
  rows = len(time_fraction)
  parts = []
  if f.hidden:
    parts.append(np.asarray(out.features, np.float32))  # [R, d]
  if f.confidence:
    parts.append(np.stack([out.max_prob, out.entropy, out.margin], -1).astype(np.float32))
  if f.time:
    parts.append(np.asarray(time_fraction, np.float32)[:, None])  # [R, 1]
  if uses_history(config):
    if history is None:
      raise ValueError("features.history is on: pass the small LM's output on the large prompts")
    parts.append(np.asarray(history.features, np.float32))  # [R, d]
    parts.append(np.stack([history.max_prob, history.entropy, history.margin], -1)
                 .astype(np.float32))
  if not parts:
    return np.ones((rows, 1), np.float32)
  return np.concatenate(parts, axis=-1)
