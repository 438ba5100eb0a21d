"""Reset seeds of episodes, shared by demonstrations, training, evaluation and policy scoring.

Each split owns a disjoint range of reset seeds, so `train`, `dev` and `test` episodes never
meet: episode `k` of a split with base seed `seed` is reset with `offset(split) + seed + k`.
`split_of` inverts it: an environment whose episodes come from per-split lists (ScienceWorld's
variations) reads the split and the index within it from the reset seed alone.
"""

from __future__ import annotations

SPLIT_SEED_OFFSETS = {"train": 0, "dev": 1_000_000, "test": 2_000_000}


def episode_seed(seed: int, episode: int, split: str | None = None) -> int:
  """The reset seed of episode `episode` (0-based) of a split (None: `train`)."""
  if split is not None and split not in SPLIT_SEED_OFFSETS:
    raise ValueError(f"unknown split {split!r}; known: {sorted(SPLIT_SEED_OFFSETS)}")
  return SPLIT_SEED_OFFSETS.get(split, 0) + seed + episode


def split_of(seed: int) -> tuple[str, int]:
  """The split whose seed range holds reset seed `seed`, and the seed's index in that range.

  `split_of(episode_seed(s, k, split)) == (split, s + k)` whenever `s + k` stays below the next
  split's offset (the last split's range is unbounded).

  Raises:
    ValueError: a negative seed.
  """
  seed = int(seed)
  if seed < 0:
    raise ValueError(f"reset seeds are non-negative, got {seed}")
  split = max((s for s, offset in SPLIT_SEED_OFFSETS.items() if offset <= seed),
              key=SPLIT_SEED_OFFSETS.get)
  return split, seed - SPLIT_SEED_OFFSETS[split]
