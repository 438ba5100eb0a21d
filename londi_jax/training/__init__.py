"""LONDI training and evaluation on text environments: features, the host-side loop, baselines,
compute accounting, checkpoints and reports (DESIGN.md Sec. 2.1-2.4)."""
