"""Evaluates a trained LONDI run and every baseline on the same episodes (docs/evaluation.md).

    python -m launch.evaluate --workdir DIR [--episodes N] [--seed S] [--checkpoint latest|best]

Shows a progress bar on stderr while each method plays (episodes done, rate, time left), prints a
line per method and a table, and writes `DIR/eval.json`: per method `success_rate`, `mean_return`,
`large_call_fraction`, `compute_relative_to_large`, `max_large_calls_per_episode`,
`seconds_per_step`, and every episode (seed, level, success, return, length, calls).
"""

import sys

from absl import app, flags, logging
import tqdm

from londi_jax.training.evaluate_run import evaluate_run

_WORKDIR = flags.DEFINE_string("workdir", None, "a launch.train run folder", required=True)
_EPISODES = flags.DEFINE_integer("episodes", None, "episodes (default: the run's eval.episodes)")
_SEED = flags.DEFINE_integer("seed", None, "first evaluation seed (default: eval.seed)")
_CHECKPOINT = flags.DEFINE_enum("checkpoint", None, ["latest", "best"], "which checkpoint")


def progress_bar(method: str, episodes: int) -> tqdm.tqdm:
  """A bar on stderr for one method's episodes: done, episodes/s and the time left."""
  return tqdm.tqdm(total=episodes, desc=f"  {method}", unit="episode", file=sys.stderr,
                   leave=False)


def main(argv):
  del argv
  logging.set_verbosity(logging.ERROR)
  evaluate_run(_WORKDIR.value, _EPISODES.value, _SEED.value, _CHECKPOINT.value,
               log=lambda line: print(line, flush=True), progress=progress_bar)


if __name__ == "__main__":
  app.run(main)
