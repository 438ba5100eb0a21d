"""The `runtime` block of a config: devices and processes, none of which changes the results."""

from __future__ import annotations

import ml_collections


def runtime_config() -> ml_collections.ConfigDict:
  """Defaults: every visible device in one process.

  Fields:
    mesh: "auto" (every visible device; the members axis takes the largest share that divides the
      number of members, the data axis the rest) or "<members>x<data>" (e.g. "2x2"), whose
      product is the number of devices of all processes.
    distributed: call `jax.distributed.initialize` (several processes, one per host or GPU).
    coordinator_address: "host:port" of process 0; "" reads `JAX_COORDINATOR_ADDRESS` or lets
      JAX detect the cluster (Slurm, Kubernetes, ...).
    num_processes: 0 reads `JAX_NUM_PROCESSES` or lets JAX detect it.
    process_id: -1 reads `JAX_PROCESS_ID` or lets JAX detect it.
  """
  c = ml_collections.ConfigDict()
  c.mesh = "auto"
  c.distributed = False
  c.coordinator_address = ""
  c.num_processes = 0
  c.process_id = -1
  return c
