"""Interaction scenarios of the feedback loop (ouroboros.studies.scenarios): each
generation's training set, assembled by the real planner and runner on a tiny chain,
checked exactly against the scenario's definition, from provenance."""

import csv

import numpy as np
import pytest

from conftest import TINY
from ouroboros import cli
from ouroboros.config import load_config
from ouroboros.data.imageset import ImageSet
from ouroboros.runner import Runner
from ouroboros.studies import loop
from ouroboros.studies.scenarios import makeup

N = 30  # samples per generation; the real split has R = 100 images


def _config(*extra):
    return load_config(None, ["loop.generations=3", "loop.guidance=[0.5]", "loop.seeds=[0]",
                              f"loop.samples_per_generation={N}", "generator.hidden=16", "generator.depth=1",
                              "generator.train_steps=2", "generator.batch_size=16", "generator.sample_steps=2",
                              "generator.sampler=ddim", "executor.workers=1", *extra], base={"name": "scen"})


_CHAINS: dict = {}


@pytest.fixture(scope="module")
def chain(tmp_path_factory, digits):
    """chain(*settings) -> (per generation: (assembled training set, its stage), outputs O_k),
    run once per settings through loop.plan and the Runner (fit and sample only)."""

    def get(*settings):
        if settings not in _CHAINS:
            runner = Runner(tmp_path_factory.mktemp("scen"), workers=1, progress=False)
            plan = loop.plan(_config(*settings), runner.cache, digits)
            ((_, stages),) = plan.chains.items()
            paths = runner.run([sample for _, sample, _ in stages])
            trains = [(ImageSet.load(paths[fit.deps["train"].key]), fit.deps["train"]) for fit, _, _ in stages]
            outputs = [ImageSet.load(paths[sample.key]) for _, sample, _ in stages]
            _CHAINS[settings] = trains, outputs
        return _CHAINS[settings]

    return get


def _rows(s: ImageSet) -> list[bytes]:
    """Each image with its label and provenance, as one comparable value."""
    return [s.images[i].tobytes() + f"|{s.labels[i]}|{s.source[i]}|{s.generation[i]}|{s.seed[i]}".encode()
            for i in range(len(s))]


def _is_subset(part: ImageSet, pool: ImageSet) -> bool:
    """Every image of `part` is a distinct image of `pool` (drawn without replacement)."""
    rows, available = _rows(part), _rows(pool)
    for r in rows:
        if r not in available:
            return False
        available.remove(r)
    return True


def _gens(s: ImageSet) -> dict[int, int]:
    """Provenance generation -> count."""
    values, counts = np.unique(s.generation, return_counts=True)
    return dict(zip(values.tolist(), counts.tolist()))


def test_real_split_has_no_duplicate_images(digits):
    # The subset checks below identify images by content; that needs distinct real images.
    assert len(set(_rows(digits[0]))) == len(digits[0])


def test_replace_trains_each_generation_on_exactly_its_predecessors_output(chain, digits):
    trains, outputs = chain("loop.scenario=replace")
    assert trains[0][0].content_hash() == digits[0].content_hash()
    for g in (1, 2):
        train, stage = trains[g]
        assert stage.kind == "sample"  # no assemble stage: the keys from before scenarios stay
        assert train.content_hash() == outputs[g - 1].content_hash()
        assert _gens(train) == {g: N}


def test_accumulate_keeps_everything_and_grows_by_one_generation_each_time(chain, digits):
    trains, outputs = chain("loop.scenario=accumulate")
    real = digits[0]
    assert [len(t) for t, _ in trains] == [100, 100 + N, 100 + 2 * N]
    for g in (1, 2):
        expected = ImageSet.concat([real] + outputs[:g])
        assert trains[g][0].content_hash() == expected.content_hash()
        assert _gens(trains[g][0]) == {0: 100, **{k + 1: N for k in range(g)}}
        # exactly one generation's output added to the previous set
        assert ImageSet.concat([trains[g - 1][0], outputs[g - 1]]).content_hash() == trains[g][0].content_hash()


def test_accumulate_subsample_draws_n_from_the_whole_accumulated_pool(chain, digits):
    trains, outputs = chain("loop.scenario=accumulate-subsample")
    real = digits[0]
    for g in (1, 2):
        train, stage = trains[g]
        assert len(train) == N
        assert sorted(stage.deps) == sorted(["real"] + [f"out{k}" for k in range(g)])
        assert _is_subset(train, ImageSet.concat([real] + outputs[:g]))
        assert set(_gens(train)) == set(range(g + 1))  # real and every earlier generation drawn
        assert train.class_counts().tolist() == [3] * 10  # balanced: N / 10 classes
    # the two draws are independent (not the same positions of a growing pool)
    assert _rows(trains[1][0])[:5] != _rows(trains[2][0])[:5]


def test_mix_keeps_the_same_real_images_and_takes_the_rest_from_the_previous_generation(chain, digits):
    trains, outputs = chain("loop.scenario=mix", "loop.real_fraction=0.4")
    real_parts = []
    for g in (1, 2):
        train = trains[g][0]
        assert len(train) == N
        assert _gens(train) == {0: 12, g: 18}  # round(0.4 * 30) real, the rest from generation g-1
        real_part = train.subset(np.flatnonzero(train.generation == 0))
        assert _is_subset(real_part, digits[0])
        assert _is_subset(train.subset(np.flatnonzero(train.generation == g)), outputs[g - 1])
        real_parts.append(real_part)
    assert real_parts[0].content_hash() == real_parts[1].content_hash()


def test_augment_adds_lambda_times_the_real_set_from_the_previous_generation(chain, digits):
    trains, outputs = chain("loop.scenario=augment", "loop.synthetic_ratio=0.5")
    for g in (1, 2):
        train = trains[g][0]
        assert len(train) == 150  # (1 + lambda) |R|, with lambda = 0.5 > N / |R|
        assert _gens(train) == {0: 100, g: 50}
        real_part = train.subset(np.flatnonzero(train.generation == 0))
        assert real_part.content_hash() == digits[0].content_hash()
        assert _is_subset(train.subset(np.flatnonzero(train.generation == g)), outputs[g - 1])
    assert len(outputs[0]) == 50  # each generation samples enough for the next one's 50


def test_fresh_uses_new_real_images_every_generation(chain, digits):
    trains, outputs = chain("loop.scenario=fresh", "loop.real_fraction=0.5")
    assert _gens(trains[0][0]) == {0: N}  # generation 0: the first N of the reservoir
    seen = []
    for g, (train, _) in enumerate(trains):
        reals = train.subset(np.flatnonzero(train.generation == 0))
        assert _is_subset(reals, digits[0])
        if g:
            assert len(train) == N and _gens(train) == {0: 15, g: 15}
            assert _is_subset(train.subset(np.flatnonzero(train.generation == g)), outputs[g - 1])
        seen += _rows(reals)
    assert len(seen) == N + 2 * 15 and len(set(seen)) == len(seen)  # no real image used twice


def test_window_two_draws_from_exactly_the_last_two_generations(chain):
    trains, outputs = chain("loop.scenario=replace", "loop.window=2")
    assert sorted(trains[1][1].deps) == ["out0", "real"] and set(_gens(trains[1][0])) == {1}
    train, stage = trains[2]
    assert sorted(stage.deps) == ["out0", "out1", "real"]
    assert len(train) == N and set(_gens(train)) == {1, 2}
    assert train.class_counts().tolist() == [3] * 10
    assert _is_subset(train, ImageSet.concat(outputs[:2]))


def test_mix_with_a_window_draws_its_generated_part_from_both(chain):
    trains, outputs = chain("loop.scenario=mix", "loop.real_fraction=0.2", "loop.window=2")
    train = trains[2][0]
    gens = _gens(train)
    assert gens[0] == 6 and gens[1] + gens[2] == 24 and gens[1] > 0 and gens[2] > 0


def test_makeup_counts_provenance():
    images = np.zeros((10, 1, 2, 2), dtype=np.uint8)
    s = ImageSet.create(images, [0] * 10, ["a"], source="real:x", generation=[0, 0, 0, 0, 1, 1, 3, 3, 3, 3])
    assert makeup(s) == {"train_size": 10.0, "train_real_share": 0.4, "train_share_gen0": 0.2,
                         "train_share_gen2": 0.4}


def test_results_record_the_scenario_and_each_training_sets_makeup(tmp_path, capsys):
    args = ["demo", "--out", str(tmp_path), *sum((["--set", s] for s in TINY), [])]
    args += ["--set", "loop.guidance=[1.0]", "--set", "loop.seeds=[0]", "--set", "loop.samples_per_generation=100",
             "--set", "generator.train_steps=2", "--set", "loop.scenario=mix", "--set", "loop.real_fraction=0.25"]
    assert cli.main(args) == 0
    with open(tmp_path / "results.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["cell"] != "reference"]
    assert {r["scenario"] for r in rows} == {"mix"}
    got = {(r["generation"], r["metric"]): float(r["value"]) for r in rows if r["metric"].startswith("train_")}
    n_real = got[("0", "train_size")]
    assert got[("0", "train_real_share")] == 1.0 and n_real > 100  # generation 0: all real data
    assert got[("1", "train_size")] == 100 and got[("1", "train_real_share")] == 0.25
    assert got[("1", "train_share_gen0")] == 0.75
    assert ("0", "train_share_gen0") not in got
    assert (tmp_path / "plots" / "accuracy.png").is_file()


_TINY_ARGS = [a for s in TINY + ["loop.seeds=[0]", "loop.guidance=[1.0]", "generator.train_steps=2"]
              for a in ("--set", s)]


@pytest.mark.parametrize("setting, fragment", [
    ("loop.real_fraction=1.5", "loop.real_fraction"),
    ("loop.real_fraction=-0.1", "loop.real_fraction"),
    ("loop.synthetic_ratio=-1", "loop.synthetic_ratio"),
    ("loop.window=0", "loop.window"),
    ("loop.scenario=keep", "loop.scenario"),
    ("loop.window=2", "does not apply"),  # with scenario accumulate, below
])
def test_bad_scenario_settings_are_one_error_line(tmp_path, capsys, setting, fragment):
    out = tmp_path / "run"
    extra = ["--set", "loop.scenario=accumulate"] if "window=2" in setting else []
    # tiny settings: should the check ever be lost, the run is short and the test fails
    assert cli.main(["demo", "--out", str(out), *_TINY_ARGS, "--set", setting, *extra]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0], err
    assert not out.exists()


def test_a_fresh_reservoir_too_small_is_an_error_naming_the_images_needed(tmp_path, capsys):
    out = tmp_path / "run"
    # digits: 1258 real training images (70% of 1797); N = 500 and 9 generations of
    # round(0.5 * 500) = 250 new ones need 500 + 8 * 250 = 2500.
    code = cli.main(["demo", "--out", str(out), *_TINY_ARGS, "--set", "loop.scenario=fresh",
                     "--set", "loop.real_fraction=0.5",
                     "--set", "loop.samples_per_generation=500", "--set", "loop.generations=9"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert "2500" in err[0] and "fresh" in err[0]
    assert not out.exists()


def test_a_balanced_draw_fills_a_short_class_from_the_rest():
    from ouroboros.studies.scenarios import _draw

    images = np.arange(12, dtype=np.uint8).reshape(12, 1, 1, 1)  # each image distinct
    pool = ImageSet.create(images, [0, 0] + [1] * 10, ["a", "b"], source="real:x")
    for seed in range(5):
        drawn = _draw(pool, 8, np.random.default_rng(seed))
        # quota 4 + 4; class a has only 2, so b fills the 2 places left
        assert drawn.class_counts().tolist() == [2, 6]
        assert len(set(drawn.images.ravel().tolist())) == 8  # no image twice


def test_mix_needing_more_real_images_than_the_split_has_is_an_error(tmp_path, capsys):
    out = tmp_path / "run"
    # round(0.9 * 2000) = 1800 real images of the 1258 the digits' training split has
    code = cli.main(["demo", "--out", str(out), *_TINY_ARGS, "--set", "loop.scenario=mix",
                     "--set", "loop.real_fraction=0.9", "--set", "loop.samples_per_generation=2000"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and "1800" in err[0], err
    assert not out.exists()


def test_a_grid_of_variants_runs_each_as_its_own_chains_and_names_it_in_the_results(tmp_path, capsys):
    """loop.variants: each variant is the loop section with its keys changed; its rows
    carry its name, its scenario, and the settings the variants vary as columns; a
    variant equal to the plain loop shares its stages (same keys)."""
    variants = ("[{scenario: replace}, {scenario: mix, real_fraction: 0.25}, "
                "{name: mixed half, scenario: mix, real_fraction: 0.5}, {scenario: accumulate}]")
    args = ["demo", "--out", str(tmp_path), *_TINY_ARGS, "--set", "loop.samples_per_generation=100",
            "--set", f"loop.variants={variants}"]
    assert cli.main(args) == 0
    with open(tmp_path / "results.csv") as f:
        reader = csv.DictReader(f)
        columns, rows = reader.fieldnames, [r for r in reader if r["cell"] != "reference"]
    assert columns[-7:] == ["guidance", "scenario", "curation", "scored_on", "instruments", "variant",
                            "real_fraction"]  # only rho differs
    by = {(r["variant"], r["generation"], r["metric"]): r for r in rows}
    assert {v for v, _, _ in by} == {"replace", "mix rho=0.25", "mixed half", "accumulate"}
    assert by[("mix rho=0.25", "1", "train_real_share")]["value"] == "0.25"
    assert by[("mix rho=0.25", "1", "train_real_share")]["real_fraction"] == "0.25"
    assert by[("mixed half", "1", "train_real_share")]["value"] == "0.5"
    assert by[("mixed half", "1", "train_real_share")]["cell"] == "mixed half, guidance=1"
    assert by[("accumulate", "1", "train_size")]["scenario"] == "accumulate"
    assert float(by[("accumulate", "1", "train_size")]["value"]) == float(by[("accumulate", "0", "train_size")]
                                                                          ["value"]) + 100
    assert by[("replace", "1", "train_real_share")]["value"] == "0.0"
    # Generation 0 trains on the real split in every variant: one fit, shared.
    assert len({by[(v, "0", "accuracy")]["value"] for v in ("replace", "mix rho=0.25", "accumulate")}) == 1
    for name in ("accuracy.png", "makeup.png", "class_accuracy.png"):
        assert (tmp_path / "plots" / name).stat().st_size > 1000
    assert (tmp_path / "samples" / "mixed half, guidance=1" / "gen1.png").is_file()
    # comparisons.csv: each variant against the first (replace), and replace against its generation 0;
    # one seed resolves nothing
    with open(tmp_path / "comparisons.csv") as f:
        comparisons = list(csv.DictReader(f))
    assert {(c["kind"], c["a"], c["b"]) for c in comparisons if c["metric"] == "recall"} == {
        ("vs generation 0", "replace, guidance=1", "replace, guidance=1"),
        *(("vs baseline", f"{v}, guidance=1", "replace, guidance=1") for v in ("mix rho=0.25", "mixed half",
                                                                               "accumulate"))}
    assert {(c["n"], c["verdict"]) for c in comparisons} == {("1", "not resolved")}
    # The same run without variants, as scenario mix rho=0.25, reuses that variant's stages.
    cache = set((tmp_path / "cache").rglob("*.json"))
    plain = ["demo", "--out", str(tmp_path), *_TINY_ARGS, "--set", "loop.samples_per_generation=100",
             "--set", "loop.scenario=mix", "--set", "loop.real_fraction=0.25"]
    assert cli.main(plain) == 0
    assert set((tmp_path / "cache").rglob("*.json")) == cache


@pytest.mark.parametrize("variants, fragment", [
    ("[{scenario: mix}, {scenario: mix}]", "two variants are named 'mix'"),
    ("[{scenario: mix, real_fraction: 2}]", "loop.variants[0].real_fraction"),
    ("[{scenario: keep}]", "loop.variants[0].scenario"),
    ("[{scenario: mix, rho: 0.2}]", "loop.variants[0].rho"),
    ("[]", "loop.variants needs at least one value"),
    ("[{scenario: fresh, real_fraction: 0.9, samples_per_generation: 1000}]", "scenario fresh needs 1900"),
])
def test_bad_variants_are_one_error_line_before_anything_is_written(tmp_path, capsys, variants, fragment):
    out = tmp_path / "run"
    code = cli.main(["demo", "--out", str(out), *_TINY_ARGS, "--set", f"loop.variants={variants}"])
    err = capsys.readouterr().err
    assert code == 2 and fragment in err, err
    assert err.count("error:") == 1 and not out.exists()


def test_variants_may_change_the_curation_and_the_generator_families_and_sweeps_are_plotted(tmp_path):
    """A variant may set its own curation and generator pool: each variant's rows carry
    its curation kind and (flattened) settings, the Gaussian variant trains the Gaussian
    family, and watermark variants at two recalls plus the plain variant of the same
    scenario give a recall-sweep plot whose points are those variants' rows."""
    from ouroboros.studies.loop_report import recall_sweeps

    variants = ("[{scenario: accumulate-subsample}, "
                "{name: wm, scenario: accumulate-subsample, curation: {kind: watermark, recall: 0.5}}, "
                "{name: wm1, scenario: accumulate-subsample, curation: {kind: watermark, recall: 1.0}}, "
                "{name: gauss, scenario: mix, generators: [{family: gaussian}]}]")
    args = ["demo", "--out", str(tmp_path), *_TINY_ARGS, "--set", "loop.samples_per_generation=100",
            "--set", f"loop.variants={variants}"]
    assert cli.main(args) == 0
    with open(tmp_path / "results.csv") as f:
        rows = list(csv.DictReader(f))
    by = {(r["variant"], r["generation"], r["metric"]): r for r in rows if r["cell"] != "reference"}
    assert by[("wm", "1", "train_size")]["curation"] == "watermark"
    assert by[("wm", "1", "train_size")]["curation.recall"] == "0.5"
    assert by[("accumulate-subsample", "1", "train_size")]["curation"] == "none"
    assert ("accumulate-subsample", "1", "curation_recall") not in by
    assert 0.3 < float(by[("wm", "1", "curation_recall")]["value"]) < 0.7
    assert by[("wm1", "1", "curation_recall")]["value"] == "1.0"
    assert by[("wm1", "1", "train_real_share")]["value"] == "1.0"  # every generated image removed
    assert by[("gauss", "1", "train_size")]["generators"] == "gaussian 1"
    assert by[("wm", "1", "train_size")]["generators"] == ""
    model = tmp_path / "cache"
    assert any('"format": "ouroboros.FittedGaussianMixture"' in p.read_text() for p in model.rglob("generator.json"))
    sweeps = recall_sweeps(rows)
    assert list(sweeps) == ["accumulate-subsample"]
    sweep = sweeps["accumulate-subsample"]
    points = {(r.get("variant"), r["curation.recall"]) for r in sweep if r["cell"] != "reference"}
    assert points == {("accumulate-subsample", "0"), ("wm", "0.5"), ("wm1", "1.0")}
    assert (tmp_path / "plots" / "sweep-accumulate-subsample-accuracy.png").stat().st_size > 1000
