"""The switcher's value network: state features and remaining budget to `Q(s, .)`."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

NUM_SWITCHES = 2  # g = 0 keeps the small LM, g = 1 calls the large LM.


class SwitchQNetwork(nn.Module):
  """An MLP from `phi(s)` and the remaining-budget fraction `z / n` to `Q(s, g)`, `g in {0, 1}`.

  Attributes:
    hidden_sizes: widths of the hidden ReLU layers.
    use_budget: whether the remaining-budget fraction is an input (LONDI-B's augmented state).
  """

  hidden_sizes: Sequence[int] = (64, 64)
  use_budget: bool = False

  @nn.compact
  def __call__(self, features: jnp.ndarray, budget_fraction: jnp.ndarray) -> jnp.ndarray:
    """Returns `Q(s, .)` of shape `[..., 2]` for features `[..., F]` and `budget_fraction` `[...]`."""
    x = features.astype(jnp.float32)
    if self.use_budget:
      x = jnp.concatenate([x, budget_fraction[..., None].astype(jnp.float32)], axis=-1)
    for width in self.hidden_sizes:
      x = nn.relu(nn.Dense(width)(x))
    return nn.Dense(NUM_SWITCHES)(x)
