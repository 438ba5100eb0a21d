"""Reset seeds of episodes, shared by demonstrations, training, evaluation and policy scoring.

Each split owns a disjoint range of reset seeds, so `train`, `dev` and `test` episodes never
meet: episode `k` of a split with base seed `seed` is reset with `offset(split) + seed + k`.
"""

from __future__ import annotations

SPLIT_SEED_OFFSETS = {"train": 0, "dev": 1_000_000, "test": 2_000_000}


def episode_seed(seed: int, episode: int, split: str | None = None) -> int:
  """The reset seed of episode `episode` (0-based) of a split (None: `train`)."""
  if split is not None and split not in SPLIT_SEED_OFFSETS:
    raise ValueError(f"unknown split {split!r}; known: {sorted(SPLIT_SEED_OFFSETS)}")
  return SPLIT_SEED_OFFSETS.get(split, 0) + seed + episode
