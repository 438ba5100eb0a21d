"""The switcher's view of a state, `phi(s)` (docs/architecture.md: what the switcher sees).

    phi(s) = [ h_small(prompt) | max_prob, entropy, margin | t / T | h_small(history), its stats ]

`h_small` is the small LM's mean-pooled final hidden state on its prompt (computed anyway, since
the small LM runs on every row; it is data to the switcher, so no gradient reaches the LM), the
three confidence statistics describe the small LM's action distribution, and `t / T` is the
episode's time fraction (step over the environment's step limit). The optional history view
(`features.history`) is the small LM's pooled state and confidence on the *large* LM's prompt,
which holds the earlier observations and actions the large LM's edge comes from; it costs one more
small-LM pass per step, counted as small-LM compute. The optional progress features
(`features.progress`; `training.progress`) are the trigger rule's signals: the score so far, the
steps since it last rose, a rejected action, the task's focus. The optional episode memory
(`features.memory`) is a fixed recurrence over `phi` itself: each row remembers `phi` at its
episode's decision points (`t % switcher.hold == 0`), and `phi` gains the last `MEMORY_DEPTH` of
them and their mean (`episode_memory`), so the switcher sees how the episode got here at no LM
cost. Each part is switched by `config.features`;
the remaining-budget fraction `z / n` enters the Q network itself whenever a hard budget is set
(`switching.network.SwitchQNetwork`).
"""

from __future__ import annotations

from typing import Any, Sequence

import ml_collections
import numpy as np

from londi_jax.policies.policy import PolicyOutput
from londi_jax.training import progress

MEMORY_DEPTH = 2  # earlier decision points whose phi the episode memory keeps whole


def feature_dim(config: ml_collections.ConfigDict, hidden_size: int) -> int:
  """Length `F` of `phi(s)`; at least 1 (a constant when every LM part is off)."""
  f = config.features
  dim = hidden_size * bool(f.hidden) + 3 * bool(f.confidence) + bool(f.time)
  dim += (hidden_size + 3) * uses_history(config)
  dim = max(dim, 1) + progress.PROGRESS_DIM * uses_progress(config)
  return dim * (MEMORY_DEPTH + 2) if uses_memory(config) else dim


def uses_history(config: ml_collections.ConfigDict) -> bool:
  """Whether `phi(s)` holds the history view (a small-LM pass on the large LM's prompt)."""
  return bool(config.features.get("history", False))


def uses_progress(config: ml_collections.ConfigDict) -> bool:
  """Whether `phi(s)` holds the episode's progress features (`training.progress`)."""
  return bool(config.features.get("progress", False))


def uses_memory(config: ml_collections.ConfigDict) -> bool:
  """Whether `phi(s)` holds the episode memory of earlier decision points."""
  return bool(config.features.get("memory", False))


def episode_memory(earlier: Sequence[np.ndarray], dim: int,
                   depth: int = MEMORY_DEPTH) -> np.ndarray:
  """What the episode memory carries from earlier decision points: their last `depth` feature
  vectors (most recent first, zeros before the episode's start) and their mean (zeros at the
  first point), `(depth + 1) * dim` numbers."""
  last = [earlier[-1 - k] if k < len(earlier) else np.zeros(dim) for k in range(depth)]
  mean = np.mean(earlier, axis=0) if len(earlier) else np.zeros(dim)
  return np.concatenate(last + [mean]).astype(np.float32)


def history_view(config: ml_collections.ConfigDict, small, rows: Sequence[Any],
                 candidates: Sequence[Sequence[str]]):
  """The small LM (an `LMRunner`) on the rows' large-LM prompts, or None without the view."""
  if not uses_history(config):
    return None
  return small([row.prompt("large") for row in rows], candidates)


def build_features(config: ml_collections.ConfigDict, out: PolicyOutput,
                   time_fraction: np.ndarray, history: PolicyOutput | None = None,
                   rows: Sequence[Any] | None = None) -> np.ndarray:
  """`phi(s)` `[R, F]` float32 from the small LM's output on `R` rows, `t / T` `[R]` and, with
  `features.history`, the small LM's output on their large-LM prompts (`history_view`).

  With `features.progress` or `features.memory` the `rows` (`training.rows.Row`) are needed too:
  `phi` gains each row's progress features, or its `episode_memory` (rows at a decision point
  then remember their `phi`, so each row must pass through once per step of its episode).
  """
  if rows is None and (uses_progress(config) or uses_memory(config)):
    name = "progress" if uses_progress(config) else "memory"
    raise ValueError(f"features.{name} is on: pass the rows whose state phi describes")
  phi = _current_features(config, out, time_fraction, history)
  if uses_progress(config):
    phi = np.concatenate([phi, progress.progress_features(rows, out.probs)], axis=-1)
  if not uses_memory(config):
    return phi
  hold = int(config.switcher.hold)
  out_phi = np.empty((len(phi), phi.shape[1] * (MEMORY_DEPTH + 2)), np.float32)
  for j, (row, x) in enumerate(zip(rows, phi)):
    out_phi[j] = np.concatenate([x, episode_memory(row.memory, len(x))])
    if row.t % hold == 0:
      row.memory.append(x.copy())
  return out_phi


def _current_features(config: ml_collections.ConfigDict, out: PolicyOutput,
                      time_fraction: np.ndarray, history: PolicyOutput | None) -> np.ndarray:
  """`phi(s)` of the current state alone (without the episode memory)."""
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
