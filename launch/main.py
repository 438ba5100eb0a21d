"""The main job on BabyAI-Text: the embedded default policies (or pre-trained ones when the
config asks), LONDI switchers at several costs c, every baseline on the same episodes, a report.

    python -m launch.main --config configs/babyai_text.py --workdir DIR
    python -m launch.main --config configs/babyai_text.py:smoke --workdir DIR   # minutes

Writes `DIR/report.md` (table, paired differences, run details) and `DIR/cost_quality.png`, beside
the training run's files and `DIR/eval.json`. Rerunning resumes.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from londi_jax.training.main_job import run_main

_CONFIG = config_flags.DEFINE_config_file("config", "configs/babyai_text.py",
                                          "main-job config file[:preset]", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "output folder", required=True)


def main(argv):
  del argv
  logging.set_verbosity(logging.ERROR)
  run_main(_CONFIG.value, _WORKDIR.value, command="python -m launch.main " + " ".join(sys.argv[1:]),
           log=lambda line: print(line, flush=True))


if __name__ == "__main__":
  app.run(main)
