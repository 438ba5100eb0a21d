"""Trains the switcher on the tabular diagnostic task and compares it with the exact solution.

    python -m launch.diagnose --config configs/diagnostic.py [--config.num_states=23 \
        --config.seed=7 --config.cost=0.05 --config.budget=3]

Prints progress, then as its last line one JSON object with `switch_agreement`, `value_gap` and
`budget_violations` (see `londi_jax.diagnostic.evaluate_member`).
"""

import json

from absl import app
from ml_collections import config_flags

from londi_jax.diagnostic import run_diagnostic

_CONFIG = config_flags.DEFINE_config_file("config", "configs/diagnostic.py",
                                          "diagnostic config file[:preset]", lock_config=True)


def main(argv):
  del argv
  config = _CONFIG.value
  print(f"diagnostic: {config.num_states} states, cost {config.cost}, budget {config.budget}, "
        f"seed {config.seed}", flush=True)
  result = run_diagnostic(config, log=lambda line: print(line, flush=True))
  print(json.dumps(result), flush=True)


if __name__ == "__main__":
  app.run(main)
