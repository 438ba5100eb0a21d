"""n-step switching transitions over held decisions (`switching.nstep`) against direct sums."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from londi_jax.switching.nstep import nstep_init, nstep_push


def _steps(seed, steps, rows, features, gamma, decide_every):
  rng = np.random.default_rng(seed)
  phi = rng.normal(size=(steps, rows, features)).astype(np.float32)
  remaining = rng.integers(0, 4, (steps, rows)).astype(np.int32)
  switch = rng.integers(0, 2, (steps, rows)).astype(np.int32)  # used at decisions only
  reward = rng.uniform(size=(steps, rows)).astype(np.float32)
  terminal = rng.random((steps, rows)) < 0.2  # the step ends its episode
  discount = np.where(terminal, 0.0, gamma).astype(np.float32)
  # Each row decides every `decide_every` steps of its episode (t resets after a terminal step).
  decide = np.zeros((steps, rows), bool)
  t = np.zeros(rows, int)
  for k in range(steps):
    decide[k] = t % decide_every == 0
    t = np.where(terminal[k], 0, t + 1)
  return phi, remaining, switch, reward, discount, decide


def _expected(row, n, switch, reward, discount, decide):
  """{decision step k_j: (R, C, P_n, k_{j+n})} from explicit per-step sums."""
  steps = len(reward)
  ks = [k for k in range(steps) if decide[k, row]]
  per = []  # (R_j, C_j, E_j) of each decision, over its held steps
  for j, k in enumerate(ks[:-1]):
    r = c = 0.0
    d = 1.0
    for i in range(k, ks[j + 1]):
      r += d * reward[i, row]
      c += d * switch[k, row]  # the decision's switch holds
      d *= discount[i, row]
    per.append((r, c, d))
  out = {}
  for j in range(len(ks) - n):
    r = c = 0.0
    p = 1.0
    for l in range(n):
      r += p * per[j + l][0]
      c += p * per[j + l][1]
      p *= per[j + l][2]
    out[ks[j]] = (r, c, p, ks[j + n])
  return out


@pytest.mark.parametrize("n,every", [(1, 1), (3, 1), (1, 3), (2, 4)])
def test_transitions_match_direct_sums(n, every):
  steps, rows, features, gamma = 40, 3, 2, 0.9
  phi, remaining, switch, reward, discount, decide = _steps(10 * n + every, steps, rows, features,
                                                            gamma, every)
  push = jax.jit(nstep_push)
  window = nstep_init(n, rows, features)
  held = np.zeros(rows, np.int32)
  emitted = {r: {} for r in range(rows)}
  for k in range(steps):
    held = np.where(decide[k], switch[k], held)
    prev_r = reward[k - 1] if k else np.zeros(rows, np.float32)
    prev_d = discount[k - 1] if k else np.zeros(rows, np.float32)
    window, tr, valid = push(window, prev_r, prev_d, phi[k], remaining[k], held, decide[k])
    for r in np.flatnonzero(np.asarray(valid)):
      emitted[r][k] = jax.tree_util.tree_map(lambda x: np.asarray(x)[r], tr)
  for r in range(rows):
    want = _expected(r, n, switch, reward, discount, decide)
    assert sorted(emitted[r]) == sorted(v[3] for v in want.values())  # emitted at k_{j+n}
    for k_j, (total, calls, p, k_next) in want.items():
      tr = emitted[r][k_next]
      assert int(tr.switch_tm1) == switch[k_j, r]
      np.testing.assert_array_equal(tr.features_tm1, phi[k_j, r])
      assert int(tr.remaining_tm1) == remaining[k_j, r]
      np.testing.assert_array_equal(tr.features_t, phi[k_next, r])
      assert int(tr.remaining_t) == remaining[k_next, r]
      np.testing.assert_allclose([tr.reward_t, tr.calls_tm1, tr.discount_t], [total, calls, p],
                                 rtol=1e-5, atol=1e-6)


def test_one_step_is_the_plain_transition():
  phi, remaining, switch, reward, discount, _ = _steps(0, 3, 2, 2, 0.97, 1)
  window = nstep_init(1, 2, 2)
  window, _, _ = nstep_push(window, reward[0], discount[0], phi[0], remaining[0], switch[0])
  _, tr, valid = nstep_push(window, reward[0], discount[0], phi[1], remaining[1], switch[1])
  assert np.all(valid)
  np.testing.assert_array_equal(tr.reward_t, reward[0])
  np.testing.assert_array_equal(tr.discount_t, discount[0])
  np.testing.assert_array_equal(tr.calls_tm1, switch[0].astype(np.float32))


def test_rejects_a_window_of_no_steps():
  with pytest.raises(ValueError, match="n_step"):
    nstep_init(0, 2, 2)
