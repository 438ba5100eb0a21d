"""Device meshes and processes (londi_jax.runtime): the BabyAI smoke training and the diagnostic
on 4 forced CPU devices, and on 2 processes of 2 devices each joined by `jax.distributed` on
127.0.0.1, against the same runs on one device; a run stopped on 2 processes resumes on 1; and
the config errors. Each run is its own process (`tests/mesh_driver.py`): a process's devices are
fixed when JAX starts."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys

import jax
import pytest
from jax.sharding import Mesh
import numpy as np

from configs import londi
from londi_jax import runtime
from londi_jax.envs.workers import env_factory
from londi_jax.runtime.mesh import mesh_shape
from londi_jax.training import loop
from londi_jax.training.checkpoint import read_raw
from londi_jax.training.fakes import make_tiny_policies
from londi_jax.training.lm import load_runners, multiples_of
from londi_jax.training.metrics import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DRIVER = os.path.join(ROOT, "tests", "mesh_driver.py")
TIMING = ("time", "steps_per_s")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _start(devices: int, *args: str) -> subprocess.Popen:
  env = dict(os.environ, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
  return subprocess.Popen([sys.executable, DRIVER, *args], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 400) -> dict:
  try:
    out, err = proc.communicate(timeout=timeout)
  except subprocess.TimeoutExpired:
    proc.kill()
    out, err = proc.communicate()
  assert proc.returncode == 0, err[-3000:]
  return json.loads(out.strip().splitlines()[-1])


def _two_processes(*args: str) -> list[dict]:
  address = f"127.0.0.1:{_free_port()}"
  procs = [_start(2, *args, "--coordinator", address, "--num_processes", "2",
                  "--process_id", str(p)) for p in range(2)]
  return [_finish(p) for p in procs]


def assert_close(a, b, path="record"):
  """Equal structure; numbers equal to float tolerance, everything else exactly."""
  if isinstance(a, dict):
    assert isinstance(b, dict) and sorted(a) == sorted(b), path
    for k in a:
      assert_close(a[k], b[k], f"{path}.{k}")
  elif isinstance(a, list):
    assert isinstance(b, list) and len(a) == len(b), path
    for i, (x, y) in enumerate(zip(a, b)):
      assert_close(x, y, f"{path}[{i}]")
  elif isinstance(a, float) and not isinstance(a, bool):
    assert isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-5), \
        f"{path}: {a} != {b}"
  else:
    assert a == b, f"{path}: {a!r} != {b!r}"


def metrics(workdir: str) -> list[dict]:
  return [{k: v for k, v in r.items() if k not in TIMING}
          for r in read_metrics(os.path.join(workdir, "metrics.jsonl"))]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """The same training and diagnostic on 1 device, on 4 devices (run together), then on 2
  processes of 2 devices, stopped after step 8 and resumed on 1 process of 1 device."""
  root = tmp_path_factory.mktemp("mesh")
  policies = make_tiny_policies(str(root / "policies"))
  common = ("train", "diagnose", "--policies", policies)
  one = _start(1, *common, "--workdir", str(root / "one"))
  four = _start(4, *common, "--workdir", str(root / "four"))
  out = {"one": _finish(one), "four": _finish(four)}
  out["two"] = _two_processes(*common, "--workdir", str(root / "two"), "--stop_after", "8")
  out["killed"] = metrics(str(root / "two"))
  out["resumed"] = _finish(_start(1, "train", "--policies", policies,
                                  "--workdir", str(root / "two")))
  out["dirs"] = {name: str(root / name) for name in ("one", "four", "two")}
  return out


def test_one_device_sees_one_device_and_everything_compiles_once(runs):
  one = runs["one"]
  assert one["devices"] == 1 and one["mesh"] == {"members": 1, "data": 1}
  assert one["member_step_compilations"] == 1 and one["steady_compilations"] == 0


def test_four_devices_give_the_one_device_training_metrics(runs):
  four = runs["four"]
  assert four["devices"] == 4 and four["processes"] == 1
  assert four["mesh"] == {"members": 4, "data": 1}  # auto: members first
  assert four["lm_batch_devices"] == 4
  assert four["member_step_compilations"] == 1 and four["steady_compilations"] == 0
  one, other = metrics(runs["dirs"]["one"]), metrics(runs["dirs"]["four"])
  assert [(r["kind"], r["step"]) for r in one] == [
      ("train", 4), ("train", 8), ("eval", 8), ("train", 12)]
  assert_close(one, other)


def test_four_devices_give_the_one_device_diagnostic(runs):
  assert runs["four"]["diagnostic_steady_compilations"] == 0
  assert runs["one"]["diagnostic"]["members"][3]["seed"] == 3  # 4 members
  assert_close(runs["one"]["diagnostic"], runs["four"]["diagnostic"])


def test_two_processes_form_one_four_device_mesh(runs):
  first, second = runs["two"]
  for p in (first, second):
    assert p["devices"] == 4 and p["processes"] == 2 and p["mesh"] == {"members": 4, "data": 1}
    assert p["lm_batch_devices"] == 2  # each process scores its own rows on its own devices
    assert p["interrupted_at"] == 8
    assert p["member_step_compilations"] == 1 and p["steady_compilations"] == 0
    assert p["diagnostic_steady_compilations"] == 0
    assert_close(runs["one"]["diagnostic"], p["diagnostic"])
  assert (first["rows"], second["rows"]) == ([0, 4], [4, 8])  # 4 members x 2 rows, split


def test_two_processes_give_the_one_device_training_metrics_and_evaluation(runs):
  one = metrics(runs["dirs"]["one"])
  assert [r["step"] for r in runs["killed"]] == [4, 8, 8]  # one writer: no duplicates
  assert_close([r for r in one if r["step"] <= 8], runs["killed"])


def test_checkpoint_of_two_processes_is_written_once_and_resumes_on_one(runs):
  step, meta, state, host = read_raw(runs["dirs"]["two"])
  assert step == 12 and runs["resumed"]["processes"] == 1
  assert len(host["rows"]["rows"]) == 8  # every process's rows, in one file
  assert_close(metrics(runs["dirs"]["one"]), metrics(runs["dirs"]["two"]))
  reference = read_raw(runs["dirs"]["one"])[2]
  for x, y in zip(jax.tree_util.tree_leaves(reference), jax.tree_util.tree_leaves(state)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-5)
  del meta


# -- configuration errors ----------------------------------------------------------------------


def test_mesh_shapes():
  assert mesh_shape("auto", 4, 4) == (4, 1)
  assert mesh_shape("auto", 4, 1) == (1, 4)
  assert mesh_shape("auto", 4, 6) == (2, 2)  # the largest share of the devices that divides M
  assert mesh_shape("auto", 8, 3) == (1, 8)
  assert mesh_shape(" 2 x 2 ", 4, 2) == (2, 2)


@pytest.mark.parametrize("spec, devices, members, message", [
    ("members x data", 4, 4, "runtime.mesh must be 'auto' or '<members>x<data>'"),
    ("2x0", 4, 4, "runtime.mesh must be"),
    ("3x1", 4, 3, r"runtime.mesh='3x1' asks for 3 x 1 = 3 devices, but 4 are visible"),
    ("4x1", 4, 2, r"the members axis \(4\) must divide the number of members \(2\)"),
])
def test_bad_mesh_specs_name_the_field(spec, devices, members, message):
  with pytest.raises(ValueError, match=message):
    mesh_shape(spec, devices, members)


def test_placement_on_this_process_and_row_blocks():
  config = runtime.runtime_config()
  placement = runtime.make_placement(config, 3)
  assert dict(placement.mesh.shape) == {"members": 1, "data": jax.device_count()}
  assert placement.row_block(12) == range(0, 12)
  assert placement.gather_objects({"a": 1}) == [{"a": 1}]


def test_distributed_config_errors_name_the_field():
  config = runtime.runtime_config()
  config.distributed = True
  config.num_processes = 2
  config.process_id = 2
  with pytest.raises(ValueError, match=r"runtime.process_id=2 must be below "
                                       r"runtime.num_processes=2"):
    runtime.initialize(config)


def test_unknown_env_backend_names_the_field():
  with pytest.raises(ValueError, match=r"envs.backend must be one of \('local', 'process', "
                                       r"'ray'\), got 'threads'"):
    env_factory("threads")


def test_lm_batches_pad_to_multiples_of_the_devices(tmp_path):
  assert multiples_of((1, 2, 4, 8, 16), 4) == (4, 8, 16)
  assert multiples_of((6, 10), 4) == (8, 12)
  config = londi.get_config("babyai_text:smoke")
  config.policies.dir = make_tiny_policies(str(tmp_path / "policies"))
  one_device = Mesh(np.array(jax.devices()[:1], dtype=object), ("data",))
  small, _ = load_runners(config, one_device)
  assert small.mesh is None  # one device: the policy is left as it is
  assert small.policy.buckets.batch == (8, 64)


@pytest.mark.parametrize("field, value, message", [
    ("runtime.mesh", "3x3", r"runtime.mesh='3x3' asks for 3 x 3 = 9 devices"),
    ("envs.backend", "threads", r"envs.backend must be one of"),
])
def test_training_refuses_a_bad_runtime_or_backend_before_loading_anything(tmp_path, field,
                                                                            value, message):
  config = londi.get_config("babyai_text:smoke")
  config.policies.dir = str(tmp_path / "no_policies")  # never reached
  block, name = field.split(".")
  config[block][name] = value
  with pytest.raises(ValueError, match=message):
    loop.Trainer(config, str(tmp_path / "run"), log=None)
