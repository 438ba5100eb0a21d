"""The device mesh of a run and what lives where on it.

A run's devices form one `jax.sharding.Mesh` with two axes, `members x data`
(`runtime.mesh`):

- the member state (learner, replay, n-step window) has a leading member axis `[M, ...]`, split
  over `members` and replicated over `data` (`Placement.members`): each device steps and trains
  only its own members, and replay never leaves its device;
- LM batches are split over this process's devices on one `data` axis with the parameters
  replicated (`Placement.lm_mesh`): the LMs have no member axis, so for them every device is a
  data-parallel replica;
- the outputs the host reads every step (switches, metrics) are replicated.

With several processes (`runtime.distributed`) the mesh spans the devices of all of them, each
process steps its own block of environment rows (`Placement.row_block`), and the host values of
the other rows come from `Placement.gather_rows`. With one process and one device nothing is
gathered and every array sits on that device, as without a mesh.
"""

from __future__ import annotations

import dataclasses
import math
import pickle
from typing import Any, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

MEMBERS = "members"
DATA = "data"


def mesh_shape(spec: str, num_devices: int, num_members: int) -> tuple[int, int]:
  """`(members, data)` axis sizes of `runtime.mesh` over `num_devices` devices.

  Args:
    spec: "auto" (members first: the members axis takes the largest share of the devices that
      divides `num_members`, the data axis the rest) or "<members>x<data>", e.g. "2x2".
    num_devices: the devices of every process.
    num_members: switchers trained together (the member axis of the state).

  Raises:
    ValueError: an unknown spec, sizes whose product is not the device count, or a members axis
      that does not divide the number of members (each message names `runtime.mesh`).
  """
  text = str(spec).strip().lower()
  if text == "auto":
    members = math.gcd(num_members, num_devices)
    return members, num_devices // members
  parts = [p.strip() for p in text.split("x")]
  if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
    raise ValueError(f"runtime.mesh must be 'auto' or '<members>x<data>' with positive sizes "
                     f"(e.g. '2x2'), got {spec!r}")
  members, data = int(parts[0]), int(parts[1])
  if members * data != num_devices:
    raise ValueError(f"runtime.mesh={spec!r} asks for {members} x {data} = {members * data} "
                     f"devices, but {num_devices} are visible: the sizes must multiply to the "
                     "device count")
  if num_members % members:
    raise ValueError(f"runtime.mesh={spec!r}: the members axis ({members}) must divide the "
                     f"number of members ({num_members})")
  return members, data


@dataclasses.dataclass(frozen=True)
class Placement:
  """Where a run's arrays live, and which environment rows this process steps.

  Attributes:
    mesh: the global `members x data` mesh over the devices of every process.
    lm_mesh: this process's devices on one `data` axis (LM batches).
  """

  mesh: Mesh
  lm_mesh: Mesh

  @property
  def members(self) -> NamedSharding:
    """Leading member axis split over `members`, replicated over `data`."""
    return NamedSharding(self.mesh, P(MEMBERS))

  @property
  def replicated(self) -> NamedSharding:
    return NamedSharding(self.mesh, P())

  @property
  def process_index(self) -> int:
    return jax.process_index()

  @property
  def process_count(self) -> int:
    return jax.process_count()

  @property
  def is_primary(self) -> bool:
    """Whether this process writes the run's files (metrics, config)."""
    return jax.process_index() == 0

  def put(self, tree: Any, sharding: NamedSharding | None = None) -> Any:
    """Global arrays of `sharding` (default: `members`) from host values every process holds
    in full (numpy, or arrays of this process)."""
    sharding = sharding or self.members

    def put_leaf(x):
      x = np.asarray(x)
      return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree_util.tree_map(put_leaf, tree)

  def fetch(self, tree: Any) -> Any:
    """The full value of every leaf as numpy, gathered from the other processes where needed
    (with several processes, every process must call it)."""

    def fetch_leaf(x):
      if not isinstance(x, jax.Array) or x.is_fully_addressable or x.is_fully_replicated:
        return np.asarray(x)
      return np.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree_util.tree_map(fetch_leaf, tree)

  def row_block(self, num_rows: int) -> range:
    """The rows this process steps: the `process_index`-th of `process_count` equal blocks.

    Raises:
      ValueError: the rows do not split evenly over the processes.
    """
    count = self.process_count
    if num_rows % count:
      raise ValueError(f"{num_rows} environment rows (members x num_envs) do not split evenly "
                       f"over {count} processes")
    size = num_rows // count
    return range(self.process_index * size, (self.process_index + 1) * size)

  def gather_rows(self, local: np.ndarray) -> np.ndarray:
    """`[R, ...]` from every process's `[R / P, ...]` block, in process order."""
    if self.process_count == 1:
      return local
    return np.asarray(multihost_utils.process_allgather(np.asarray(local), tiled=True))

  def gather_objects(self, obj: Any) -> list[Any]:
    """Every process's picklable `obj`, in process order."""
    if self.process_count == 1:
      return [obj]
    data = np.frombuffer(pickle.dumps(obj), np.uint8)
    sizes = np.asarray(multihost_utils.process_allgather(np.array([data.size], np.int64)))
    padded = np.zeros(int(sizes.max()), np.uint8)
    padded[:data.size] = data
    blobs = np.asarray(multihost_utils.process_allgather(padded))  # [P, max size]
    return [pickle.loads(bytes(blob[:int(n)])) for blob, n in zip(blobs, sizes.ravel())]

  def barrier(self, name: str) -> None:
    """Waits until every process reaches the barrier `name`."""
    if self.process_count > 1:
      multihost_utils.sync_global_devices(name)


def make_placement(runtime: Any, num_members: int,
                   devices: Sequence[jax.Device] | None = None) -> Placement:
  """The placement of `runtime.mesh` (default "auto") over `devices` (default: every device of
  every process, in `jax.devices()` order, so each process's devices are contiguous)."""
  devices = list(jax.devices() if devices is None else devices)
  spec = runtime.get("mesh", "auto") if runtime is not None else "auto"
  shape = mesh_shape(spec, len(devices), num_members)
  mesh = Mesh(np.array(devices, dtype=object).reshape(shape), (MEMBERS, DATA))
  local = [d for d in devices if d.process_index == jax.process_index()]
  return Placement(mesh=mesh, lm_mesh=Mesh(np.array(local, dtype=object), (DATA,)))
