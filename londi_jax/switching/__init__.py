"""The switching-control core of LONDI: value network, impulse-control loss, learner, budgets,
acting, and the exact tabular solver."""

from londi_jax.switching.acting import (epsilon_greedy_switch, greedy_switch, greedy_under_budget,
                                        linear_epsilon)
from londi_jax.switching.budget import allowed_switches, budget_fraction, spend
from londi_jax.switching.config import switcher_config
from londi_jax.switching.learner import (LearnerState, SwitchBatch, Transition, example_transition,
                                         init_learner, make_train_many, make_update, q_values)
from londi_jax.switching.loss import batched_td_error, huber, impulse_control_td_error
from londi_jax.switching.network import SwitchQNetwork
from londi_jax.switching.tabular import evaluate_switching_rule, solve_tabular

__all__ = [
    "LearnerState", "SwitchBatch", "SwitchQNetwork", "Transition", "allowed_switches",
    "batched_td_error", "budget_fraction", "epsilon_greedy_switch", "evaluate_switching_rule",
    "example_transition", "greedy_switch", "greedy_under_budget", "huber",
    "impulse_control_td_error", "init_learner", "linear_epsilon", "make_train_many", "make_update",
    "q_values", "solve_tabular", "spend", "switcher_config",
]
