"""The report of a LONDI run, built from its files (`eval.json`, `config.json`): a Markdown table
and a plot of success against the fraction of large-LM calls."""

from __future__ import annotations

import json
import os
import platform

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from londi_jax.training.evaluation import format_table  # noqa: E402

PLOT_NAME = "success_vs_calls.png"


def _group(methods: dict, prefix: str) -> list[tuple[float, dict]]:
  return sorted((m["cost"], m) for name, m in methods.items() if name.startswith(prefix + "_"))


def paired_difference(a: dict, b: dict) -> tuple[float, float]:
  """Mean and standard error of the per-episode success difference `a - b` of two methods that
  played the same episodes (matched by seed), the paired comparison of common random numbers."""
  by_seed = {e["seed"]: float(e["success"]) for e in b["episodes"]}
  d = np.array([float(e["success"]) - by_seed[e["seed"]] for e in a["episodes"]])
  se = float(np.std(d, ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
  return float(np.mean(d)), se


def plot(eval_result: dict, path: str) -> None:
  """Success rate against large-call fraction: LONDI at each cost, random and confidence at the
  same rates, the oracle, and small-only / large-only as reference lines."""
  methods = eval_result["methods"]
  fig, ax = plt.subplots(figsize=(6.4, 4.4))
  for name, style in (("small_only", ":"), ("large_only", "--")):
    m = methods[name]
    ax.axhline(m["success_rate"], linestyle=style, color="grey",
               label=f"{name.replace('_', '-')} ({m['success_rate']:.2f})")
  for prefix, marker in (("londi", "o-"), ("random", "s"), ("confidence", "^")):
    pts = _group(methods, prefix)
    if not pts:
      continue
    xs = [m["large_call_fraction"] for _, m in pts]
    ys = [m["success_rate"] for _, m in pts]
    ax.plot(xs, ys, marker, label=prefix if prefix != "londi" else "LONDI", markersize=7)
    if prefix == "londi":
      for (c, m), x, y in zip(pts, xs, ys):
        ax.annotate(f"c={c:g}", (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
  o = methods.get("oracle")
  if o:
    ax.plot([o["large_call_fraction"]], [o["success_rate"]], "k*", markersize=10,
            label="oracle bound")
  ax.set_xlabel("fraction of steps with a large-LM call")
  ax.set_ylabel("success rate")
  ax.set_xlim(-0.02, 1.02)
  ax.set_title(f"BabyAI-Text, {eval_result['episodes']} test episodes")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8, loc="best")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def write_report(workdir: str, command: str = "", extra: dict | None = None) -> str:
  """Writes `DIR/report.md` and `DIR/success_vs_calls.png` from `DIR/eval.json`; returns the
  report's path."""
  with open(os.path.join(workdir, "eval.json")) as f:
    result = json.load(f)
  with open(os.path.join(workdir, "config.json")) as f:
    config = json.load(f)["config"]
  plot(result, os.path.join(workdir, PLOT_NAME))
  methods = result["methods"]
  large = methods["large_only"]
  lines = [
      "# LONDI on BabyAI-Text", "",
      f"Levels: {', '.join(result['levels'])}. {result['episodes']} test episodes (seeds "
      f"{result['seeds'][0]}..{result['seeds'][-1]}), the same for every method; checkpoint "
      f"{result['checkpoint']['which']} at step {result['checkpoint']['step']}; costs c = "
      f"{', '.join(f'{c:g}' for c in result['member_costs'])}"
      + (f"; hard budget {result['budget']} calls per episode" if result["budget"] else "") + ".",
      "", format_table(methods), "",
      f"![success against large-call fraction]({PLOT_NAME})", "",
      "## Against the target (within 2 points of large-only success, >= 40% compute saved)", "",
      "| cost c | success - large-only (95% paired interval) | success - random at its rate "
      "| compute saved | met |", "|---|---|---|---|---|"]
  for c, m in _group(methods, "londi"):
    gap, se = paired_difference(m, large)
    saved = 1 - m["compute_relative_to_large"]
    random = [r for rc, r in _group(methods, "random") if rc == c]
    vs_random = "-"
    if random:
      d, d_se = paired_difference(m, random[0])
      vs_random = f"{d:+.3f} ± {1.96 * d_se:.3f}"
    met = "yes" if gap >= -0.02 and saved >= 0.4 else "no"
    lines.append(f"| {c:g} | {gap:+.3f} ± {1.96 * se:.3f} | {vs_random} | {saved:.1%} | {met} |")
  lines += [
      "", "Compute is total forward FLOPs over the episodes relative to large-only, counting the "
      "small LM and the switcher (docs/architecture.md: compute accounting). Differences are "
      "per-episode success "
      "differences on the same episodes (mean ± 1.96 standard errors). The oracle's knowledge of where the two "
      "policies disagree is free, so it is a bound. s/step is measured wall time per environment "
      "step, compilation excluded.", "",
      "## Run", "",
      f"- policies: `{config['policies']['dir'] or config['policies']['small']}`",
      f"- members: {len(result['member_costs'])}, {config['num_envs']} rows each, "
      f"{config['train_steps']} acting steps; switcher reward `{config.get('reward', 'env')}`, "
      f"decisions held {config['switcher'].get('hold', 1)} steps, "
      f"{config['switcher'].get('n_step', 1)}-decision targets, discount "
      f"{config['switcher']['discount']:g}, shared replay "
      f"{config['switcher'].get('share_replay', False)}",
      f"- machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"]
  if command:
    lines.append(f"- command: `{command}`")
  for k, v in (extra or {}).items():
    lines.append(f"- {k}: {v}")
  path = os.path.join(workdir, "report.md")
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")
  return path
