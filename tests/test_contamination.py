"""The contamination study end to end, small: on the embedded digits and on ImageFolders."""

import csv

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, assert_user_error, run_cli, run_main
from ouroboros.config import load_config
from ouroboros.data.imageset import ImageSet
from ouroboros.errors import UserError

TINY = [
    "contamination.ratios=[0.0,0.4,1.0]",
    "contamination.archs=[cnn]",
    "contamination.seeds=[0]",
    "contamination.append_ratios=[0.4]",
    "contamination.shifts=[noise,rotation]",
    "contamination.diverse_sample_steps=[4,8]",
    "generator.train_steps=40",
    "generator.sample_steps=6",
    "classifier.epochs=1",
    "executor.workers=1",
]


def _sets(extra=()):
    return sum((["--set", s] for s in TINY + list(extra)), [])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One small run with two seeds, shared by the tests that read its run folder."""
    out = tmp_path_factory.mktemp("contamination")
    proc = run_cli("run", str(REPO / "configs" / "contamination-digits.yaml"), "--out", out, "--quiet",
                   *_sets(["contamination.seeds=[0,1]"]))
    assert proc.returncode == 0, proc.stderr
    config = load_config(str(out / "config.yaml"))
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    return out, config, rows


def test_contamination_digits_end_to_end(tiny_run):
    tmp_path, _, rows = tiny_run
    tables = (tmp_path / "tables.md").read_text()
    for title in ("Table 1", "Table 3", "Table 4", "Table 5", "Table 6", "Table 7", "Table 8", "Table 10", "Table 11",
                  "Detection", "Which of the paper's directions hold", "Generated or different?"):
        assert title in tables
    assert "| - |" not in tables.split("## Table 7")[0]  # every cell of the ratio tables is filled
    assert "| - |" not in tables.split("## Table 10")[1].split("## Table 4")[0]  # nor Table 10's
    assert list(rows[0])[-6:] == ["table", "source", "ratio", "arch", "test", "control"]
    assert {r["test"] for r in rows if r["table"] in ("1", "5", "7", "8") and r["arch"]} == {"clean", "noise",
                                                                                              "rotation"}
    assert {r["table"] for r in rows} == {"1", "3", "4", "5", "7", "8", "10", "11", "detection"}
    # which real control each row's training set holds: both controls, in Tables 1, 3, 4 and 7
    controls = {(r["table"], r["source"], r["control"]) for r in rows if r["control"] and r["table"] != "detection"}
    assert controls == {(t, s, c) for t in ("1", "3", "4") for s, c in (("real control", "same-source"),
                                                                         ("other-source control", "other-source"))} | {
        ("7", "+ real", "same-source"), ("7", "+ other-source real", "other-source")}
    assert {r["control"] for r in rows if r["table"] == "detection"} == {"same-source"}  # its held-out real images
    assert {r["metric"] for r in rows if r["table"] == "10"} == {"fid", "precision", "recall", "images",
                                                                 "unique_images"}
    assert {r["seed"] for r in rows} == {"0", "1"}  # every table is repeated over the seeds
    detect = [float(r["value"]) for r in rows if r["table"] == "detection"]
    assert len(detect) == 2 * 4 and all(0.0 <= v <= 1.0 for v in detect)
    # The fully generated mixture holds only generated images, the 40% one its share.
    mixes = [ImageSet.load(p) for p in (tmp_path / "cache" / "mix").glob("*.npz")]
    shares = sorted(round(float((m.generation > 0).mean()), 2) for m in mixes if set(m.source) & {"gen:diffusion"})
    assert 1.0 in shares and 0.4 in shares
    assert (tmp_path / "samples" / "generated.png").is_file()
    assert (tmp_path / "plots" / "spectra.png").is_file() and (tmp_path / "plots" / "confusion.png").is_file()
    # `ouroboros report` redraws the tables from results.csv alone.
    (tmp_path / "tables.md").unlink()
    redo = run_cli("report", tmp_path)
    assert redo.returncode == 0, redo.stderr
    assert (tmp_path / "tables.md").read_text() == tables


def _plan(run_dir, config):
    from ouroboros.studies import contamination

    return contamination.plan(config, run_dir / "cache", contamination.load_splits(config))


def _real_keys(images):
    return {bytes(im) for im, g in zip(images.images, images.generation) if g == 0}


def test_seeds_redraw_every_random_choice(tiny_run):
    out, config, _ = tiny_run
    p = _plan(out, config)
    fits = {s: pool["simple"].deps["model"].key for s, pool in p.pools.items()}
    assert len(set(fits.values())) == 2  # a generator fitted per seed
    assert len({pool["simple"].key for pool in p.pools.values()}) == 2
    assert len({pool["diverse"].key for pool in p.pools.values()}) == 2
    by_seed = {s: [c for c in p.cells if c.seed == s and c.table == "1" and c.ratio == 0.4 and
                   c.source == "generated"][0].mixture for s in (0, 1)}
    a, b = (ImageSet.load(out / "cache" / "mix" / f"{by_seed[s].key}.npz") for s in (0, 1))
    assert _real_keys(a) != _real_keys(b)  # another seed keeps other real images
    assert {st.params["seed"] for st in p.runs.values()} == {0, 1}  # classifier initialisation and order


def test_compared_cells_share_their_draws(tiny_run):
    """Paired cells: same kept real images for generated vs control at a ratio; larger
    ratios drop a superset; Table 7's three cells start from the same 5% subset."""
    out, config, _ = tiny_run
    p = _plan(out, config)
    load = lambda st: ImageSet.load(out / "cache" / st.kind / f"{st.key}.npz")  # noqa: E731
    for seed in (0, 1):
        cells = {(c.table, c.source, c.ratio): c.mixture for c in p.cells if c.seed == seed}
        train = ImageSet.load(out / "cache" / "data" / f"{cells[('1', 'generated', 0.0)].key}.npz")
        kept = lambda images: _real_keys(images) & _real_keys(train)  # noqa: E731  (the control is real too)
        gen, control, diverse = (load(cells[("1", "generated", 0.4)]), load(cells[("1", "real control", 0.4)]),
                                 load(cells[("5", "diverse", 0.4)]))
        assert kept(gen) == kept(control) == kept(diverse)
        assert len(kept(control)) < len(_real_keys(control))  # the control did bring other real images
        assert kept(load(cells[("1", "generated", 1.0)])) == set()
        assert kept(gen) < _real_keys(train)
        small = config.contamination.small_fraction
        alone = _real_keys(load(cells[("7", f"{small:.0%} real", small)]))
        filled_gen, filled_real = load(cells[("7", "+ generated", small)]), load(cells[("7", "+ real", small)])
        assert alone and {bytes(im) for im in filled_gen.images[:len(alone)]} == alone
        assert _real_keys(filled_gen) == alone  # the generated fill adds no real image
        assert alone <= {bytes(im) for im in filled_real.images}
        for filled in (filled_gen, filled_real):
            assert filled.class_counts().tolist() == train.class_counts().tolist()


def test_no_model_trains_on_the_test_split(tiny_run):
    """Tables 3 and 4 score against the test split: nothing may be fitted on it, and the
    feature network must not be trained on any set it scores."""
    out, config, _ = tiny_run
    p = _plan(out, config)
    test_key = next(c for c in p.runs.values()).deps["test"].key
    seen, stack = set(), list(p.targets())
    training_inputs = {"fit": "train", "classifier": "train", "classify": "train", "ssl": "train",
                       "detect": "real", "mix": "real"}
    while stack:
        st = stack.pop()
        if st.key in seen:
            continue
        seen.add(st.key)
        if st.kind in training_inputs:
            assert st.deps[training_inputs[st.kind]].key != test_key, st.label
        if st.kind == "score_set":
            assert st.deps["reference"].key == test_key
            feature_train = st.deps["classifier"].deps["train"].key
            assert feature_train != st.deps["images"].key and feature_train != test_key
            assert st.deps["classifier"].deps["train"].params["role"] == "generator"
        stack.extend(st.deps.values())


def test_unique_images_are_counted_and_a_short_control_is_named(tmp_path):
    proc = run_cli("run", str(REPO / "configs" / "contamination-digits.yaml"), "--out", tmp_path, "--quiet",
                   *_sets(["contamination.split_control=0.1", "contamination.ratios=[0.0,1.0]",
                           "contamination.append_ratios=[]", "contamination.shifts=[]", "classifier.epochs=1",
                           "contamination.controls=[same-source]"]))
    assert proc.returncode == 0, proc.stderr
    table1 = (tmp_path / "tables.md").read_text().split("## Table 5")[0]
    control_row = next(line for line in table1.splitlines() if line.startswith("| unique | real control"))
    # 10% of the digits cannot replace 100% of a 30% training split without repeats.
    n_train = int(next(line for line in table1.splitlines() if line.startswith("| unique | generated")).split("|")[3])
    unique, _, size = control_row.split("|")[4].strip().partition(" of ")
    assert int(size) == n_train and int(unique) < n_train


def _folder(root, classes, n, seed, size=8):
    rng = np.random.default_rng(seed)
    for ci, c in enumerate(classes):
        (root / c).mkdir(parents=True)
        for i in range(n):
            img = rng.integers(0, 60, (size, size), dtype=np.uint8)
            img[ci::3, :] += 150  # a class-dependent stripe pattern
            Image.fromarray(img).save(root / c / f"{i}.png")
    return root


def test_imagefolder_with_an_external_generated_folder(tmp_path):
    """A layout users bring: real ImageFolder + a folder of generated images, root/<class>/*.png."""
    real = _folder(tmp_path / "real", ["n01", "n02", "n03"], 40, 0)
    gen = _folder(tmp_path / "sd", ["n01", "n02", "n03"], 20, 1)
    out = tmp_path / "run"
    proc = run_cli("run", str(REPO / "configs" / "contamination-digits.yaml"), "--out", out, "--quiet",
                   *_sets([f"data.train=imagefolder:{real}", f"contamination.generated=imagefolder:{gen}",
                           "contamination.class_groups=null", "contamination.controls=[same-source]"]))
    assert proc.returncode == 0, proc.stderr
    full = [ImageSet.load(p) for p in (out / "cache" / "mix").glob("*.npz")]
    sources = set().union(*(set(m.source) for m in full))
    assert "gen:sd" in sources and "real:real" in sources
    assert "n01" in (out / "tables.md").read_text() or "Table 1" in (out / "tables.md").read_text()


def test_external_folder_with_other_classes_is_refused(tmp_path, capsys, tripwire):
    real = _folder(tmp_path / "real", ["a", "b"], 20, 0)
    gen = _folder(tmp_path / "gen", ["a", "c"], 10, 1)
    proc = run_main(capsys, "run", str(REPO / "configs" / "contamination-digits.yaml"), "--out", tmp_path / "run",
                    *_sets([f"data.train=imagefolder:{real}", f"contamination.generated=imagefolder:{gen}"]))
    assert_user_error(proc, "classes")
    assert not (tmp_path / "run").exists()


def test_class_groups_naming_unknown_classes_fail_before_anything_is_written(tmp_path, capsys, tripwire):
    proc = run_main(capsys, "run", str(REPO / "configs" / "contamination-digits.yaml"), "--out", tmp_path / "run",
                    *_sets(['contamination.class_groups=[["0", "x"]]']))
    assert_user_error(proc, "unknown classes")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("override, fragment", [
    ("contamination.ratios=[0.2,1.5]", "ratio must lie in [0, 1]"),
    ("contamination.archs=[vgg]", "unknown arch"),
    ("contamination.shifts=[jpeg]", "unknown shift"),
    ("contamination.split_train=0.9", "sum to at most 1"),
])
def test_bad_contamination_configs(override, fragment):
    with pytest.raises(UserError) as info:
        load_config(str(REPO / "configs" / "contamination-digits.yaml"), [override])
    assert fragment in str(info.value)


def test_loop_config_file_matches_the_demo_defaults():
    from ouroboros.config import StudyConfig

    from_file = load_config(REPO / "configs" / "loop-digits.yaml")
    defaults = StudyConfig()
    for section in ("data", "loop", "generator", "classifier", "output", "executor", "compare"):
        assert getattr(from_file, section) == getattr(defaults, section), section


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_the_diverse_pool_samples_with_the_configured_sampler(tmp_path, sampler):
    """With one guidance and one step count to draw from, the diverse pool is exactly what
    the configured sampler makes (it once fell back to DDPM whatever the config said)."""
    from ouroboros.data.loaders import load_digits
    from ouroboros.generators import DiffusionConfig, DiffusionGenerator
    from ouroboros.stages import sample_diverse_stage

    train = load_digits().subset(np.arange(60))
    DiffusionGenerator(DiffusionConfig(train_steps=5, device="cpu")).fit(train, seed=0).save(tmp_path / "m")
    params = {"n": 20, "guidance": [0.5], "sample_steps": [4], "seed": 7, "sampler": sampler, "sample_batch_size": 8}
    sample_diverse_stage(params, {"model": tmp_path / "m"}, tmp_path / "pool.npz")
    from ouroboros.generators import FittedDiffusion

    model = FittedDiffusion.load(tmp_path / "m")
    expected = model.sample(20, guidance=0.5, seed=7, sampler=sampler, sample_steps=4, batch_size=8)
    other = model.sample(20, guidance=0.5, seed=7, sampler="ddpm" if sampler == "ddim" else "ddim", sample_steps=4,
                         batch_size=8)
    pool = ImageSet.load(tmp_path / "pool.npz")
    np.testing.assert_array_equal(pool.images, expected.images)
    assert not np.array_equal(pool.images, other.images)


def test_contamination_report_page(tiny_run):
    """report.html: Table 1 findings with their paired intervals and verdicts, the plots
    by share with the clean baseline, the sample grids and tables.md, all embedded."""
    import re

    from ouroboros.api import load_run
    from ouroboros.studies.contamination_report import claims as contamination_claims

    tmp_path, config, rows = tiny_run
    page = (tmp_path / "report.html").read_text()
    sources = re.findall(r"""(?:src|href)=['"]([^'"]*)""", page)
    assert all(s.startswith("data:") for s in sources)
    run = load_run(tmp_path)
    claims = [c for c in contamination_claims(run.rows, run.config) if c.table == "1"]
    assert claims
    for c in claims:  # each Table 1 direction, with its difference and verdict
        assert f"Table 1, {c.text}: difference {c.diff.format_range(100, 1)} points ({c.verdict})" in page
    assert "100% generated is less accurate than 100% real control" in page
    for name in ("accuracy_by_share_cnn", "generator_recall_by_share"):
        assert (tmp_path / "plots" / f"{name}.png").is_file() and (tmp_path / "plots" / f"{name}.svg").is_file()
    assert "clean baseline (0%)" in (tmp_path / "plots" / "accuracy_by_share_cnn.svg").read_text()
    assert "<h4>Table 1: replacing real training data</h4>" in page  # tables.md, as HTML tables
    assert "<h4>Which of the paper&#x27;s directions hold here</h4>" in page
    assert page.count("data:image/png") == 2 + 2 + 4  # 2 share plots, spectra and confusion, 4 grids
    assert (tmp_path / "samples" / "control-other-source.png").is_file()


def test_table3_can_fit_an_unconditional_generator_as_the_papers_iddpm(tiny_run, tmp_path):
    """contamination.table3_conditional: false fits Table 3's models without labels (the
    paper's IDDPM is class-unconditional) and samples them without guidance; every other
    stage is the conditional run's, reused from its cache (a copy of the tiny run, its
    first seed)."""
    import json
    import shutil

    src, src_config, _ = tiny_run
    out = tmp_path / "run"
    shutil.copytree(src, out)
    trained = sorted(p.name for p in (out / "cache" / "classify").iterdir())
    proc = run_cli("run", out / "config.yaml", "--out", out, "--quiet", "--set",
                   "contamination.table3_conditional=false", "--set", "contamination.seeds=[0]")  # one seed: faster
    assert proc.returncode == 0, proc.stderr
    config = load_config(str(out / "config.yaml"))
    assert config.contamination.table3_conditional is False
    before = {k: st.key for k, st in _plan(src, src_config).analysis.items() if k[0] == "3"}
    after = {k: st for k, st in _plan(out, config).analysis.items() if k[0] == "3"}
    assert set(after) == {k for k in before if k[3] == 0} and len(after) == 3 * 3  # sources x ratios
    for key, score in after.items():
        sample = score.deps["images"]
        fit = sample.deps["model"]
        assert fit.params["config"]["conditional"] is False and sample.params["guidance"] == 0.0
        assert json.loads(fit.artifact(out / "cache").joinpath("generator.json").read_text())["config"][
            "conditional"] is False
        assert score.key != before[key]
    assert sorted(p.name for p in (out / "cache" / "classify").iterdir()) == trained  # nothing else retrained
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["metric"] for r in rows if r["table"] == "3"} == {"fid", "precision", "recall"}
    assert "Table 3: an unconditional diffusion model" in (out / "tables.md").read_text()
