"""Prints a LONDI checkpoint's config, step, parameter tree with shapes, multipliers and the
latest metrics, from the checkpoint's own files (no config file or policy needed).

    python -m launch.inspect DIR [--checkpoint best]
"""

from absl import app, flags, logging

from londi_jax.training.inspect_run import inspect_run

_CHECKPOINT = flags.DEFINE_enum("checkpoint", "latest", ["latest", "best"], "which checkpoint")


def main(argv):
  if len(argv) != 2:
    raise app.UsageError("usage: python -m launch.inspect DIR [--checkpoint latest|best]")
  logging.set_verbosity(logging.ERROR)
  print(inspect_run(argv[1], _CHECKPOINT.value))


if __name__ == "__main__":
  app.run(main)
