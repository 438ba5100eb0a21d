"""The switcher loop, evaluation and report on ScienceWorld with real JVMs
(`configs/londi.py:scienceworld:smoke`, tiny untrained policies written here): splits chosen by
the reset seed, one JVM per row and evaluation slot, scores in eval.json and the report, a killed
JVM mid-training, and no JVM left behind."""

import logging
import os
import signal
import threading

import jax
import numpy as np
import pytest

from configs import londi
from londi_jax import envs
from londi_jax.envs import seeds
from londi_jax.envs.workers import EnvWorker, descendant_pids
from londi_jax.policies.config import DecoderConfig
from londi_jax.policies.model import init_params
from londi_jax.policies.store import save_policy
from londi_jax.policies.tokenizer import build_word_tokenizer
from londi_jax.training import call_sites
from londi_jax.training import episodes as episodes_lib
from londi_jax.training import loop
from londi_jax.training import sweep
from londi_jax.training.evaluate_run import evaluate_run
from londi_jax.training.lm import load_runners
from londi_jax.training.metrics import read_metrics
from londi_jax.training.report import write_report

pytest.importorskip("scienceworld")

SIZES = {"small": dict(hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2,
                       num_kv_heads=1),
         "large": dict(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2,
                       num_kv_heads=1)}
PROMPTS = {"small": {"num_actions": 0}, "large": {"num_actions": 3}}
LEVELS = londi.get_config("scienceworld:smoke").levels


def quiet(line):
  del line


class JavaCount:
  """The most `java` descendants of this process seen while the block runs (polled)."""

  def __init__(self, every_s: float = 0.2):
    self.every_s = every_s
    self.most = 0
    self._stop = threading.Event()

  def _poll(self):
    while not self._stop.is_set():
      self.most = max(self.most, len(descendant_pids(os.getpid(), "java")))
      self._stop.wait(self.every_s)

  def __enter__(self):
    self._thread = threading.Thread(target=self._poll, daemon=True)
    self._thread.start()
    return self

  def __exit__(self, *exc_info):
    self._stop.set()
    self._thread.join()


@pytest.fixture(scope="module", autouse=True)
def no_java_left():
  """Torn down last: every JVM this module started is gone by then."""
  yield
  assert descendant_pids(os.getpid(), "java") == []


@pytest.fixture(scope="module")
def test_variations():
  """Per task, the simulator's own list of test variations (sorted)."""
  out = {}
  for task in LEVELS:
    with envs.make(task) as env:
      env.reset(seed=0)
      out[task] = sorted(int(v) for v in env.simulator.get_variations_test())
  return out


def write_tiny_policies(folder: str) -> str:
  """Tiny random small and large policies in `folder`, over a word tokenizer of a few
  ScienceWorld prompts (in both templates) and candidates."""
  texts = []
  rng = np.random.default_rng(0)
  for task in LEVELS:
    with envs.make(task, step_limit=6) as env:
      obs = env.reset(seed=0)
      histories = {n: envs.prompt_history(task, c) for n, c in PROMPTS.items()}
      for h in histories.values():
        h.reset(obs)
      done = False
      while not done:
        texts += [h.prompt() for h in histories.values()] + list(obs.valid_actions)
        action = obs.valid_actions[rng.integers(len(obs.valid_actions))]
        obs, reward, done, _ = env.step(action)
        for h in histories.values():
          h.record(action, obs, reward)
  tokenizer = build_word_tokenizer(texts)
  for k, name in enumerate(("small", "large")):
    s = SIZES[name]
    config = DecoderConfig(vocab_size=-(-tokenizer.vocab_size // 8) * 8,
                           head_dim=s["hidden_size"] // s["num_heads"], tie_word_embeddings=True,
                           **s)
    save_policy(os.path.join(folder, name), config,
                init_params(config, jax.random.fold_in(jax.random.key(0), k)), tokenizer,
                meta={"name": name, "prompt": PROMPTS[name],
                      "levels": list(LEVELS), "untrained": True})
  return folder


@pytest.fixture(scope="module")
def policies(tmp_path_factory):
  return write_tiny_policies(str(tmp_path_factory.mktemp("policies")))


def smoke_config(policies):
  c = londi.get_config("scienceworld:smoke")
  c.policies.dir = policies
  c.eval_every = 16  # one periodic evaluation, at the end
  c.eval.baselines = ("random_held", "trigger")  # BabyAI-Text's tests cover the others
  c.features.progress = True  # the trigger's signals in phi, from real JVMs' answers
  return c


@pytest.fixture(scope="module")
def runners(policies):
  return load_runners(smoke_config(policies))


@pytest.fixture(scope="module")
def run(policies, runners, tmp_path_factory):
  """A smoke run trained and evaluated, with the most JVMs seen during each stage."""
  config = smoke_config(policies)
  workdir = str(tmp_path_factory.mktemp("run"))
  with JavaCount() as training:
    loop.train(config, workdir, log=quiet, runners=runners)
  with JavaCount() as evaluation:
    result = evaluate_run(workdir, runners=runners, log=quiet)
  return dict(config=config, workdir=workdir, result=result, training=training.most,
              evaluation=evaluation.most)


def test_split_of_inverts_episode_seed():
  for split in ("train", "dev", "test"):
    for s, k in ((0, 0), (3, 5), (700_000, 12)):
      assert seeds.split_of(seeds.episode_seed(s, k, split)) == (split, s + k)
  assert seeds.split_of(999_999) == ("train", 999_999)
  with pytest.raises(ValueError, match="non-negative"):
    seeds.split_of(-1)


def test_reset_seed_picks_the_split_of_its_range():
  """`reset(seed=episode_seed(s, k, split))` plays the split's variation number `(s + k) mod n`
  of the simulator's own list; an explicit `split=` takes its own split for any seed."""
  task = "scienceworld/find-living-thing"
  with envs.make(task) as env, envs.make(task, split="train") as fixed:
    env.reset(seed=0)
    sim = env.simulator
    listed = {"train": sim.get_variations_train(), "dev": sim.get_variations_dev(),
              "test": sim.get_variations_test()}
    for split, variations in listed.items():
      order = sorted(int(v) for v in variations)
      for s, k in ((0, 0), (5, 2), (0, len(order) + 1)):
        obs = env.reset(seed=seeds.episode_seed(s, k, split))
        assert obs.extra["variation"] == order[(s + k) % len(order)], (split, s, k)
    train = sorted(int(v) for v in listed["train"])
    test_seed = seeds.episode_seed(0, 3, "test")
    assert fixed.reset(seed=test_seed).extra["variation"] == train[test_seed % len(train)]


def test_variation_stride_gives_each_levels_episodes_distinct_variations():
  """Four interleaved tasks give `lifespan-longest-lived` (level 2) the seeds `2 + 4j`: index
  `i mod 32` plays its 32 test variations' every fourth one again after 8 episodes, while
  `variation_stride=4` plays variation number `(2 + 4j) // 4 = j`."""
  task = "scienceworld/lifespan-longest-lived"
  seed_of = lambda j: seeds.episode_seed(0, 2 + 4 * j, "test")
  with envs.make(task, variation_stride=4) as strided, envs.make(task) as plain:
    strided.reset(seed=0)
    order = sorted(int(v) for v in strided.simulator.get_variations_test())
    assert len(order) == 32
    for j in (0, 1, 7, 8, 31):
      assert strided.reset(seed=seed_of(j)).extra["variation"] == order[j], j
    assert plain.reset(seed=seed_of(0)).extra["variation"] == plain.reset(
        seed=seed_of(8)).extra["variation"] == order[2]
  with pytest.raises(ValueError, match="variation_stride must be at least 1, got 0"):
    envs.make(task, variation_stride=0)
  config = londi.get_config("scienceworld:smoke")
  assert config.env_kwargs.variation_stride == len(config.levels)
  config.env_kwargs.variation_stride = 3
  with pytest.raises(ValueError, match=r"env_kwargs.variation_stride must be 1 or the number of "
                                       r"levels \(2: .*got 3"):
    loop.validate(config)


def test_heavy_families_pin_one_level_per_slot():
  assert envs.heavy("scienceworld/boil") and not envs.heavy("babyai_text/BabyAI-GoToLocal-v0")
  levels = LEVELS
  built = []

  def make_env(env_id):
    built.append(env_id)
    return _NoEnv()

  slots = episodes_lib.Slots(episodes_lib.Schedule(levels, 7, 0, "test"), {}, num_envs=3,
                             make_env=make_env)
  played = [[] for _ in slots.rows]
  for i in range(3):
    slots.start(i)
  while live := slots.live():
    for i in live:
      played[i].append(slots.episode[i])
      slots.start(i)
  # Slots 0 and 2 share level 0's episodes (0, 2, 4, 6) in schedule order, slot 1 plays level
  # 1's; each slot built one environment.
  assert played == [[0, 4], [1, 3, 5], [2, 6]]
  assert built == [levels[0], levels[1], levels[0]]
  with pytest.raises(ValueError, match="at least 2 slots"):
    episodes_lib.Slots(episodes_lib.Schedule(levels, 7, 0, "test"), {}, num_envs=1)


class _NoEnv:
  """An environment that is never stepped."""

  def reset(self, seed=None):
    del seed
    return envs.Observation("", (), ("wait",))

  def close(self):
    pass


def test_training_holds_one_jvm_per_row_and_evaluation_one_per_slot(run):
  config = run["config"]
  rows, slots = config.num_envs, config.eval.num_envs
  # Training: a JVM per training row, plus one per slot of the periodic evaluation.
  assert 1 <= run["training"] <= rows + min(slots, config.eval_episodes)
  # Evaluation: every method and dev calibration on the same slots, one task and JVM each.
  assert run["evaluation"] == slots
  records = read_metrics(os.path.join(run["workdir"], "metrics.jsonl"))
  assert [r["step"] for r in records if r["kind"] == "train"] == [4, 8, 12, 16]
  evals = [r for r in records if r["kind"] == "eval"]
  assert [r["step"] for r in evals] == [16]
  assert all(0 <= m["mean_score"] <= 100 for r in evals for m in r["members"])


def test_test_episodes_play_test_variations_and_carry_scores(run, test_variations):
  result = run["result"]
  levels = LEVELS
  assert result["levels"] == list(levels)
  methods = result["methods"]
  assert {"small_only", "large_only", "disagreement", "londi_c0.02", "trigger_c0.02"} <= set(
      methods)
  for name, m in methods.items():
    assert len(m["episodes"]) == run["config"].eval.episodes
    for e in m["episodes"]:
      split, index = seeds.split_of(e["seed"])
      assert split == "test" and e["level"] == levels[index % len(levels)]
      order = test_variations[e["level"]]
      assert e["variation"] == order[index // len(levels) % len(order)], (name, e)
      assert 0 <= e["score"] <= 100 and e["length"] <= run["config"].env_kwargs.step_limit
    scores = [e["score"] for e in m["episodes"]]
    assert m["mean_score"] == pytest.approx(np.mean(scores)), name
    assert m["score_ci95"] == pytest.approx(1.959964 * np.std(scores, ddof=1) / 2), name
  # A ScienceWorld episode's return is its final score: the rewards are its increments.
  for e in methods["small_only"]["episodes"]:
    assert e["return"] == pytest.approx(e["score"])
  trigger = methods["trigger_c0.02"]
  assert trigger["patience"] == 2 and trigger["duration"] in (2, 4)
  assert trigger["calibration"]["dev_episodes"] == run["config"].eval.dev_episodes
  assert "dev_mean_score" in trigger["calibration"]


def test_report_shows_scores_and_score_differences(run):
  path = write_report(run["workdir"])
  with open(path) as f:
    text = f.read()
  assert "| method | score | success |" in text
  assert "Per-episode score (0-100) differences" in text
  assert "| cost c | score | success | large calls | compute / large | vs large-only |" in text
  assert "vs trigger |" in text
  row = next(line for line in text.splitlines() if line.startswith("| 0.02 |"))
  cells = row.strip("| ").split(" | ")
  methods = run["result"]["methods"]
  londi_m, large = methods["londi_c0.02"], methods["large_only"]
  by_seed = {e["seed"]: e["score"] for e in large["episodes"]}
  d = np.array([e["score"] - by_seed[e["seed"]] for e in londi_m["episodes"]], float)
  assert cells[1] == f"{londi_m['mean_score']:.1f} ± {londi_m['score_ci95']:.1f}"
  assert cells[5] == f"{d.mean():+.1f} ± {1.959964 * d.std(ddof=1) / 2:.1f}"


def test_sweep_aggregates_scores(run, tmp_path):
  result = run["result"]
  methods = result["methods"]
  per_cost = sweep.aggregate(result, [0.02], 1)["0.02"]
  assert per_cost["londi"]["mean_score"] == pytest.approx(methods["londi_c0.02"]["mean_score"])
  assert per_cost["londi"]["score_by_seed"] == [methods["londi_c0.02"]["mean_score"]]
  by_seed = {e["seed"]: e["score"] for e in methods["trigger_c0.02"]["episodes"]}
  d = [e["score"] - by_seed[e["seed"]] for e in methods["londi_c0.02"]["episodes"]]
  assert per_cost["vs_trigger"]["mean"] == pytest.approx(np.mean(d))
  # Per task, by hand: the same differences over each task's episodes.
  levels = [e["level"] for e in methods["londi_c0.02"]["episodes"]]
  assert list(per_cost["vs_trigger"]["by_level"]) == list(dict.fromkeys(levels)) == list(LEVELS)
  for level in LEVELS:
    mine = [x for x, lv in zip(d, levels) if lv == level]
    got = per_cost["vs_trigger"]["by_level"][level]
    assert got["episodes"] == len(mine) and got["mean"] == pytest.approx(np.mean(mine))
    assert got["ci95"] == pytest.approx(1.959964 * np.std(mine, ddof=1) / np.sqrt(len(mine)))
    assert per_cost["londi"]["by_level"][level]["mean"] == pytest.approx(np.mean(
        [e["score"] for e in methods["londi_c0.02"]["episodes"] if e["level"] == level]))
  summary = {"episodes": result["episodes"], "seeds": 1, "variants": {"td": {"0.02": per_cost}},
             "references": {k: sweep._reference_fields(methods[k])
                            for k in ("small_only", "large_only", "disagreement")},
             "call_sites": {"td": call_sites.call_site_rows(
                 call_sites.merge_episodes(methods))}}
  lines = sweep.report_lines(summary)
  assert "| variant | cost | score | success | calls | compute / large |" in lines[4]
  assert lines[6].startswith(f"| td | 0.02 | {per_cost['londi']['mean_score']:.1f} |")
  task = lines.index("## Per task (td, c = 0.02)")
  assert lines[task + 4].startswith("| task | episodes | LONDI | vs large-only |")
  first = per_cost["vs_trigger"]["by_level"][LEVELS[0]]
  assert lines[task + 6].startswith(f"| {LEVELS[0].partition('/')[2]} | {first['episodes']} |")
  # Where LONDI calls: every test step of its traced episodes, per task, before and after focus.
  where = lines[lines.index("## Where LONDI calls (td)"):]
  londi_eps = methods["londi_c0.02"]["episodes"]
  for level in LEVELS:
    steps = sum(e["length"] for e in londi_eps if e["level"] == level)
    calls = sum(e["calls"] for e in londi_eps if e["level"] == level)
    row = next(line for line in where if line.startswith(f"| {level.split('/')[1]} |"))
    assert row.split(" | ")[1:3] == [str(steps), f"{calls / steps:.0%}"]
  assert "| late | before focus |" in where[4]  # untrained policies may never focus
  sweep.plot(summary, str(tmp_path / "plot.png"))


def test_a_killed_jvm_truncates_its_step_and_training_goes_on(policies, runners, tmp_path,
                                                               monkeypatch, caplog):
  config = smoke_config(policies)
  config.eval_every = 0
  config.train_steps = 8
  results = []

  def call_all(*args):
    results.append(original(*args))
    return results[-1]

  original = loop.call_all
  monkeypatch.setattr(loop, "call_all", call_all)
  trainer = loop.Trainer(config, str(tmp_path / "killed"), runners=runners, log=quiet)
  try:
    for _ in range(3):
      trainer.act()
    row = trainer.rows.rows[0]
    worker, t, episode_index = row.env, row.t, trainer.rows.episode_index[0]
    assert isinstance(worker, EnvWorker)
    (java,) = descendant_pids(worker.pid, "java")
    os.kill(java, signal.SIGKILL)
    with caplog.at_level(logging.WARNING):
      trainer.act()
    _, reward, done, info = results[-1][0]
    assert done and info["truncated"] and info["worker_restarted"] and "JVM" in info["error"]
    assert reward == 0.0 and worker.restarts == 1
    assert any("restarting" in r.getMessage() for r in caplog.records)
    # The row's episode ended there (terminal for the switcher) and the next one started.
    assert trainer.pending.discount[0] == 0.0
    assert trainer.rows.episode_index[0] == episode_index + 1 and row.t == 0
    episode = [e for e in trainer.window.episodes[0] if e.row == 0][-1]
    assert episode.length == t + 1 and not episode.success
    record = trainer.run()
    assert record["step"] == config.train_steps
    assert len(descendant_pids(os.getpid(), "java")) == config.num_envs
  finally:
    trainer.close()
  assert descendant_pids(os.getpid(), "java") == []
