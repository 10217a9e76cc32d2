"""The four shipped experiments of the model-collapse literature (configs/mad-digits,
stability-digits, reward-digits, tails-digits; docs/literature.md): each loads, plans
with at least five seeds and compares what its paper claims; and the compare options
they use (compare.generations, compare.generations_of)."""

import pytest

from ouroboros.config import load_config
from ouroboros.errors import UserError
from ouroboros.studies import loop

from test_comparisons import grid_run, read_csv

CONFIGS = ("mad-digits", "stability-digits", "reward-digits", "tails-digits")


@pytest.mark.parametrize("name", CONFIGS)
def test_each_literature_config_plans_five_seeds_or_more(name):
    config = load_config(name)
    assert len(config.loop.seeds) >= 5
    plan = loop.plan(config, None)  # the real digits, nothing written
    variants = {variant for variant, _, _ in plan.chains}
    assert len(variants) == len(config.loop.cells())
    assert all(len(chain) == config.loop.generations for chain in plan.chains.values())


def test_what_each_config_sets_up():
    mad = load_config("mad-digits")
    assert {lc.scenario for _, lc in mad.loop.cells()} == {"mix", "fresh"}
    assert {lc.real_fraction for _, lc in mad.loop.cells()} >= {0.0, 0.5}
    assert len({lc.families()[0].bias for _, lc in mad.loop.cells()}) == 2
    stability = dict(load_config("stability-digits").loop.cells())
    assert stability["gmm lambda=1"].init == "previous" and stability["gmm lambda=1"].synthetic_ratio == 1.0
    assert stability["gaussian fully synthetic"].scenario == "replace"
    reward = dict(load_config("reward-digits").loop.cells())
    assert reward["class reward"].curation.target_class == "0" and reward["class reward"].labels == "sampled"
    assert reward["confidence reward + real"].scenario == "mix"
    assert "class reward control" in reward  # each curated variant beside its unfiltered control
    tails = load_config("tails-digits")
    assert tails.evaluate.tails and tails.data.long_tail.ratio == 10 and tails.loop.labels == "sampled"


def test_compare_generations_of_all_compares_every_variant_with_each_listed_generation(tmp_path):
    run = grid_run(tmp_path / "a", extra=["compare.generations=[0, 1]", "compare.generations_of=all"])
    pairs = {(r["kind"], r["a"], r["a_generation"], r["b_generation"]) for r in read_csv(run)
             if r["kind"].startswith("vs generation")}
    cells = {r["a"] for r in read_csv(run)}
    for cell in cells:
        assert ("vs generation 0", cell, "2", "0") in pairs and ("vs generation 1", cell, "2", "1") in pairs
    base = {(r["kind"], r["a"]) for r in read_csv(grid_run(tmp_path / "b")) if r["kind"].startswith("vs gen")}
    assert base == {("vs generation 0", "replace, guidance=1"), ("vs generation 0", "g replace, guidance=1")}


@pytest.mark.parametrize("overrides, fragment", [
    (["compare.generations_of=some"], "compare.generations_of must be"),
    (["compare.generations=[]"], "compare.generations must be a non-empty list"),
    (["compare.generations=[-1]"], "compare.generations must be a non-empty list"),
])
def test_bad_compare_generations_name_the_key(overrides, fragment):
    from conftest import TINY
    from test_comparisons import GRID

    with pytest.raises(UserError) as err:
        load_config(None, TINY + ["loop.guidance=[1.0]", f"loop.variants={GRID}", *overrides])
    assert fragment in str(err.value)
