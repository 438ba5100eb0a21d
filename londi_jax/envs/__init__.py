"""Text environments behind one protocol (`londi_jax.envs.base`).

`make("babyai_text/<level>")` and `make("scienceworld/<task>")` build one environment; an unknown
id raises `UnknownEnvironmentError` listing the known ones (`check(env_id)` raises it without
building anything). `prompt_history(env_id, config)` builds
the prompt history of the environment's family from a saved prompt config. `heavy(env_id)` says
whether each environment of the family holds a heavy resource (ScienceWorld's JVM), so that
episode runners keep one environment per slot.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from londi_jax.envs.base import (InvalidActionError, Observation, PromptHistory, TextEnv,
                                 UnknownEnvironmentError)


@dataclasses.dataclass(frozen=True)
class _Family:
  """Where a family lives.

  Attributes:
    env: module exposing `known_ids() -> tuple[str, ...]` (ids without the prefix),
      `make(name: str, **kwargs) -> TextEnv`, optionally `accepts(name) -> bool`, and optionally
      `HEAVY = True` when each environment holds a heavy resource (a JVM, a simulator process).
    prompts: module exposing `PromptConfig` (a frozen dataclass; `PromptConfig(**saved)` rebuilds
      a saved one) and `PromptHistory(config)`, which follows the `PromptHistory` protocol.
  """

  env: str
  prompts: str


_FAMILIES = {
    "babyai_text": _Family("londi_jax.envs.babyai.env", "londi_jax.envs.babyai.prompts"),
    "scienceworld": _Family("londi_jax.envs.scienceworld.env",
                            "londi_jax.envs.scienceworld.prompts"),
}


def _family(prefix: str):
  return importlib.import_module(_FAMILIES[prefix].env)


def known_ids() -> tuple[str, ...]:
  """Every environment id `make` accepts, prefixed by its family."""
  ids = []
  for prefix in _FAMILIES:
    try:
      ids.extend(f"{prefix}/{name}" for name in _family(prefix).known_ids())
    except ImportError:
      continue
  return tuple(ids)


def check(env_id: str) -> None:
  """Raises `UnknownEnvironmentError`, naming the known ids, unless `make` accepts `env_id`
  (builds nothing)."""
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


def make(env_id: str, **kwargs: Any) -> TextEnv:
  """Builds the text environment named `env_id` (`<family>/<name>`), passing `kwargs` on."""
  check(env_id)
  return _family(env_id.partition("/")[0]).make(env_id.partition("/")[2], **kwargs)


def heavy(env_id: str) -> bool:
  """Whether each environment of `env_id`'s family holds a heavy resource (its module's `HEAVY`).

  Episode runners then keep one environment per slot (`training.episodes.Slots`) instead of one
  per level a slot meets. Imports the family's module, which starts nothing.

  Raises:
    UnknownEnvironmentError: an unknown family.
  """
  prefix = env_id.partition("/")[0]
  if prefix not in _FAMILIES:
    raise UnknownEnvironmentError(
        f"unknown environment {env_id!r}; families are {sorted(_FAMILIES)}")
  return bool(getattr(_family(prefix), "HEAVY", False))


def prompt_history(env_id: str, config: Any = None) -> PromptHistory:
  """A prompt history for episodes of `env_id`, in its family's template.

  Args:
    env_id: `<family>/<name>`; only the family matters.
    config: the family's `PromptConfig`, or a saved one as a mapping of its fields (as policies
      store it in their metadata); None or `{}` is the family's default.

  Raises:
    UnknownEnvironmentError: an unknown family.
    ValueError: `config` names a field the family's `PromptConfig` does not have.
  """
  prefix = env_id.partition("/")[0]
  if prefix not in _FAMILIES:
    raise UnknownEnvironmentError(
        f"unknown environment {env_id!r}; families are {sorted(_FAMILIES)}")
  prompts = importlib.import_module(_FAMILIES[prefix].prompts)
  if not isinstance(config, prompts.PromptConfig):
    fields = dict(config or {})
    unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(prompts.PromptConfig)})
    if unknown:
      raise ValueError(f"prompt config fields {unknown} are not {prefix} prompt fields; its "
                       f"fields are {[f.name for f in dataclasses.fields(prompts.PromptConfig)]}")
    config = prompts.PromptConfig(**fields)
  return prompts.PromptHistory(config)


__all__ = ["InvalidActionError", "Observation", "PromptHistory", "TextEnv",
           "UnknownEnvironmentError", "check", "heavy", "known_ids", "make",
           "prompt_history"]
