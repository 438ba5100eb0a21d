"""The main job on BabyAI-Text (`launch.main`): switchers at several costs c over the embedded
default policies, evaluated against every baseline, with a report.

    python -m launch.main --config configs/babyai_text.py --workdir DIR
    python -m launch.main --config configs/babyai_text.py:smoke --workdir DIR

Presets: `default` (2 CPU cores, ~30 min), `smoke` (a couple of minutes: pre-trains tiny policies
with `configs/pretrain.py:smoke`), `paper` (a GPU and real checkpoints).
"""

import ml_collections

from configs import londi


def get_config(preset: str = "default") -> ml_collections.ConfigDict:
  c = londi.babyai_text(preset or "default")
  if preset == "smoke":
    c.pretrain.enabled = True
    c.pretrain.preset = "smoke"
    c.member_costs = (0.01, 0.1)
  else:
    c.member_costs = (0.003, 0.006, 0.012)
  return c
