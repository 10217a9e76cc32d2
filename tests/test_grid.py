"""loop.grid (`ouroboros.config_grid`): lists of loop settings crossed
into variants, named and recorded as loop.variants are, a results.csv column per crossed
key, heat-maps at the last generation, and bad grids refused before anything is written."""

import csv
import dataclasses

import numpy as np
import pytest
import yaml

from ouroboros import cli
from ouroboros.config import load_config
from ouroboros.config_grid import grid_columns
from ouroboros.errors import UserError
from ouroboros.studies import loop_grid
from ouroboros.studies.loop import param_columns

GAUSSIAN = ["loop.seeds=[0]", "loop.generations=2"]


def _loop(*sets):
    return load_config("loop-digits-gaussian", [*GAUSSIAN, *sets]).loop


def test_a_grid_crosses_its_lists_into_named_variants_the_last_key_fastest():
    lc = _loop("loop.scenario=mix",
               "loop.grid={real_fraction: [0.2, 0.8], bias: [1, 0.5], samples_per_generation: [100]}")
    names = [name for name, _ in lc.cells()]
    assert names == ["real_fraction=0.2, bias=1, samples_per_generation=100",
                     "real_fraction=0.2, bias=0.5, samples_per_generation=100",
                     "real_fraction=0.8, bias=1, samples_per_generation=100",
                     "real_fraction=0.8, bias=0.5, samples_per_generation=100"]
    cells = dict(lc.cells())
    cell = cells["real_fraction=0.8, bias=0.5, samples_per_generation=100"]
    assert (cell.real_fraction, cell.samples_per_generation, cell.scenario) == (0.8, 100, "mix")
    assert [(e.family, e.bias) for e in cell.families()] == [("gaussian", 0.5)]  # every entry's bias
    assert cell.grid is None and cell.variants is None
    assert lc.guidance == [0.0]  # not crossed: the config's


def test_guidance_in_a_grid_is_the_chain_axis_and_every_crossed_key_a_column():
    config = load_config(None, ["loop.scenario=fresh", "loop.grid={real_fraction: [0.1, 0.3], guidance: [0, 2]}"],
                         base={"name": "g"})
    assert config.loop.guidance == [0.0, 2.0]
    assert [name for name, _ in config.loop.cells()] == ["real_fraction=0.1", "real_fraction=0.3"]
    assert param_columns(config, False)[-2:] == ["variant", "real_fraction"]
    single = load_config(None, ["loop.grid={real_fraction: [0.1], scenario: [mix]}"], base={"name": "g"})
    # a crossed key is a column even when it takes one value (scenario has its own)
    assert grid_columns(single.loop) == {"real_fraction": {"real_fraction=0.1, scenario=mix": 0.1}}
    assert "real_fraction" in param_columns(single, False)
    fixed = load_config(None, ["loop.grid={real_fraction: [0.1], window: [1, 2]}"], base={"name": "g"})
    assert {"real_fraction", "window"} <= set(param_columns(fixed, False))  # one value in every variant, still a column
    only = load_config(None, ["loop.grid={guidance: [0, 1]}"], base={"name": "g"})
    assert only.loop.variants is None and only.loop.guidance == [0.0, 1.0]  # guidance alone makes no variants


def test_a_curated_grids_controls_carry_their_variants_values():
    config = load_config(None, ["loop.scenario=mix", "loop.curation={kind: watermark, recall: 0.5}",
                                "loop.grid={real_fraction: [0.2, 0.8]}"], base={"name": "g"})
    assert grid_columns(config.loop) == {"real_fraction": {
        "real_fraction=0.2": 0.2, "real_fraction=0.8": 0.8,
        "real_fraction=0.2 control": 0.2, "real_fraction=0.8 control": 0.8}}
    columns = param_columns(config, False)
    assert columns[columns.index("variant") + 1] == "real_fraction" and columns[-1] == "control_of"
    plain = load_config(None, ["loop.variants=[{scenario: mix, curation: {kind: watermark}}]"], base={"name": "g"})
    assert grid_columns(plain.loop) == {}  # variants written out, no grid


def test_a_run_folders_config_keeps_the_grid_and_reads_back_to_the_same_variants(tmp_path):
    config = load_config("loop-digits-gaussian", ["loop.grid={window: [1, 2], bias: [1, 0.5]}"])
    written = config.to_dict()
    assert written["loop"]["variants"] is None and written["loop"]["grid"] == {"window": [1, 2], "bias": [1, 0.5]}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(written, sort_keys=False))
    again = load_config(path)
    assert again.loop.variants == config.loop.variants and again.to_dict() == written
    # built from a config that has the expansion already (what --set on it does): the same
    expanded = dataclasses.asdict(config)
    assert expanded["loop"]["variants"] is not None
    assert load_config(None, ["loop.seeds=[3]"], base=expanded).loop.variants == config.loop.variants


_TINY = [a for s in ["loop.generations=1", "loop.seeds=[0]", "loop.samples_per_generation=40",
                     "generator.train_steps=1", "classifier.epochs=1", "executor.workers=1"] for a in ("--set", s)]


@pytest.mark.parametrize("grid, fragment", [
    ("{rho: [0.2]}", "loop.grid: unknown key 'rho'; a grid crosses guidance, bias, init, warm_steps, labels, scenario"),
    ("{curation: [none]}", "curation is set per variant in loop.variants"),
    ("{real_fraction: []}", "loop.grid.real_fraction is an empty list"),
    ("{real_fraction: 0.2}", "loop.grid.real_fraction must be a list of values to cross"),
    ("{real_fraction: {a: 1}}", "loop.grid.real_fraction must be a list"),
    ("[0.2, 0.5]", "loop.grid must be a mapping"),
    ("{}", "loop.grid must map loop settings to lists of values"),
    ("{real_fraction: [0.2, x]}", "loop.grid.real_fraction[1] must be a number"),
    ("{real_fraction: [0.2, 1.5]}", "loop.grid.real_fraction must lie in [0, 1]; got 1.5"),
    ("{scenario: [keep]}", "loop.grid.scenario[0] must be one of replace"),
    ("{window: [null]}", "loop.grid.window holds null"),
    ("{guidance: [0, -1]}", "loop.grid.guidance[1]: guidance must be a finite number >= 0"),
    ("{real_fraction: [0.5, 0.50]}", "loop.grid.real_fraction has the value 0.5 twice"),
    ("{samples_per_generation: [100, 3]}", "loop.grid.samples_per_generation is 3, but each set of images"),
    ("{bias: [0.5, 1]}", "the diffusion family's bias is guidance: cross guidance instead"),
    ("{window: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], real_fraction: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1]}",
     "loop.grid crosses into 110 variants; at most 100"),
])
def test_bad_grids_are_one_error_line_before_anything_is_written(tmp_path, capsys, grid, fragment):
    out = tmp_path / "run"
    assert cli.main(["demo", "--out", str(out), *_TINY, "--set", f"loop.grid={grid}"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0], err
    assert not out.exists()


def test_a_grid_with_variants_is_one_error_line_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main(["demo", "--out", str(out), *_TINY, "--set", "loop.grid={real_fraction: [0.2]}",
                     "--set", "loop.variants=[{scenario: mix}]"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("error:") == 1 and "loop.grid and loop.variants are both set" in err, err
    assert not out.exists()
    with pytest.raises(UserError, match="both set"):  # even when they name the grid's own variant
        load_config(None, ["loop.grid={real_fraction: [0.2]}", "loop.variants=[{real_fraction: 0.2}]"],
                    base={"name": "g"})


# -- the heat-maps ---------------------------------------------------------------------------


def _row(cell, seed, generation, metric, value, family=""):
    return {"cell": cell, "seed": str(seed), "generation": str(generation), "metric": metric, "value": str(value),
            "family": family}


def test_heatmap_cells_are_the_mean_over_seeds_at_the_last_generation_one_panel_per_further_value():
    lc = _loop("loop.scenario=mix", "loop.grid={real_fraction: [0.2, 0.8], window: [1, 2], bias: [1, 0.5]}")
    assert [k for k, _ in loop_grid.crossed(lc)] == ["real_fraction", "window", "bias"]
    rows = [_row("reference", "", "", "fid", 99)]
    for (rho, k, t), value in zip([(r, k, t) for r in (0.2, 0.8) for k in (1, 2) for t in (1, 0.5)], range(8)):
        cell = f"real_fraction={rho:g}, window={k}, bias={t:g}, guidance=0"
        rows += [_row(cell, 0, 0, "fid", 1000), _row(cell, 0, 1, "fid", value), _row(cell, 1, 1, "fid", value + 2),
                 _row(cell, 0, 1, "fid", 500, family="gaussian")]  # a family's own rows: not the pooled output
    rows = [r for r in rows if not (r["cell"].startswith("real_fraction=0.8, window=2, bias=0.5") and r["seed"] == "1")]
    (t1, a), (t05, b) = loop_grid.panels(rows, lc, "fid")
    assert (t1, t05) == ("bias=1", "bias=0.5")
    np.testing.assert_array_equal(a, [[1, 3], [5, 7]])  # rows real_fraction, columns window; mean of v, v + 2
    np.testing.assert_array_equal(b, [[2, 4], [6, 7]])  # the last cell has one seed left: 7
    rows = [r for r in rows if not r["cell"].startswith("real_fraction=0.8, window=2, bias=0.5")]
    assert np.isnan(loop_grid.panels(rows, lc, "fid")[1][1][1, 1])  # no rows: n/a


def test_without_two_crossed_settings_there_is_no_heatmap_and_guidance_counts_as_one():
    class Run:
        rows, label = [], "r"

    for sets, count in ((["loop.grid={real_fraction: [0.2, 0.8]}", "loop.guidance=[0]"], 1),
                        (["loop.grid={real_fraction: [0.2, 0.8]}", "loop.guidance=[0, 1]"], 2),
                        (["loop.guidance=[0, 1]"], 0)):
        Run.config = load_config(None, ["loop.scenario=mix", *sets], base={"name": "g"})
        assert len(loop_grid.crossed(Run.config.loop)) == count
        assert (loop_grid.section(Run) is None) == (count < 2)


def test_a_grid_runs_records_each_crossed_setting_and_draws_annotated_heatmaps(tmp_path):
    out = tmp_path / "run"
    sets = [*GAUSSIAN, "loop.samples_per_generation=100", "classifier.epochs=1", "executor.workers=1",
            "evaluate.instruments=fixed", "evaluate.tails=true", "loop.scenario=mix",
            "loop.grid={real_fraction: [0.2, 0.8], bias: [1, 0.25]}"]
    assert cli.main(["run", "loop-digits-gaussian", "--out", str(out), "--quiet",
                     *[a for s in sets for a in ("--set", s)]]) == 0
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[-3:] == ["variant", "real_fraction", "bias"]
    loop_rows = [r for r in rows if r["cell"] != "reference"]
    assert {(r["variant"], r["real_fraction"], r["bias"]) for r in loop_rows} == {
        (f"real_fraction={rho}, bias={t}", rho, f"{float(t)}") for rho in ("0.2", "0.8") for t in ("1", "0.25")}
    mass = {(r["bias"], r["generation"]): float(r["value"]) for r in loop_rows
            if r["metric"] == "core_mass" and r["real_fraction"] == "0.2"}
    assert mass[("1.0", "0")] < 0.05 < 0.5 < mass[("0.25", "0")]  # a cold model piles onto the real core
    svg = (out / "plots" / "heatmap-core_mass.svg").read_text()
    last = {r["cell"]: float(r["value"]) for r in loop_rows if r["metric"] == "core_mass" and r["generation"] == "1"}
    assert f"{last['real_fraction=0.8, bias=0.25, guidance=0']:.3g}" in svg  # cells annotated with their values
    assert "Grid: " in (out / "report.html").read_text()
