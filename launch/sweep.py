"""Sweeps LONDI over costs x training seeds for each switcher variant (configs/sweep.py).

    python -m launch.sweep --config configs/sweep.py --workdir DIR
    python -m launch.sweep --config configs/sweep.py:smoke --workdir DIR   # minutes
    python -m launch.sweep --config configs/sweep.py --workdir DIR \
        --config.costs="(0.002, 0.004)" --config.seeds=3 \
        --config.variants.paired="switcher.target=paired; switcher.paired.continuation=greedy"
    python -m launch.sweep --config configs/sweep.py:cpu --workdir DIR --only td,paired

Writes `DIR/<variant>/` (each a `launch.train` run with its `eval.json`), `DIR/sweep.json`,
`DIR/report.md` and `DIR/cost_quality.png`. Rerunning resumes; an evaluated variant is kept.
`--only` trains and evaluates the variants it names and reports them beside those already
evaluated, so two processes can run different variants of one sweep side by side (a last run
without `--only` then writes the report over all of them).
"""

from absl import app, flags, logging
from ml_collections import config_flags

from londi_jax.training.sweep import run_sweep

_CONFIG = config_flags.DEFINE_config_file("config", "configs/sweep.py", "sweep config[:preset]",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "output folder", required=True)
_ONLY = flags.DEFINE_list("only", None, "variants to train and evaluate now (default: all)")


def main(argv):
  del argv
  logging.set_verbosity(logging.ERROR)
  run_sweep(_CONFIG.value, _WORKDIR.value, log=lambda line: print(line, flush=True),
            only=_ONLY.value)


if __name__ == "__main__":
  app.run(main)
