"""A sweep (`launch.sweep`): for each variant, one run whose members are every cost times every
training seed, evaluated against every baseline, then aggregated over seeds.

    DIR/<variant>/      a `launch.train` run and its `eval.json`
    DIR/sweep.json      per variant and cost: LONDI and each baseline over seeds, and LONDI's
                        paired differences to each baseline
    DIR/report.md, DIR/cost_quality.png
                        the report ends with where each variant's switchers call
                        (`training.call_sites`, from their traced test episodes)

Every stage resumes: a finished training run is not retrained and an existing `eval.json` is
kept. Over seeds, a cost's paired difference to a baseline is taken per test episode (each seed's
member against the baseline matched to that member's rate, averaged over seeds) with a 95%
interval over episodes; `seed_means` lists each seed's own mean difference, and `by_level` the
same per-episode differences per task (level) where the episodes play several. The differences
are of the final score (0-100) where every episode has one (ScienceWorld; the means then hold
`mean_score` and `score_by_seed` too), else of success.
"""

from __future__ import annotations

import ast
import json
import os
from typing import Callable, Sequence

import matplotlib
import ml_collections
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from londi_jax.training import call_sites  # noqa: E402
from londi_jax.training import report as report_lib  # noqa: E402
from londi_jax.training.evaluate_run import evaluate_run  # noqa: E402
from londi_jax.training.lm import load_runners  # noqa: E402
from londi_jax.training.loop import train  # noqa: E402
from londi_jax.training.main_job import pretrain, resolved  # noqa: E402
from londi_jax.training.rows import env_kwargs  # noqa: E402

METHODS = ("londi", *report_lib.BASELINES[1:])  # per member; large-only is shared


def _override_items(overrides: str) -> list[tuple[str, str]]:
  """`"a.b=value; c=value"` as `[(path, value text), ...]`."""
  items = filter(None, (part.strip() for part in overrides.split(";")))
  return [tuple(s.strip() for s in item.partition("=")[::2]) for item in items]


def apply_overrides(config: ml_collections.ConfigDict, overrides: str) -> ml_collections.ConfigDict:
  """A copy of `config` with `"a.b=value; c=value"` applied; each value is read as the type of
  the field it replaces. An unknown field is an error that names it."""
  config = config.copy_and_resolve_references()
  for path, text in _override_items(overrides):
    *parents, leaf = path.split(".")
    node = config
    for name in parents:
      node = node[name]
    if leaf not in node:
      raise KeyError(f"unknown config field {path!r} in sweep variant {overrides!r}")
    old = node[leaf]
    if isinstance(old, bool):
      value = text.lower() in ("true", "1", "yes")
    elif isinstance(old, str):
      value = text
    else:
      value = type(old)(ast.literal_eval(text))
    node[leaf] = value
  return config


def variant_costs(sweep: ml_collections.ConfigDict, overrides: str
                  ) -> tuple[tuple[float, ...], str]:
  """The variant's costs and its other overrides: `costs=(...)` in a variant replaces the sweep's
  `costs` for that variant alone (a variant that tests a cost)."""
  costs, rest = tuple(float(c) for c in sweep.costs), []
  for path, text in _override_items(overrides):
    if path == "costs":
      value = ast.literal_eval(text)
      costs = tuple(float(c) for c in (value if isinstance(value, (tuple, list)) else (value,)))
      if not costs:
        raise ValueError(f"empty costs in sweep variant {overrides!r}")
    else:
      rest.append(f"{path}={text}")
  return costs, "; ".join(rest)


def variant_config(sweep: ml_collections.ConfigDict, overrides: str) -> ml_collections.ConfigDict:
  """The variant's run config: the base with the overrides, one member per cost and seed."""
  costs, overrides = variant_costs(sweep, overrides)
  config = apply_overrides(sweep.base, overrides)
  config.member_costs = tuple(c for c in costs for _ in range(int(sweep.seeds)))
  return config


def aggregate(eval_result: dict, costs, seeds: int) -> dict:
  """Per cost: LONDI's and each baseline's means over the cost's members, and LONDI's paired
  differences to each baseline (see the module docstring)."""
  methods = eval_result["methods"]
  metric = report_lib.metric_of(methods.values())
  by_prefix = {p: dict(report_lib.member_methods(methods, p)) for p in METHODS}
  out = {}
  for i, cost in enumerate(costs):
    members = list(range(i * seeds, (i + 1) * seeds))
    londi = [by_prefix["londi"][m] for m in members if m in by_prefix["londi"]]
    levels = [e.get("level") for e in londi[0]["episodes"]] if londi else []
    entry = {}
    for prefix in METHODS:
      runs = [by_prefix[prefix][m] for m in members if m in by_prefix[prefix]]
      if runs:
        entry[prefix] = _means(runs)
    if londi and len(set(levels)) > 1:
      quality = np.mean([[float(e[metric]) for e in r["episodes"]] for r in londi], axis=0)
      entry["londi"]["by_level"] = _by_level(quality, levels)
    key = report_lib.quality_key(metric)
    per_member = {m: {"member": m, "quality": r[key], "calls": r["large_call_fraction"],
                      "compute": r["compute_relative_to_large"]}
                  for m, r in by_prefix["londi"].items() if m in members}
    for prefix in report_lib.BASELINES:
      diffs = []
      for m in members:
        base = report_lib.baseline_of(methods, prefix, m)
        if base is not None and m in by_prefix["londi"]:
          diffs.append(report_lib.paired_differences(by_prefix["londi"][m], base, metric))
          mean, se = report_lib.mean_and_se(diffs[-1])
          per_member[m][f"vs_{prefix}"] = {"mean": mean, "ci95": report_lib.Z95 * se,
                                           "quality": base[key],
                                           "calls": base["large_call_fraction"]}
      if diffs:
        per_episode = np.mean(diffs, axis=0)  # seed-averaged
        mean, se = report_lib.mean_and_se(per_episode)
        entry[f"vs_{prefix}"] = {"mean": mean, "ci95": report_lib.Z95 * se,
                                 "seed_means": [float(x.mean()) for x in diffs]}
        if len(set(levels)) > 1:
          entry[f"vs_{prefix}"]["by_level"] = _by_level(per_episode, levels)
    entry["members"] = list(per_member.values())
    out[f"{cost:g}"] = entry
  return out


def _by_level(values: np.ndarray, levels: Sequence[str]) -> dict:
  """Per level, in order of first appearance: the mean of its episodes' `values`, the 95%
  interval's half-width and the number of episodes."""
  out = {}
  for level in dict.fromkeys(levels):
    mine = values[np.asarray(levels) == level]
    mean, se = report_lib.mean_and_se(mine)
    out[level] = {"mean": mean, "ci95": report_lib.Z95 * se, "episodes": len(mine)}
  return out


def _means(runs: list[dict]) -> dict:
  keys = ("success_rate", "large_call_fraction", "compute_relative_to_large")
  out = {k: float(np.mean([r[k] for r in runs])) for k in keys}
  out["success_by_seed"] = [r["success_rate"] for r in runs]
  if all("mean_score" in r for r in runs):
    out["mean_score"] = float(np.mean([r["mean_score"] for r in runs]))
    out["score_by_seed"] = [r["mean_score"] for r in runs]
  return out


def _scored(summary: dict) -> bool:
  """Whether the sweep's quality is the score: every LONDI entry has a mean score."""
  return all("mean_score" in e["londi"] for per_cost in summary["variants"].values()
             for e in per_cost.values())


def plot(summary: dict, path: str) -> None:
  """Quality (success, or the mean score) against compute relative to large-only: each
  variant's LONDI per cost (bars: 95% interval over training seeds), the baselines at its rates,
  and the references; a variant and its baselines share a colour, the legend sits beside the
  axes."""
  key, by_seed = ("mean_score", "score_by_seed") if _scored(summary) else (
      "success_rate", "success_by_seed")
  fig, ax = plt.subplots(figsize=(10.5, 4.8))
  colours = plt.get_cmap("tab10" if len(summary["variants"]) <= 10 else "tab20")
  refs = summary["references"]
  for name, marker in (("small_only", "v"), ("large_only", "D")):
    ax.plot([refs[name]["compute_relative_to_large"]], [refs[name][key]], marker,
            color="grey", markersize=8, label=name.replace("_", "-"))
  for i, (variant, per_cost) in enumerate(summary["variants"].items()):
    colour = colours(i % colours.N)  # a colormap called past N repeats its last colour
    pts = sorted(per_cost.items(), key=lambda kv: kv[1]["londi"]["compute_relative_to_large"])
    xs = [e["londi"]["compute_relative_to_large"] for _, e in pts]
    ys = [e["londi"][key] for _, e in pts]
    err = [_t95(e["londi"][by_seed]) for _, e in pts]
    ax.errorbar(xs, ys, yerr=err, fmt="o-", capsize=3, color=colour, label=f"LONDI ({variant})")
    for prefix, style in (("random_held", "s--"), ("schedule", "x:")):
      bx = [e[prefix]["compute_relative_to_large"] for _, e in pts if prefix in e]
      by = [e[prefix][key] for _, e in pts if prefix in e]
      if bx:
        ax.plot(bx, by, style, color=colour, mfc="none",
                label=f"{prefix} at LONDI's rate ({variant})")
  ax.set_xlabel("compute relative to large-only (forward FLOPs)")
  ax.set_ylabel(report_lib.quality_label(key))
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _t95(values) -> float:
  """Half-width of the 95% t-interval of the mean of a few values (0 for one value)."""
  t = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776}
  n = len(values)
  return 0.0 if n < 2 else t.get(n, 1.96) * float(np.std(values, ddof=1) / np.sqrt(n))


def report_lines(summary: dict) -> list[str]:
  compared = {k for per_cost in summary["variants"].values() for e in per_cost.values() for k in e}
  prefixes = [p for p in report_lib.BASELINES if f"vs_{p}" in compared]
  metric = "score" if _scored(summary) else "success"
  digits = report_lib.difference_digits(metric)
  lines = ["# LONDI sweep", "",
           f"{summary['episodes']} test episodes per method, {summary['seeds']} training seeds "
           "per cost. Differences are "
           + ("of the final score (0-100), " if metric == "score" else "")
           + "LONDI minus the baseline matched to each seed's call rate, "
           "per test episode averaged over seeds (mean ± 95% interval over episodes; each seed's "
           "own mean in brackets).", "",
           *report_lib.comparison_header(
               ["variant", "cost"] + (["score"] if metric == "score" else [])
               + ["success", "calls", "compute / large"], prefixes)]
  for variant, per_cost in summary["variants"].items():
    for cost, e in per_cost.items():
      cells = [variant, cost]
      if metric == "score":
        cells.append(f"{e['londi']['mean_score']:.1f}")
      cells += [f"{e['londi']['success_rate']:.3f}", f"{e['londi']['large_call_fraction']:.3f}",
                f"{e['londi']['compute_relative_to_large']:.3f}"]
      for prefix in prefixes:
        d = e.get(f"vs_{prefix}")
        cells.append("-" if d is None else
                     report_lib.format_difference(d["mean"], d["ci95"], metric)
                     + f" [{', '.join(f'{x:+.{digits}f}' for x in d['seed_means'])}]")
      lines.append("| " + " | ".join(cells) + " |")
  refs = summary["references"]
  scores = (f"mean score small-only {refs['small_only']['mean_score']:.1f}, large-only "
            f"{refs['large_only']['mean_score']:.1f}; success " if metric == "score" else "")
  lines += ["", f"{scores}small-only {refs['small_only']['success_rate']:.3f}, large-only "
            f"{refs['large_only']['success_rate']:.3f}; the disagreement reference calls on "
            f"{refs['disagreement']['large_call_fraction']:.3f} of steps at large-only's success "
            f"(compute {refs['disagreement']['compute_relative_to_large']:.3f}, "
            f"{refs['disagreement'].get('compute_with_reference_passes', float('nan')):.3f} with "
            "its large passes).", "", f"![success against compute]({report_lib.PLOT_NAME})"]
  for variant, per_cost in summary["variants"].items():
    for cost, e in per_cost.items():
      if "by_level" in e["londi"]:
        lines += ["", f"## Per task ({variant}, c = {cost})", "",
                  *per_task_lines(e, [p for p in prefixes if f"vs_{p}" in e], metric)]
  for variant, per_cost in summary["variants"].items():
    for cost, e in per_cost.items():
      if e.get("members"):
        lines += ["", f"## Per member ({variant}, c = {cost})", "",
                  *per_member_lines(e, [p for p in prefixes if f"vs_{p}" in e], metric)]
  for variant, rows in summary.get("call_sites", {}).items():
    lines += ["", f"## Where LONDI calls ({variant})", "",
              "Every member's test episodes together: the share of steps on which the large LM "
              "acted, per task, by stage of the episode and by the first word of the action "
              "taken (`training.call_sites`).", "", *call_sites.table_lines(rows)]
  return lines


def per_member_lines(entry: dict, prefixes: Sequence[str], metric: str) -> list[str]:
  """A Markdown table of one cost's switchers, one per training seed: quality, call rate,
  compute, and the paired difference to each baseline in `prefixes` over the test episodes, with
  the baseline's own quality and call rate."""
  q = (lambda x: f"{x:.1f}") if metric == "score" else (lambda x: f"{x:.3f}")
  lines = ["Each member (training seed) on its own: LONDI minus the baseline matched to its call "
           "rate, per test episode (mean ± 95% interval; the baseline's quality at its call rate "
           "in brackets).", "",
           *report_lib.comparison_header(["member", "LONDI", "calls", "compute / large"],
                                         prefixes)]
  for m in entry["members"]:
    cells = [str(m["member"]), q(m["quality"]), f"{m['calls']:.1%}", f"{m['compute']:.2f}"]
    for p in prefixes:
      d = m.get(f"vs_{p}")
      cells.append("-" if d is None else
                   report_lib.format_difference(d["mean"], d["ci95"], metric)
                   + ("" if p == "large_only" else f" ({q(d['quality'])} at {d['calls']:.1%})"))
    lines.append("| " + " | ".join(cells) + " |")
  return lines


def per_task_lines(entry: dict, prefixes: Sequence[str], metric: str) -> list[str]:
  """A Markdown table of one cost's LONDI per task: its quality (seed-averaged) and its paired
  differences to each baseline in `prefixes` over the task's episodes."""
  londi = entry["londi"]["by_level"]
  lines = ["LONDI's " + ("mean score" if metric == "score" else "success rate")
           + " per task (seed-averaged) and its paired differences over the task's episodes "
           "(mean ± 95% interval).", "",
           *report_lib.comparison_header(["task", "episodes", "LONDI"], prefixes)]
  for level, q in londi.items():
    cells = [level.partition("/")[2] or level, str(q["episodes"]),
             f"{q['mean']:.1f}" if metric == "score" else f"{q['mean']:.3f}"]
    for p in prefixes:
      d = entry[f"vs_{p}"]["by_level"][level]
      cells.append(report_lib.format_difference(d["mean"], d["ci95"], metric))
    lines.append("| " + " | ".join(cells) + " |")
  return lines


def _references(first, config) -> dict | None:
  """The first variant's small-only, large-only and disagreement entries when `config` plays
  them identically (same policies, episodes, seed and levels); None otherwise."""
  if first is None:
    return None
  result, first_config = first
  played = lambda c: (c.policies.to_dict(), tuple(c.levels), c.reward, c.eval.episodes,
                      c.eval.seed, c.eval.num_envs, env_kwargs(c))
  same = played(first_config) == played(config)
  if not same:
    return None
  return {k: result["methods"][k] for k in ("small_only", "large_only", "disagreement")}


def _reference_fields(method: dict) -> dict:
  """What `sweep.json` keeps of a reference method (its mean score where it has one)."""
  fields = ("success_rate", "large_call_fraction", "compute_relative_to_large",
            "compute_with_reference_passes")
  out = {f: method.get(f) for f in fields}
  if "mean_score" in method:
    out["mean_score"] = method["mean_score"]
  return out


def _first_evaluated(sweep: ml_collections.ConfigDict, workdir: str, policies_dir):
  """The result and config of the sweep's first variant with an evaluation, or None."""
  for name, overrides in sweep.variants.items():
    eval_path = os.path.join(workdir, name, "eval.json")
    if os.path.exists(eval_path):
      with open(eval_path) as f:
        return json.load(f), resolved(variant_config(sweep, overrides), policies_dir)
  return None


def run_sweep(sweep: ml_collections.ConfigDict, workdir: str,
              log: Callable[[str], None] | None = print,
              only: Sequence[str] | None = None) -> dict:
  """Everything `launch.sweep` does; returns what it writes to `DIR/sweep.json`.

  `only` names the variants to train and evaluate now (two processes can then run different
  variants of one sweep side by side); the report holds every variant evaluated when it is
  written, those another process finished meanwhile included.
  """
  workdir = os.path.abspath(workdir)
  unknown = sorted(set(only or ()) - set(sweep.variants.keys()))
  if unknown:
    raise ValueError(f"unknown variant(s) {unknown} in only; the sweep's variants: "
                     f"{sorted(sweep.variants.keys())}")
  os.makedirs(workdir, exist_ok=True)
  log = log or (lambda line: None)
  base = sweep.base
  policies_dir = pretrain(base, workdir, log) if base.pretrain.enabled else None
  runners = None
  for name, overrides in sweep.variants.items():
    if only and name not in only:
      continue
    config = resolved(variant_config(sweep, overrides), policies_dir)
    runners = runners or load_runners(config)
    run_dir = os.path.join(workdir, name)
    eval_path = os.path.join(run_dir, "eval.json")
    log(f"variant {name} ({overrides}): {len(config.member_costs)} members in {run_dir}")
    train(config, run_dir, log=log, runners=runners)
    if os.path.exists(eval_path):
      log(f"variant {name}: keeping its evaluation ({eval_path})")
    else:
      evaluate_run(run_dir, runners=runners, log=log,
                   references=_references(_first_evaluated(sweep, workdir, policies_dir),
                                          config))
  # Every variant evaluated by now enters the report, those another process finished included.
  seeds = int(sweep.seeds)
  summary = {"costs": [], "seeds": seeds, "variants": {}}
  for name, overrides in sweep.variants.items():
    eval_path = os.path.join(workdir, name, "eval.json")
    if not os.path.exists(eval_path):
      log(f"variant {name}: not evaluated yet; left out of the report")
      continue
    config = resolved(variant_config(sweep, overrides), policies_dir)
    with open(eval_path) as f:
      result = json.load(f)
    costs = config.member_costs[::seeds]  # one member per cost and seed (variant_config)
    summary["costs"] = sorted({*summary["costs"], *costs})
    summary["variants"][name] = aggregate(result, costs, seeds)
    traced = call_sites.merge_episodes(result["methods"])
    if traced:
      summary.setdefault("call_sites", {})[name] = call_sites.call_site_rows(traced)
    summary["episodes"] = result["episodes"]
    summary["references"] = {k: _reference_fields(result["methods"][k])
                             for k in ("small_only", "large_only", "disagreement")}
  with open(os.path.join(workdir, "sweep.json"), "w") as f:
    json.dump(summary, f, indent=1)
  plot(summary, os.path.join(workdir, report_lib.PLOT_NAME))
  with open(os.path.join(workdir, "report.md"), "w") as f:
    f.write("\n".join(report_lines(summary)) + "\n")
  log(f"report: {os.path.join(workdir, 'report.md')}")
  return summary
