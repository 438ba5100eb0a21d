"""LONDI training and evaluation on text environments (docs/architecture.md).

- `features`: the switcher's view `phi(s)`, each part switchable.
- `lm`: the two LM policies as the loop uses them (loading, per-row FLOPs, common random numbers).
- `rows`: environment rows whose state is `(seed, actions, switches)`, so checkpoints can replay
  them.
- `episodes`: the one episode runner (a schedule of episodes, `num_envs` rows in flight).
- `policy_eval`: the success rate of one policy alone (`launch.pretrain`).
- `members`: the per-member state and the jitted, member-`vmap`ped step (replay, updates, switch).
- `loop`: the host-side training loop (`launch.train`), metrics and checkpoints.
- `checkpoint`, `metrics`: Orbax checkpoints with config and format version; `metrics.jsonl`.
- `evaluation`, `evaluate_run`: switching rules on fixed episodes, the baselines, compute
  accounting, `eval.json` (`launch.evaluate`).
- `report`, `main_job`: the report and plot, and the main job (`launch.main`).
- `inspect_run`: a checkpoint summary from its own files (`launch.inspect`).
- `branches`: keep/call branch pairs replayed from rows (paired targets).
- `calibration`: baselines calibrated to a call rate on dev episodes.
- `sweep`: costs x seeds x variants, aggregated over seeds (`launch.sweep`).
- `fakes`: tiny untrained policies for tests and benchmarks.
"""
