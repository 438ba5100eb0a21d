"""Trains LONDI switchers over a small and a large LM policy (docs/architecture.md).

    python -m launch.train --config configs/londi.py:babyai_text --workdir DIR \
        [--config.member_costs=0.01,0.03 --config.switcher.budget=5 ...]

Running the same command again on the same workdir resumes from the latest checkpoint; a
workdir holding a run of a different config is refused. Writes `DIR/config.json`,
`DIR/metrics.jsonl` (one record per log step) and Orbax checkpoints under `DIR/checkpoints/`
(and `DIR/best/` with `eval_every`).
"""

from absl import app, flags, logging
from ml_collections import config_flags

from londi_jax.training.loop import train

_CONFIG = config_flags.DEFINE_config_file("config", "configs/londi.py:babyai_text",
                                          "LONDI config file[:family[:preset]]", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "run folder", required=True)


def main(argv):
  del argv
  logging.set_verbosity(logging.ERROR)
  train(_CONFIG.value, _WORKDIR.value, log=lambda line: print(line, flush=True))


if __name__ == "__main__":
  app.run(main)
