"""What an episode's own record says about its progress: the signals the SwiftSage-style trigger
rule acts on (`evaluation.trigger_rule`), and the same signals as switcher features
(`features.progress`; docs/architecture.md: what the switcher sees).

    progress(s) = [ score / 100 | stall / T | rejected | focused | p_small(first focus) ]

- `score / 100`: the episode's latest score (ScienceWorld's 0-100; 0 where the environment keeps
  none, as BabyAI-Text);
- `stall / T`: steps since the score last rose (since the start when it never has) over the
  environment's step limit;
- `rejected`: 1 when the environment rejected the last action (`REJECTED`);
- `focused`: 1 once the episode has taken a `focus on` action (ScienceWorld's commitment to the
  task's object, which ends the task when the object is wrong);
- `p_small(first focus)`: the small LM's probability on the `focus on` candidates while the
  episode has not focused yet (the trigger's third case, as a probability).

They come from the row's actions, rewards and last answer, at no LM cost.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

REJECTED = ("No known action matches that input",)  # ScienceWorld's answer to a rejected action
FOCUS = "focus on"
SCORE_SCALE = 100.0  # the most an episode scores (ScienceWorld's `info["max_score"]`)
PROGRESS_DIM = 5


def stall(rewards: Sequence[float]) -> int:
  """Steps since the last positive reward (all of them when there was none)."""
  for k, r in enumerate(reversed(rewards)):
    if r > 0:
      return k
  return len(rewards)


def rejected(row: Any) -> bool:
  """Whether the environment rejected the row's last action."""
  return bool(row.actions) and str(row.obs.extra.get("observation", "")).startswith(REJECTED)


def focused(row: Any) -> bool:
  """Whether the row's episode has taken a `focus on` action."""
  return any(a.startswith(FOCUS) for a in row.actions)


def progress_features(rows: Sequence[Any], probs: np.ndarray) -> np.ndarray:
  """`[R, PROGRESS_DIM]` float32 progress features of `rows` (`training.rows.Row`), with the
  small LM's candidate probabilities `probs` `[R, K]` on each row's `obs.valid_actions`."""
  out = np.zeros((len(rows), PROGRESS_DIM), np.float32)
  for j, row in enumerate(rows):
    done_focus = focused(row)
    focus_mass = 0.0 if done_focus else float(sum(
        p for a, p in zip(row.obs.valid_actions, probs[j]) if a.startswith(FOCUS)))
    out[j] = [(row.score or 0.0) / SCORE_SCALE, stall(row.rewards) / row.env.step_limit,
              rejected(row), done_focus, focus_mass]
  return out
