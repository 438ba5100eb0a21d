"""Sweeps of LONDI (`launch.sweep`): costs x training seeds for each variant of the switcher.

    python -m launch.sweep --config configs/sweep.py --workdir DIR
    python -m launch.sweep --config configs/sweep.py:smoke --workdir DIR

Each variant is one training run (`DIR/<variant>/`) whose members are every cost times
`seeds` training seeds (`vmap`ped together: they share a shape), evaluated against every baseline
at each member's rate; `DIR/sweep.json`, `DIR/report.md` and `DIR/cost_quality.png` aggregate
them over seeds. A variant is a list of `field=value` overrides of `base` (the BabyAI-Text family
of `configs/londi.py`), so a sweep over targets, feature sets or budgets is a list of strings.
"""

import ml_collections

from configs import londi


def get_config(preset: str = "default") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.base = londi.babyai_text("smoke" if preset == "smoke" else "default")
  c.costs = (0.003, 0.006)
  c.seeds = 3  # training seeds per cost (members seed, seed + 1, ...)
  c.variants = ml_collections.ConfigDict()
  c.variants.paired = "switcher.target=paired"
  c.variants.td = "switcher.target=td"
  if preset == "smoke":
    c.base.pretrain.enabled = True
    c.base.pretrain.preset = "smoke"
    c.costs = (0.01, 0.1)
    c.seeds = 2
    c.base.switcher.paired.batch = 4
    c.base.switcher.hold = 2
  elif preset != "default":
    raise ValueError(f"unknown preset {preset!r} of configs/sweep.py; known: default, smoke")
  return c
