"""training.call_sites: call rates per task, stage and kind of action, counted by hand on
scripted episode records."""

import pytest

from londi_jax.training import call_sites

# A ScienceWorld-like episode of 6 steps (thirds: steps 0-1, 2-3, 4-5); `focus on` at step 2.
SW = {"seed": 1, "level": "scienceworld/boil", "switches": "110010",
      "actions": ["look around", "go to kitchen", "focus on water", "pick up pot",
                  "move pot to stove", "look around"]}
# A BabyAI episode of 3 steps: no milestone, thirds of one step each.
BABY = {"seed": 2, "level": "babyai_text/BabyAI-GoToLocal-v0", "switches": "011",
        "actions": ["turn left", "go forward", "go forward"]}


def test_rates_per_stage_and_kind_are_the_counted_shares():
  rows = call_sites.call_site_rows([SW, BABY])
  sw = rows["scienceworld/boil"]
  assert (sw["steps"], sw["call_rate"]) == (6, pytest.approx(3 / 6))
  stages = {k: (v["steps"], v["call_rate"]) for k, v in sw["by_stage"].items()}
  # before focus: steps 0, 1 and the focus step 2 (switches 1, 1, 0); after: steps 3-5 (0, 1, 0)
  assert stages == {"early": (2, 1.0), "middle": (2, 0.0), "late": (2, pytest.approx(0.5)),
                    "before focus": (3, pytest.approx(2 / 3)),
                    "after focus": (3, pytest.approx(1 / 3))}
  kinds = {k: (v["steps"], v["call_rate"]) for k, v in sw["by_kind"].items()}
  assert kinds == {"look": (2, 0.5), "focus": (1, 0.0), "go": (1, 1.0), "move": (1, 1.0),
                   "pick": (1, 0.0)}
  assert list(sw["by_kind"])[0] == "look"  # the most frequent kind first
  baby = rows["babyai_text/BabyAI-GoToLocal-v0"]
  assert set(baby["by_stage"]) == {"early", "middle", "late"}  # no milestone in BabyAI
  assert baby["by_kind"] == {"go": {"steps": 2, "call_rate": 1.0},
                             "turn": {"steps": 1, "call_rate": 0.0}}


def test_rows_merge_every_traced_londi_member():
  methods = {"londi_c0.005_m0": {"episodes": [SW]}, "londi_c0.005_m1": {"episodes": [SW]},
             "random_held_c0.005_m0": {"episodes": [dict(SW, switches="111111")]},
             "small_only": {"episodes": [{k: v for k, v in SW.items() if k != "actions"}]}}
  rows = call_sites.call_site_rows(call_sites.merge_episodes(methods))
  assert rows["scienceworld/boil"]["steps"] == 12
  assert rows["scienceworld/boil"]["call_rate"] == pytest.approx(0.5)
  table = call_sites.table_lines(rows)
  assert table[0].split(" | ")[3:8] == ["early", "middle", "late", "before focus", "after focus"]
  assert "| boil | 12 | 50% | 100% of 4 |" in table[2]


def test_an_untraced_or_inconsistent_record_is_named():
  untraced = {k: v for k, v in SW.items() if k != "actions"}
  with pytest.raises(ValueError, match="seed 1 of scienceworld/boil has no actions"):
    call_sites.call_site_rows([untraced])
  with pytest.raises(ValueError, match="5 switches for 6 actions"):
    call_sites.call_site_rows([dict(SW, switches="11001")])
