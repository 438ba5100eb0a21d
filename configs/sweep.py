"""Sweeps of LONDI (`launch.sweep`): costs x training seeds for each variant of the switcher.

    python -m launch.sweep --config configs/sweep.py --workdir DIR
    python -m launch.sweep --config configs/sweep.py:cpu --workdir DIR  # ~1.5 h a variant, 2 cores
    python -m launch.sweep --config configs/sweep.py:smoke --workdir DIR
    python -m launch.sweep --config configs/sweep.py:scienceworld --workdir DIR  # 2 cores

Each variant is one training run (`DIR/<variant>/`) whose members are every cost times
`seeds` training seeds (`vmap`ped together: they share a shape), evaluated against every baseline
at each member's rate; `DIR/sweep.json`, `DIR/report.md` and `DIR/cost_quality.png` aggregate
them over seeds. A variant is a list of `field=value` overrides of `base` (the BabyAI-Text family
of `configs/londi.py`; the ScienceWorld family for the `scienceworld` preset), so a sweep over
targets, feature sets or budgets is a list of strings.
"""

import ml_collections

from configs import londi


def scienceworld() -> ml_collections.ConfigDict:
  """results/scienceworld: the embedded ScienceWorld policies, one cost, three seeds, the
  bootstrapped learner, sized for 2 cores (12 training rows and 8 evaluation slots, a JVM each)."""
  c = ml_collections.ConfigDict()
  c.base = londi.scienceworld("default")
  b = c.base
  b.num_envs = 4
  b.train_steps = 400
  b.log_every = 50
  b.checkpoint_every = 100
  b.eval_every = 0
  b.keep_checkpoints = 1
  b.switcher.epsilon_decay_steps = 300
  b.switcher.min_replay = 128
  b.switcher.batch_size = 64
  b.switcher.replay_capacity = 5000
  # These runs map seeds to variations as runs made before `variation_stride` did (`i mod n`):
  # the 100 test episodes are 83 distinct variations (`lifespan-longest-lived` plays 8 of its 32,
  # each about 3 times; results/scienceworld/COMMAND.md).
  b.env_kwargs.variation_stride = 1
  b.eval.episodes = 100  # 25 test episodes of each task
  b.eval.dev_episodes = 32
  b.eval.baselines = ("random_held", "schedule", "trigger")
  b.eval.trigger.patience, b.eval.trigger.duration = (2, 4), (4, 8)
  c.costs = (0.005,)
  c.seeds = 3
  rearmed = ("eval.trigger.patience=(4, 8, 16); eval.trigger.duration=(2, 4); "
             "eval.trigger.rearm=True")
  # Paired targets (counterfactual branch pairs, small-LM continuation, shared by all members):
  # one pair per member and acting step, the 3 pairs of a step played together in 6 branch JVMs;
  # a checkpoint every 50 steps, since a step takes ~20 s. Its trigger grid adds patience 2,
  # since patience 4 reached at most 42% of dev steps where a member of td_history_cost_001
  # called on 63%.
  paired_history_cost_001 = ("switcher.target=paired; switcher.paired.pairs_per_step=1; "
                             "switcher.paired.batch=3; checkpoint_every=50; "
                             "features.history=True; costs=(0.01,); "
                             "eval.baselines=('random_held', 'trigger'); " +
                             rearmed.replace("(4, 8, 16)", "(2, 4, 8, 16)"))
  progress = paired_history_cost_001 + "; features.progress=True"
  progress_long_takeovers = progress.replace("duration=(2, 4)", "duration=(2, 4, 8)")
  flops = progress_long_takeovers + "; switcher.flops_unit=1.5e9"
  c.variants = ml_collections.ConfigDict({
      "td": "switcher.target=td",
      # A dearer call, so the rate falls where held random no longer matches large-only (a 4-step
      # call block's mean effect, about 4 x 0.18 / 25 = 0.029, is below its price 4 x 0.01), and
      # the history view (the small LM on the large LM's prompt: what the procedure has done).
      # Its trigger re-arms after a takeover, so that it reaches this variant's rates (30-35%):
      # otherwise a stall keeps the large LM on until the score rises, and no setting tried
      # (patience 2-16, duration 2-8) calls on fewer than 65% of dev steps.
      "td_history_cost_001": "switcher.target=td; features.history=True; costs=(0.01,); "
                             "eval.baselines=('random_held', 'trigger'); " + rearmed,
      # The same with paired targets (above).
      "paired_history_cost_001": paired_history_cost_001,
      # The same with the trigger's signals in phi (score so far, steps since it rose, a
      # rejected action, the task's focus; `training.progress`), which the trigger acts on and
      # the switcher otherwise has to infer from the small LM's pooled states.
      "paired_history_progress_cost_001": progress,
      # The same with branches that continue as held random switching at 50% of steps, not as
      # small-only: the pairs then measure a call block against the coin the target 2
      # compares with (a rollout improvement of that coin, not of small-only). Its trigger grid
      # adds 8-step takeovers, since 2 and 4 reached at most 58% of dev steps where members of
      # paired_history_progress_cost_001 called on up to 76%.
      "paired_history_progress_random_cost_001": (
          progress_long_takeovers +
          "; switcher.paired.continuation=random; switcher.paired.continuation_rate=0.5"),
      # paired_history_progress_cost_001 with a price per FLOP: a call costs c per 1.5e9 FLOPs
      # of the large LM at its state (about its mean per step), not c, so the price follows the
      # compute target 1 counts, and calls at long candidate lists cost more. Trigger grid as
      # in the random variant (its rate is not known in advance).
      "paired_history_progress_flops_cost_001": flops,
      # The same at c = 0.0075 per unit: at 0.01 two seeds called for 51-53% of large-only's
      # compute, 3 points below it, and the third for 79%, within 0.7.
      "paired_history_progress_flops_cost_00075": flops.replace("costs=(0.01,)",
                                                                "costs=(0.0075,)"),
      # The same price with a Lagrangian on the compute share: the multiplier adds to the price
      # per FLOP while the greedy calls take more than 53% of the large LM's FLOPs at the
      # training rows' states, so seeds that would call for 0.72-0.73 of large-only's compute
      # (two of the three above) are held near the 0.59 of the third.
      "paired_history_progress_flops_lagrangian_053": flops.replace(
          "costs=(0.01,)", "costs=(0.0075,)") + (
              "; switcher.lagrangian.enabled=True; switcher.lagrangian.measure=compute; "
              "switcher.lagrangian.target=0.53; switcher.lagrangian.learning_rate=0.0003")})
  return c


def get_config(preset: str = "default") -> ml_collections.ConfigDict:
  if preset == "scienceworld":
    return scienceworld()
  c = ml_collections.ConfigDict()
  c.base = londi.babyai_text("smoke" if preset == "smoke" else "default")
  c.base.eval.episodes = 1000
  c.base.eval_every = 0  # the latest checkpoint is evaluated
  c.base.keep_checkpoints = 1
  c.costs = (0.002, 0.005, 0.01)
  c.seeds = 3  # training seeds per cost (members seed, seed + 1, ...)
  c.variants = ml_collections.ConfigDict()
  c.variants.paired = "switcher.target=paired"
  c.variants.paired_history = "switcher.target=paired; features.history=True"
  c.variants.td = "switcher.target=td"
  if preset == "cpu":
    # results/babyai_text: one cost, three seeds, and what each part buys: td beside paired,
    # the history view, twice the branch pairs (every decision point), the history view with
    # twice the pairs and updates, a dearer call. `paired` is evaluated against every baseline,
    # the ablations against those that decide the targets.
    c.costs = (0.005,)
    ablation = "; eval.baselines=('random_held', 'schedule')"
    c.variants = ml_collections.ConfigDict({
        "paired": "switcher.target=paired",
        "td": "switcher.target=td" + ablation,
        "paired_history": "switcher.target=paired; features.history=True" + ablation,
        "paired_more_pairs": "switcher.target=paired; switcher.paired.pairs_per_step=4; "
                             "switcher.replay_capacity=20000" + ablation,
        # A dearer call (a lower call rate), where ranking decision points counts for more.
        "paired_history_cost_001": "switcher.target=paired; features.history=True; "
                                   "costs=(0.01,)" + ablation,
        # The history view with twice the pairs and twice the updates (each pair fitted as often).
        "paired_history_more_pairs": "switcher.target=paired; features.history=True; "
                                     "switcher.paired.pairs_per_step=4; "
                                     "switcher.replay_capacity=20000; switcher.num_updates=8; "
                                     "switcher.decay_updates=3000" + ablation,
        # Approximate policy iteration: branches continue with the member's own greedy rule, so
        # each member learns from its own pairs, one decision point per acting step (a greedy
        # branch step scores both LMs and the history view: several times a small-only one).
        "paired_history_greedy": "switcher.target=paired; features.history=True; "
                                 "switcher.paired.continuation=greedy; "
                                 "switcher.paired.pairs_per_step=1" + ablation,
        # Decisions held 4 steps, not 8 (held random holds 4 too): bench/call_effect.py ranks
        # 4-step call blocks 2.1x their mean effect in its top 40%, 8-step blocks 1.5x.
        "paired_history_hold4": "switcher.target=paired; features.history=True; "
                                "switcher.hold=4" + ablation,
        # 2-step blocks: 4.0x their mean effect in the top 40% (bench/call_effect.py), but a
        # mean effect (+0.007) below their price (2 x 0.005), so LONDI calls only where it ranks.
        "paired_history_hold2": "switcher.target=paired; features.history=True; "
                                "switcher.hold=2" + ablation,
        # 4-step blocks at a dearer call, so the rate falls near the 40% where the bench ranks
        # them (their price 4 x 0.0075 = 0.03, above their mean effect +0.025).
        "paired_history_hold4_cost_0075": "switcher.target=paired; features.history=True; "
                                          "switcher.hold=4; costs=(0.0075,)" + ablation,
        # The history view and the episode memory (phi at the last two decision points and the
        # mean of the earlier ones): bench/call_effect.py puts +0.086 in the top 40% with it,
        # +0.070 without.
        "paired_history_memory": "switcher.target=paired; features.history=True; "
                                 "features.memory=True" + ablation})
  elif preset == "smoke":
    c.base.pretrain.enabled = True
    c.base.pretrain.preset = "smoke"
    c.base.eval.episodes = 8
    c.base.eval_every = 20
    c.costs = (0.01, 0.1)
    c.seeds = 2
    c.variants = ml_collections.ConfigDict({"paired": "switcher.target=paired",
                                            "td": "switcher.target=td"})
    c.base.switcher.paired.batch = 4
    c.base.switcher.hold = 2
  elif preset != "default":
    raise ValueError(f"unknown preset {preset!r} of configs/sweep.py; known: default, cpu, smoke, "
                     "scienceworld")
  return c
