"""One run of tests/test_mesh.py in its own process (devices are fixed when JAX starts).

    XLA_FLAGS=--xla_force_host_platform_device_count=4 python tests/mesh_driver.py \
        train diagnose --policies DIR --workdir DIR [--coordinator 127.0.0.1:PORT \
        --num_processes 2 --process_id 0] [--stop_after N]

`train` runs (or resumes) the BabyAI smoke training of `train_config` in `--workdir`, `diagnose`
the diagnostic smoke with 4 members. Prints one JSON line: the devices and processes it saw, the
compilations during acting steps after the warm-up (`steady_compilations`), the member step's
jit cache size, the mesh, this process's rows, and the diagnostic's result.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

WARMUP_STEPS = 4  # acting steps after which nothing may compile


def train_config(policies: str):
  """The BabyAI smoke preset, small: 4 members x 2 rows, 12 steps (checkpoints every 4, one
  periodic evaluation at 8), one batch bucket."""
  from configs import londi  # pylint: disable=import-outside-toplevel
  c = londi.get_config("babyai_text:smoke")
  c.policies.dir = policies
  c.policies.batch_buckets = (8,)
  c.member_costs = (0.01, 0.02, 0.05, 0.1)
  c.num_envs = 2
  c.train_steps = 12
  c.log_every = 4
  c.checkpoint_every = 4
  c.eval_every = 8
  c.eval_episodes = 2
  c.switcher.hold = 1
  c.switcher.n_step = 1
  c.switcher.min_replay = 16
  return c


def diagnose_config():
  from configs import diagnostic  # pylint: disable=import-outside-toplevel
  c = diagnostic.get_config("smoke")
  c.members = 4
  return c


def with_runtime(config, args):
  if args.coordinator:
    config.runtime.distributed = True
    config.runtime.coordinator_address = args.coordinator
    config.runtime.num_processes = args.num_processes
    config.runtime.process_id = args.process_id
  return config


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("modes", nargs="+", choices=("train", "diagnose"))
  parser.add_argument("--policies", default="")
  parser.add_argument("--workdir", default="")
  parser.add_argument("--coordinator", default="")
  parser.add_argument("--num_processes", type=int, default=1)
  parser.add_argument("--process_id", type=int, default=0)
  parser.add_argument("--stop_after", type=int, default=0)
  args = parser.parse_args()

  import jax  # pylint: disable=import-outside-toplevel

  compiles: list[int] = []
  acting = [False]
  jax.monitoring.register_event_duration_secs_listener(
      lambda event, *a, **k: compiles.append(1)
      if event == "/jax/core/compile/backend_compile_duration" and acting[0] else None)
  out: dict = {}
  if "train" in args.modes:
    from londi_jax.training import loop  # pylint: disable=import-outside-toplevel
    trainer = loop.Trainer(with_runtime(train_config(args.policies), args), args.workdir,
                           log=None)
    act = trainer.act

    def counted_act():
      acting[0] = trainer.step >= WARMUP_STEPS
      try:
        act()
      finally:
        acting[0] = False

    trainer.act = counted_act
    try:
      trainer.run(stop_after=args.stop_after or None)
    except loop.Interrupted:
      out["interrupted_at"] = trainer.step
    else:
      trainer.close()
    out["member_step_compilations"] = trainer.step_fn._cache_size()  # pylint: disable=protected-access
    out["lm_batch_devices"] = trainer.placement.lm_mesh.size
    out["mesh"] = dict(trainer.placement.mesh.shape)
    out["rows"] = [trainer.local.start, trainer.local.stop]
  out["steady_compilations"] = len(compiles)
  if "diagnose" in args.modes:
    from londi_jax.diagnostic import run_diagnostic  # pylint: disable=import-outside-toplevel
    config = with_runtime(diagnose_config(), args)
    chunks = int(config.train_steps) // int(config.log_every)
    logged = []

    def log(line):  # after each chunk of `log_every` steps; count during chunks 2..
      logged.append(line)
      acting[0] = len(logged) < chunks

    compiles.clear()
    out["diagnostic"] = run_diagnostic(config, log=log)
    out["diagnostic_steady_compilations"] = len(compiles)
  out.update(devices=jax.device_count(), processes=jax.process_count())
  print(json.dumps(out), flush=True)


if __name__ == "__main__":
  main()
