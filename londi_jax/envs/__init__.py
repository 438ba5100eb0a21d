"""Text environments behind one protocol (`londi_jax.envs.base`).

`make("babyai_text/<level>")` and `make("scienceworld/<task>")` build one environment; an unknown
id raises `UnknownEnvironmentError` listing the known ones.
"""

from __future__ import annotations

import importlib
from typing import Any

from londi_jax.envs.base import InvalidActionError, Observation, TextEnv, UnknownEnvironmentError

# family prefix -> module exposing `known_ids() -> tuple[str, ...]` (ids without the prefix)
# and `make(name: str, **kwargs) -> TextEnv`.
_FAMILIES = {
    "babyai_text": "londi_jax.envs.babyai.env",
    "scienceworld": "londi_jax.envs.scienceworld.env",
}


def _family(prefix: str):
  return importlib.import_module(_FAMILIES[prefix])


def known_ids() -> tuple[str, ...]:
  """Every environment id `make` accepts, prefixed by its family."""
  ids = []
  for prefix in _FAMILIES:
    try:
      ids.extend(f"{prefix}/{name}" for name in _family(prefix).known_ids())
    except ImportError:
      continue
  return tuple(ids)


def make(env_id: str, **kwargs: Any) -> TextEnv:
  """Builds the text environment named `env_id` (`<family>/<name>`), passing `kwargs` on."""
  prefix, _, name = env_id.partition("/")
  if prefix not in _FAMILIES or not name:
    raise UnknownEnvironmentError(
        f"unknown environment {env_id!r}; families are {sorted(_FAMILIES)}, known ids: "
        f"{', '.join(known_ids())}")
  family = _family(prefix)
  if name not in family.known_ids() and not getattr(family, "accepts", lambda n: False)(name):
    raise UnknownEnvironmentError(
        f"unknown environment {env_id!r}; known {prefix} ids: "
        f"{', '.join(f'{prefix}/{n}' for n in family.known_ids())}")
  return family.make(name, **kwargs)


__all__ = ["InvalidActionError", "Observation", "TextEnv", "UnknownEnvironmentError", "known_ids",
           "make"]
