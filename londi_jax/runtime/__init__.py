"""Where a run's arrays live and which process steps what (docs/scaling.md).

- `config`: the `runtime` block of a config (`runtime_config`).
- `mesh`: the `members x data` device mesh of `runtime.mesh`, the shardings of the member state
  and of LM batches, and `Placement`, which also says which environment rows this process steps
  and gathers host values across processes.
- `distributed`: `jax.distributed.initialize` from `runtime.*` or the environment.

Nothing here knows about switchers, LMs or environments: `training` and `diagnostic` use it.
"""

from londi_jax.runtime.config import runtime_config
from londi_jax.runtime.distributed import initialize
from londi_jax.runtime.mesh import DATA, MEMBERS, Placement, make_placement, mesh_shape

__all__ = ["DATA", "MEMBERS", "Placement", "initialize", "make_placement", "mesh_shape",
           "runtime_config"]
