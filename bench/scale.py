"""How acting throughput scales: devices, environment workers, and a model of both.

    python -m bench.scale [--devices 1,2,4] [--members 4] [--num_envs 4] [--warmup 6] \
        [--steps 12] [--task boil] [--workers 2] [--sw_steps 40] [--gpus 8] [--env_workers 256]

Three parts, one run:

1. Devices. The BabyAI training loop (`Trainer.act`, `bench/loop.py`'s policies: untrained, of
   the `configs/pretrain.py` preset `--sizes`) runs in a subprocess per `--devices` count with
   that many forced XLA CPU devices (`--xla_force_host_platform_device_count`): the members are
   split over the mesh, the LM batches over every device. Acting steps per second after
   `--warmup` steps, their ratio to one device, and the seconds per step of each part (LM device
   time, member step, environments, everything else on the host; compilations excluded).
   Forced CPU devices share this machine's cores, so the ratios show what the sharding costs
   here, not what more accelerators buy.
2. Environment workers. `--workers` ScienceWorld environments (one JVM each, about 0.5 GB)
   stepped together through `VectorEnv`'s interface as `EnvWorker` processes, then as Ray actors
   (a local Ray with this machine's CPUs, no dashboard): steps per second and the ratio. The same
   with BabyAI, whose steps take well under a millisecond, gives what the host spends per row
   and step to dispatch a call to a worker and receive its answer (`dispatch`, an upper bound).
3. A throughput model. One acting step on `R` rows costs

       t(N, W) = h R / P + l R / N + u + e(W)

   with `h` the host's seconds per row (prompts, tokenising, bookkeeping: the `elsewhere` part
   of part 1 at one device, over its rows, plus part 2's Ray dispatch per row), `l` the LMs'
   device seconds per row on one device (data parallel over `N` devices), `u` the member step,
   `P` host processes (one per node of 8 accelerators), and `e(W)` the environments' time: with
   one worker per row (`W = R`) stepped concurrently, the latency of one ScienceWorld worker step
   (part 2's process workers: `workers / rate`) while the cluster has a core per worker. It
   predicts acting steps per second `1 / t` and environment steps per second `R / t` at
   `--gpus` accelerators and `--env_workers` workers, and names the largest term: the predicted
   bottleneck. The costs are this machine's (CPU "devices"); an accelerator shrinks `l`, which
   only makes the host terms weigh more.

Prints a table per part, then one JSON line.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARTS = ("small_lm", "large_lm", "update", "envs")


def child(args) -> None:
  """Part 1 in this process: time the acting loop on this process's devices."""
  import jax  # pylint: disable=import-outside-toplevel
  from configs import londi  # pylint: disable=import-outside-toplevel
  from londi_jax.training.loop import Trainer  # pylint: disable=import-outside-toplevel

  config = londi.get_config("babyai_text")
  config.policies.dir = args.policies
  config.member_costs = tuple(0.01 * (k + 1) for k in range(args.members))
  config.num_envs = args.num_envs
  config.train_steps = args.warmup + args.steps
  config.switcher.target = "td"  # acting alone (bench/loop.py --target paired adds branches)
  config.switcher.min_replay = min(config.switcher.min_replay,
                                   args.num_envs * args.members * args.warmup // 2)
  with tempfile.TemporaryDirectory() as tmp:
    trainer = Trainer(config, os.path.join(tmp, "run"), log=None)
    for _ in range(args.warmup):
      trainer.act()
    trainer.timings.clear()
    start = time.perf_counter()
    for _ in range(args.steps):
      trainer.act()
    wall = time.perf_counter() - start
    t = dict(trainer.timings)
    mesh = dict(trainer.placement.mesh.shape)
    trainer.close()
  acting = t["total"] - t.get("compile", 0.0)
  per_step = {p: t.get(p, 0.0) / args.steps for p in PARTS}
  per_step["elsewhere"] = acting / args.steps - sum(per_step.values())
  print(json.dumps({"devices": jax.device_count(), "mesh": mesh, "rows": trainer.local.stop,
                    "steps_per_s": args.steps / wall,
                    "steady_steps_per_s": args.steps / acting,
                    "compile_s": t.get("compile", 0.0), "seconds_per_step": per_step}))


def run_devices(args, policies: str) -> list[dict]:
  out = []
  for n in args.devices:
    env = dict(os.environ, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={n}")
    cmd = [sys.executable, "-m", "bench.scale", "--child", "--policies", policies,
           "--members", str(args.members), "--num_envs", str(args.num_envs),
           "--warmup", str(args.warmup), "--steps", str(args.steps)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if proc.returncode:
      raise RuntimeError(f"{n} devices failed:\n{proc.stderr[-3000:]}")
    out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
  return out


def run_workers(args) -> dict:
  """Part 2: process workers, then Ray actors, on ScienceWorld."""
  from bench.scienceworld import run_batch  # pylint: disable=import-outside-toplevel
  from londi_jax import envs  # pylint: disable=import-outside-toplevel
  from londi_jax.envs import ray_workers  # pylint: disable=import-outside-toplevel
  from londi_jax.envs.workers import EnvWorker  # pylint: disable=import-outside-toplevel

  rates = {}
  for family, env_id, steps in (("scienceworld", f"scienceworld/{args.task}", args.sw_steps),
                                ("babyai", "babyai_text/BabyAI-GoToLocal-v0", 4 * args.sw_steps)):
    make = functools.partial(envs.make, env_id)
    for backend in ("process", "ray"):
      if backend == "ray" and "ray_start_s" not in rates:
        start = time.perf_counter()
        ray_workers.connect("")
        rates["ray_start_s"] = time.perf_counter() - start
      workers = [ray_workers.RayEnvWorker(make, timeout_s=120) if backend == "ray"
                 else EnvWorker(make, timeout_s=120) for _ in range(args.workers)]
      try:
        rates[f"{family}_{backend}"] = run_batch(workers, steps, 0, warmup=args.sw_warmup)
      finally:
        for w in workers:
          w.close()
  ray_workers.shutdown()
  rates["ray_over_process"] = rates["scienceworld_ray"] / rates["scienceworld_process"]
  rates["dispatch_s"] = {b: 1 / rates[f"babyai_{b}"] for b in ("process", "ray")}
  return rates


def model(one: dict, workers: dict, num_workers: int, gpus: int, env_workers: int,
          gpus_per_node: int = 8) -> dict:
  """Part 3: the costs of one device and `num_workers` process workers, extrapolated."""
  s, rows = one["seconds_per_step"], one["rows"]
  host = s["elsewhere"] / rows + workers["dispatch_s"]["ray"]  # h
  lm = (s["small_lm"] + s["large_lm"]) / rows  # l
  update = s["update"]  # u
  env_latency = num_workers / workers["scienceworld_process"]  # e: one worker's step

  def predict(n: int, w: int) -> dict:
    processes = max(1, math.ceil(n / gpus_per_node))
    terms = {"host": host * w / processes, "lm": lm * w / n, "update": update,
             "envs": env_latency}
    total = sum(terms.values())
    return {"accelerators": n, "workers": w, "processes": processes, "terms_s": terms,
            "steps_per_s": 1 / total, "env_steps_per_s": w / total,
            "bottleneck": max(terms, key=terms.get)}

  return {"costs": {"host_s_per_row": host, "lm_s_per_row": lm, "update_s": update,
                    "env_step_latency_s": env_latency},
          "measured_point": predict(1, rows), "target": predict(gpus, env_workers),
          "grid": [predict(n, w) for n in (1, 8, 64) for w in (16, 256, 2048)]}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--policies", default="", help="folder with small/ and large/")
  parser.add_argument("--sizes", default="babyai_text", help="configs/pretrain.py preset")
  parser.add_argument("--devices", default="1,2,4")
  parser.add_argument("--members", type=int, default=4)
  parser.add_argument("--num_envs", type=int, default=4)
  parser.add_argument("--warmup", type=int, default=6)
  parser.add_argument("--steps", type=int, default=12)
  parser.add_argument("--task", default="boil")
  parser.add_argument("--workers", type=int, default=2)
  parser.add_argument("--sw_steps", type=int, default=40)
  parser.add_argument("--sw_warmup", type=int, default=5)
  parser.add_argument("--gpus", type=int, default=8)
  parser.add_argument("--env_workers", type=int, default=256)
  args = parser.parse_args()
  if args.child:
    child(args)
    return
  args.devices = [int(d) for d in args.devices.split(",")]

  from londi_jax.training.fakes import make_tiny_policies, pretrain_sizes  # noqa: E402

  with tempfile.TemporaryDirectory() as tmp:
    policies = args.policies or make_tiny_policies(os.path.join(tmp, "policies"),
                                                   **pretrain_sizes(args.sizes))
    devices = run_devices(args, policies)
  base = devices[0]["steady_steps_per_s"]
  print(f"1. acting, {args.members} members x {args.num_envs} rows, {args.steps} steps "
        f"after {args.warmup}; forced CPU devices on {os.cpu_count()} cores")
  print(f"{'devices':>7s} {'mesh':>14s} {'steps/s':>8s} {'ratio':>6s}   ms/step: "
        + " ".join(f"{p:>9s}" for p in (*PARTS, "elsewhere")))
  for d in devices:
    mesh = "x".join(str(v) for v in d["mesh"].values())
    print(f"{d['devices']:7d} {mesh:>14s} {d['steady_steps_per_s']:8.2f} "
          f"{d['steady_steps_per_s'] / base:6.2f}            "
          + " ".join(f"{1e3 * v:9.1f}" for v in d["seconds_per_step"].values()))
  workers = run_workers(args)
  print(f"2. ScienceWorld {args.task}, {args.workers} workers, {args.sw_steps} steps: process "
        f"{workers['scienceworld_process']:.2f} steps/s, Ray {workers['scienceworld_ray']:.2f} "
        f"steps/s, ratio Ray/process {workers['ray_over_process']:.2f} (Ray started in "
        f"{workers['ray_start_s']:.1f} s)")
  print(f"   BabyAI, {args.workers} workers: process {workers['babyai_process']:.0f} steps/s, "
        f"Ray {workers['babyai_ray']:.0f} steps/s: dispatch per row and step "
        f"{1e3 * workers['dispatch_s']['process']:.2f} ms (process), "
        f"{1e3 * workers['dispatch_s']['ray']:.2f} ms (Ray)")
  predicted = model(devices[0], workers, args.workers, args.gpus, args.env_workers)
  c, target = predicted["costs"], predicted["target"]
  print(f"3. model: h {1e3 * c['host_s_per_row']:.2f} ms/row, l {1e3 * c['lm_s_per_row']:.2f} "
        f"ms/row, u {1e3 * c['update_s']:.1f} ms, e {1e3 * c['env_step_latency_s']:.1f} ms")
  print(f"   1 device, {devices[0]['rows']} rows on ScienceWorld workers: predicted "
        f"{predicted['measured_point']['steps_per_s']:.2f} steps/s")
  for p in predicted["grid"]:
    print(f"   {p['accelerators']:3d} accelerators, {p['workers']:5d} workers: "
          f"{p['steps_per_s']:7.2f} steps/s, {p['env_steps_per_s']:8.0f} env steps/s, "
          f"bottleneck {p['bottleneck']}")
  print(f"   at {args.gpus} accelerators and {args.env_workers} workers: "
        f"{target['env_steps_per_s']:.0f} env steps/s, bottleneck {target['bottleneck']} ("
        + ", ".join(f"{k} {1e3 * v:.0f} ms" for k, v in target["terms_s"].items()) + ")")
  print(json.dumps({"devices": devices, "workers": workers, "model": predicted}))


if __name__ == "__main__":
  main()
