"""The tabular diagnostic: a random finite switching MDP (`task`) on which the switcher trains
with the real network, replay and update and is checked against the exact solver (`loop`)."""

from londi_jax.diagnostic.loop import evaluate_member, run_diagnostic, train_members
from londi_jax.diagnostic.task import SwitchingMDP, random_switching_mdp

__all__ = ["SwitchingMDP", "evaluate_member", "random_switching_mdp", "run_diagnostic",
           "train_members"]
