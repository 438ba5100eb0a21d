"""One gradient step, shared by every optimiser of the project (after Brax's `gradients.py`)."""

from __future__ import annotations

from typing import Any, Callable

import jax
import optax


def gradient_step(loss_fn: Callable[[Any], tuple[jax.Array, Any]], params, opt_state,
                  optimizer: optax.GradientTransformation):
  """Differentiates `loss_fn(params) -> (loss, aux)` and applies one optimiser update.

  Returns:
    `(loss, aux, new_params, new_opt_state)`.
  """
  (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
  updates, opt_state = optimizer.update(grads, opt_state, params)
  return loss, aux, optax.apply_updates(params, updates), opt_state
