"""The report of a LONDI run, built from its files (`eval.json`, `config.json`): the table of
every method, each switcher's paired differences to every baseline, and a plot of quality against
compute relative to large-only.

Quality is the final score (0-100) where every episode has one (ScienceWorld), else success
(`metric_of`): the table then shows each method's mean score with its 95% interval, and the
paired differences are score differences.
"""

from __future__ import annotations

import json
import os
import platform

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from londi_jax.training.evaluation import (MEMBER_BASELINES, Z95, format_table,  # noqa: E402
                                           has_scores)

PLOT_NAME = "cost_quality.png"
# The baselines each switcher is compared with, by the prefix of their method names.
BASELINES = ("large_only", *MEMBER_BASELINES)
METRICS = ("success", "score")


def member_methods(methods: dict, prefix: str) -> list[tuple[int, dict]]:
  """`(member, result)` of the methods named `<prefix>_...` that belong to a member, in order."""
  return sorted((m["member"], m) for name, m in methods.items()
                if name.rsplit("_c", 1)[0].split("_b")[0] == prefix and "member" in m)


def present_baselines(methods: dict) -> tuple[str, ...]:
  """The prefixes of `BASELINES` that `methods` holds, in order (large-only always)."""
  return tuple(p for p in BASELINES if p == "large_only" or member_methods(methods, p))


def comparison_header(first: list[str], prefixes) -> list[str]:
  """The two header lines of a Markdown table: `first` columns, then `vs <baseline>` columns."""
  names = first + [f"vs {p.replace('_only', '-only').replace('_', ' ')}" for p in prefixes]
  return ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]


def metric_of(results) -> str:
  """`score` when every episode of every result (an `eval.json` method) has a score, else
  `success`."""
  results = list(results)
  return "score" if results and all(has_scores(r["episodes"]) for r in results) else "success"


def paired_differences(a: dict, b: dict, metric: str | None = None) -> np.ndarray:
  """Per-episode differences `a - b` of two methods that played the same episodes, matched by
  seed (under common random numbers, the paired comparison), of `metric` (`success` or `score`;
  None: `metric_of((a, b))`)."""
  metric = metric or metric_of((a, b))
  if metric not in METRICS:
    raise ValueError(f"unknown metric {metric!r}; known: {METRICS}")
  by_seed = {e["seed"]: float(e[metric]) for e in b["episodes"]}
  return np.array([float(e[metric]) - by_seed[e["seed"]] for e in a["episodes"]])


def mean_and_se(d: np.ndarray) -> tuple[float, float]:
  """Mean and standard error of per-episode differences `d` (nan for one episode)."""
  se = float(np.std(d, ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
  return float(np.mean(d)), se


def paired_difference(a: dict, b: dict, metric: str | None = None) -> tuple[float, float]:
  """Mean and standard error of `paired_differences(a, b, metric)`."""
  return mean_and_se(paired_differences(a, b, metric))


def quality_key(metric: str) -> str:
  """The field of a method's result that `metric` averages (`success_rate`, `mean_score`)."""
  return "mean_score" if metric == "score" else "success_rate"


def format_difference(mean: float, half: float, metric: str) -> str:
  """`mean ± half`: three decimals of a success difference, one of a score difference."""
  digits = difference_digits(metric)
  return f"{mean:+.{digits}f} ± {half:.{digits}f}"


def difference_digits(metric: str) -> int:
  """Decimals of a difference: one of a score (0-100), three of a success rate."""
  return 1 if metric == "score" else 3


def quality_label(key: str) -> str:
  """The axis label of a quality field (`mean_score` or `success_rate`)."""
  return "mean score (0-100)" if key == "mean_score" else "success rate"


def baseline_of(methods: dict, prefix: str, member: int) -> dict | None:
  """The baseline `prefix` that was matched to switcher `member` (large-only for every one)."""
  if prefix == "large_only":
    return methods["large_only"]
  found = dict(member_methods(methods, prefix))
  return found.get(member)


def plot(eval_result: dict, path: str, title: str = "") -> None:
  """Quality (success, or the mean score) against compute relative to large-only: LONDI at each
  cost, each baseline at LONDI's rates, small-only and large-only, and the disagreement reference
  (with and without its large passes)."""
  methods = eval_result["methods"]
  key = quality_key(metric_of(methods.values()))
  fig, ax = plt.subplots(figsize=(6.8, 4.6))
  for name, marker in (("small_only", "v"), ("large_only", "D")):
    m = methods[name]
    ax.plot([m["compute_relative_to_large"]], [m[key]], marker, color="grey",
            markersize=8, label=name.replace("_", "-"))
  styles = {"londi": "o-", "random": "s:", "random_held": "s--", "confidence": "^:",
            "schedule": "x:", "trigger": "P:"}
  for prefix, style in styles.items():
    pts = member_methods(methods, prefix)
    if pts:
      xs = [m["compute_relative_to_large"] for _, m in pts]
      ys = [m[key] for _, m in pts]
      ax.plot(xs, ys, style, label="LONDI" if prefix == "londi" else prefix, markersize=7)
  ref = methods.get("disagreement")
  if ref:
    ax.plot([ref["compute_relative_to_large"], ref.get("compute_with_reference_passes", 1.0)],
            [ref[key]] * 2, "k*--", markersize=9,
            label="disagreement reference (called / all large passes)")
  ax.set_xlabel("compute relative to large-only (forward FLOPs)")
  ax.set_ylabel(quality_label(key))
  ax.set_title(title or f"{eval_result['episodes']} test episodes")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, loc="best")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def comparison_columns(metric: str) -> list[str]:
  """The first columns of `comparison_rows` (a score column first for `score`)."""
  return (["cost c"] + (["score"] if metric == "score" else [])
          + ["success", "large calls", "compute / large"])


def comparison_rows(methods: dict) -> list[str]:
  """Markdown rows: per switcher, its numbers and its paired difference to every baseline (of
  the score where the episodes have scores, else of success)."""
  metric = metric_of(methods.values())
  rows = []
  for member, m in member_methods(methods, "londi"):
    cells = [f"{m['cost']:g}"]
    if metric == "score":
      cells.append(f"{m['mean_score']:.1f} ± {m['score_ci95']:.1f}")
    cells += [f"{m['success_rate']:.3f}", f"{m['large_call_fraction']:.3f}",
              f"{m['compute_relative_to_large']:.3f}"]
    for prefix in present_baselines(methods):
      b = baseline_of(methods, prefix, member)
      if b is None:
        cells.append("-")
        continue
      mean, se = paired_difference(m, b, metric)
      cells.append(format_difference(mean, Z95 * se, metric))
    rows.append("| " + " | ".join(cells) + " |")
  return rows


def write_report(workdir: str, command: str = "", extra: dict | None = None) -> str:
  """Writes `DIR/report.md` and `DIR/cost_quality.png` from `DIR/eval.json`; returns the
  report's path."""
  with open(os.path.join(workdir, "eval.json")) as f:
    result = json.load(f)
  with open(os.path.join(workdir, "config.json")) as f:
    config = json.load(f)["config"]
  plot(result, os.path.join(workdir, PLOT_NAME))
  methods = result["methods"]
  metric = metric_of(methods.values())
  sw = config["switcher"]
  lines = [
      "# LONDI", "",
      f"Levels: {', '.join(result['levels'])}. {result['episodes']} test episodes (seeds "
      f"{result['seeds'][0]}..{result['seeds'][-1]}), the same for every method; checkpoint "
      f"{result['checkpoint']['which']} at step {result['checkpoint']['step']}; costs c = "
      f"{', '.join(f'{c:g}' for c in result['member_costs'])}"
      + (f"; hard budget {result['budget']} calls per episode" if result["budget"] else "") + ".",
      "", format_table(methods), "",
      f"![{'score' if metric == 'score' else 'success'} against compute]({PLOT_NAME})", "",
      "## Each switcher against the baselines at its call rate", "",
      f"Per-episode {'score (0-100)' if metric == 'score' else 'success'} differences, LONDI "
      "minus the baseline, on the same episodes with the same random numbers (mean ± 95% "
      "interval).", "",
      *comparison_header(comparison_columns(metric), present_baselines(methods)),
      *comparison_rows(methods), "",
      "Compute is total forward FLOPs over the episodes relative to large-only, counting the small "
      "LM and the switcher (docs/architecture.md: compute accounting). `random` flips a coin on "
      "every step, `random_held` every `hold` steps like LONDI; `confidence` and `schedule` are "
      "calibrated to each switcher's rate on dev episodes (docs/evaluation.md). The disagreement "
      "reference reproduces large-only by construction and needs the large LM on every step "
      "(`compute_with_reference_passes`): a reference point, not a method.", "",
      "## Run", "",
      f"- policies: `{config['policies']['dir'] or config['policies']['small']}`",
      f"- members: {len(result['member_costs'])}, {config['num_envs']} rows each, "
      f"{config['train_steps']} acting steps; switcher target `{sw.get('target', 'td')}`, reward "
      f"`{config.get('reward', 'env')}`, decisions held {sw.get('hold', 1)} steps, "
      f"{sw.get('n_step', 1)}-decision targets, discount {sw['discount']:g}, shared replay "
      f"{sw.get('share_replay', False)}",
      f"- machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"]
  if command:
    lines.append(f"- command: `{command}`")
  for k, v in (extra or {}).items():
    lines.append(f"- {k}: {v}")
  path = os.path.join(workdir, "report.md")
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")
  return path
