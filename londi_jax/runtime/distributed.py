"""Several processes, one JAX runtime: `jax.distributed.initialize` from config or environment.

    python -m launch.train ... --config.runtime.distributed=True \
        --config.runtime.coordinator_address=10.0.0.1:12345 \
        --config.runtime.num_processes=2 --config.runtime.process_id=0

Unset fields come from `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID`, and
when those are unset too, from JAX's own cluster detection (Slurm, Open MPI, Kubernetes, ...).
Must run before anything touches a JAX device.
"""

from __future__ import annotations

import os
from typing import Any

import jax


def _field(runtime: Any, name: str, default: Any) -> Any:
  return runtime.get(name, default) if runtime is not None else default


def initialize(runtime: Any) -> bool:
  """Joins the processes of a run when `runtime.distributed` is set (once per process).

  Args:
    runtime: the config's `runtime` block (`runtime_config()`), or None (one process).

  Returns:
    Whether this process is part of a distributed run.

  Raises:
    ValueError: `runtime.num_processes` or `runtime.process_id` is out of range.
    RuntimeError: JAX's devices were used before the call, or the coordinator cannot be reached
      (JAX's message, prefixed with the address tried).
  """
  if not _field(runtime, "distributed", False):
    return False
  if jax.distributed.is_initialized():
    return True
  address = _field(runtime, "coordinator_address", "") or os.environ.get(
      "JAX_COORDINATOR_ADDRESS") or None
  num = int(_field(runtime, "num_processes", 0)) or int(os.environ.get("JAX_NUM_PROCESSES", 0))
  pid = int(_field(runtime, "process_id", -1))
  if pid < 0:
    pid = int(os.environ.get("JAX_PROCESS_ID", -1))
  if num < 0:
    raise ValueError(f"runtime.num_processes must be >= 1 (or 0: from the environment), got {num}")
  if num and pid >= num:
    raise ValueError(f"runtime.process_id={pid} must be below runtime.num_processes={num}")
  try:
    jax.distributed.initialize(coordinator_address=address, num_processes=num or None,
                               process_id=pid if pid >= 0 else None)
  except Exception as e:
    raise RuntimeError(f"jax.distributed.initialize (runtime.coordinator_address={address!r}, "
                       f"num_processes={num or None}, process_id={pid if pid >= 0 else None}) "
                       f"failed: {type(e).__name__}: {e}") from e
  return True
