"""Calibrating the baselines to a target call rate on dev episodes, never on test ones.

The confidence threshold and the fixed time schedules are set so that, on dev episodes, they call
the large LM on the fraction of steps LONDI calls on; the test episodes then measure them as they
are. Both calibrations start from the small-only dev episodes (their max probabilities, their
lengths) and take `rounds` fixed-point steps: each plays the current rule on the dev episodes and
re-fits to the states (or lengths) that rule itself produced, keeping the setting whose dev rate
came closest. A schedule's kind (`after` or `first`) is the one with the higher dev quality. The
SwiftSage-style trigger takes the setting of its grid whose dev rate comes closest (the higher dev
quality among equally close ones). Quality is the mean score where the episodes have scores
(ScienceWorld), else the success rate (`quality`).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from londi_jax.training import evaluation as ev

# play(method) -> run_method's result on the dev episodes
Play = Callable[[ev.Method], dict]


class DevCalibrator:
  """Calibrates baselines on one fixed set of dev episodes; dev runs are cached by setting.

  Args:
    play: plays a method on the dev episodes.
    rounds: fixed-point rounds after the first fit.
  """

  def __init__(self, play: Play, rounds: int = 1):
    self._play = play
    self.rounds = int(rounds)
    self._cache: dict[tuple, dict] = {}

  def run(self, key: tuple, method: ev.Method) -> dict:
    if key not in self._cache:
      self._cache[key] = self._play(method)
    return self._cache[key]

  def small_only(self) -> dict:
    return self.run(("small_only",), ev.small_only())

  def confidence(self, rate: float) -> tuple[float, dict]:
    """The threshold on the small LM's max probability whose dev call rate is closest to `rate`,
    and its dev result."""
    visited = self.small_only()["small_max_prob"]
    best = None
    for _ in range(1 + self.rounds):
      threshold = ev.calibrate_threshold(visited, rate)
      r = self.run(("confidence", threshold), ev.confidence_threshold(threshold))
      if best is None or _closer(r, best[1], rate):
        best = (threshold, r)
      visited = r["small_max_prob"]
    return best

  def schedule(self, rate: float) -> tuple[str, int, dict]:
    """The schedule (kind and `k`) calibrated to `rate` on dev with the higher dev quality, and
    its dev result."""
    fitted = []
    for kind in ev.SCHEDULES:
      lengths = _lengths(self.small_only())
      best = None
      for _ in range(1 + self.rounds):
        k = ev.schedule_k(kind, lengths, rate)
        r = self.run(("schedule", kind, k), ev.schedule(kind, k))
        if best is None or _closer(r, best[2], rate):
          best = (kind, k, r)
        lengths = _lengths(r)
      fitted.append(best)
    return max(fitted, key=lambda f: quality(f[2]))

  def trigger(self, rate: float, patiences, durations, rearm: bool = False
              ) -> tuple[int, int, dict]:
    """The trigger rule's `(patience, duration)` from the grid whose dev call rate is closest to
    `rate` (the higher dev quality among equally close ones), and its dev result."""
    best = None
    for patience in patiences:
      for duration in durations:
        r = self.run(("trigger", patience, duration, bool(rearm)),
                     ev.trigger_rule(int(patience), int(duration), rearm=bool(rearm)))
        key = (abs(r["large_call_fraction"] - rate), -quality(r))
        if best is None or key < best[0]:
          best = (key, int(patience), int(duration), r)
    return best[1:]


def quality(result: dict) -> float:
  """What calibration maximises: the mean score where the episodes have scores, else success."""
  return result["mean_score"] if "mean_score" in result else result["success_rate"]


def dev_summary(result: dict) -> dict:
  """What a baseline's record keeps of its dev calibration run (its dev mean score too where the
  episodes have scores)."""
  return {"dev_call_fraction": result["large_call_fraction"],
          "dev_success_rate": result["success_rate"],
          **({"dev_mean_score": result["mean_score"]} if "mean_score" in result else {}),
          "dev_episodes": result["num_episodes"]}


def _closer(a: dict, b: dict, rate: float) -> bool:
  return abs(a["large_call_fraction"] - rate) < abs(b["large_call_fraction"] - rate)


def _lengths(result: dict) -> np.ndarray:
  return np.array([e["length"] for e in result["episodes"]])
