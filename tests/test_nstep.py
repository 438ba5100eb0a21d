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


def _push(window, reward, discount, phi, remaining, decision, decide, executed):
  """One acting step of one row, as the training loop makes it: the previous step's reward and
  discount, this step's feature and remaining calls, the decision (ignored when not deciding)
  and the switch the step executes."""
  as_row = lambda x, dtype: jnp.asarray([x], dtype)
  return nstep_push(window, as_row(reward, jnp.float32), as_row(discount, jnp.float32),
                    jnp.asarray([[phi]], jnp.float32), as_row(remaining, jnp.int32),
                    as_row(decision, jnp.int32), as_row(decide, bool),
                    executed=as_row(executed, jnp.int32))


def _fields(transition):
  return {k: float(np.asarray(v).reshape(-1)[0]) for k, v in vars(transition).items()}


def test_held_call_stopped_by_the_budget_pays_for_the_executed_calls():
  # n = 1, a decision every 3 steps, gamma = 0.5. At step 0 the row decides g = 1 with z = 2
  # calls left: steps 0 and 1 call the large model (z 2 -> 1 -> 0), step 2 holds the call but
  # the budget masks it (executed 0). Rewards 1, 2, 4. At step 3 the next decision emits:
  #   R = 1 + 0.5 * 2 + 0.25 * 4 = 3,  C = 1 + 0.5 * 1 + 0.25 * 0 = 1.5,  P = 0.5^3 = 0.125
  #   (charged on the held decision, C would be 1 + 0.5 + 0.25 = 1.75).
  window = nstep_init(1, 1, 1)
  window, _, valid = _push(window, 0.0, 0.0, 10.0, 2, 1, True, executed=1)  # step 0
  assert not bool(valid[0])
  window, _, valid = _push(window, 1.0, 0.5, 11.0, 1, 0, False, executed=1)  # step 1
  assert not bool(valid[0])
  window, _, valid = _push(window, 2.0, 0.5, 12.0, 0, 0, False, executed=0)  # step 2
  assert not bool(valid[0])
  window, tr, valid = _push(window, 4.0, 0.5, 13.0, 0, 0, True, executed=0)  # step 3
  assert bool(valid[0])
  assert _fields(tr) == pytest.approx(dict(
      features_tm1=10.0, remaining_tm1=2, switch_tm1=1, reward_t=3.0, calls_tm1=1.5,
      discount_t=0.125, features_t=13.0, remaining_t=0))


def test_calls_of_a_later_held_decision_count_at_their_executed_value():
  # n = 2, a decision every 2 steps, gamma = 0.5, rewards 1, 2, 4, 8 at steps 0-3.
  # Decision A at step 0: g = 0 with z = 1 (steps 0, 1 execute 0).
  # Decision B at step 2: g = 1 with z = 1: step 2 calls (z 1 -> 0), step 3 is masked (0).
  # Decision C at step 4 completes A's window of two decisions:
  #   R_A = 1 + 0.5 * 2 = 2,  C_A = 0,  E_A = 0.25;  R_B = 4 + 0.5 * 8 = 8,  C_B = 1 + 0.5 * 0 = 1
  #   R = 2 + 0.25 * 8 = 4,  C = 0 + 0.25 * 1 = 0.25,  P = 0.5^4 = 0.0625
  #   (with B charged on its decision C_B = 1.5 and C = 0.375; A's own g_tm1 is 0).
  window = nstep_init(2, 1, 1)
  window, _, _ = _push(window, 0.0, 0.0, 10.0, 1, 0, True, executed=0)  # step 0
  window, _, _ = _push(window, 1.0, 0.5, 11.0, 1, 1, False, executed=0)  # step 1
  window, _, valid = _push(window, 2.0, 0.5, 12.0, 1, 1, True, executed=1)  # step 2
  assert not bool(valid[0])  # only one decision completed: no n = 2 window yet
  window, _, _ = _push(window, 4.0, 0.5, 13.0, 0, 0, False, executed=0)  # step 3
  window, tr, valid = _push(window, 8.0, 0.5, 14.0, 0, 0, True, executed=0)  # step 4
  assert bool(valid[0])
  assert _fields(tr) == pytest.approx(dict(
      features_tm1=10.0, remaining_tm1=1, switch_tm1=0, reward_t=4.0, calls_tm1=0.25,
      discount_t=0.0625, features_t=14.0, remaining_t=0))
