"""The main job on BabyAI-Text (`launch.main`): switchers at several costs c over the embedded
default policies, evaluated against every baseline, with a report.

    python -m launch.main --config configs/babyai_text.py --workdir DIR
    python -m launch.main --config configs/babyai_text.py:smoke --workdir DIR

Paired targets (docs/method.md), decisions held 8 steps, three costs as three members.
Presets: `default` (2 CPU cores, ~45 min), `smoke` (a couple of minutes: pre-trains tiny policies
with `configs/pretrain.py:smoke`), `paper` (a GPU and real checkpoints).
"""

import ml_collections

from configs import londi


def get_config(preset: str = "default") -> ml_collections.ConfigDict:
  c = londi.babyai_text(preset or "default")
  c.switcher.target = "paired"
  if preset == "smoke":
    c.pretrain.enabled = True
    c.pretrain.preset = "smoke"
    c.member_costs = (0.01, 0.1)
    c.switcher.paired.batch = 4
  else:
    c.member_costs = (0.0025, 0.005, 0.01)
    c.eval_every = 0  # the latest checkpoint is evaluated
  return c
