"""Names never become paths unchecked, the
report reads and writes only inside its folders and never through a link, data labels
never reach mathtext, and a malformed results.csv is one error line with nothing
written. Property tests (hypothesis) throw hostile names at every place a name becomes
a path and check that nothing lands outside a temporary root."""

import os
import tempfile
import types
import unicodedata
from pathlib import Path

import numpy as np
import yaml
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import assert_user_error
from ouroboros import cli
from ouroboros.api import execute
from ouroboros.config import LoopConfig, LoopVariant, StudyConfig, load_config
from ouroboros.data.imageset import ImageSet
from ouroboros.errors import UserError
from ouroboros.generators import prompts
from ouroboros.report import plots as P
from ouroboros.report.grids import save_grid
from ouroboros.report.results import write_results
from ouroboros.safepath import MAX_BYTES, component, components, fold
from ouroboros.studies.loop import check_cells
from ouroboros.studies.loop_report import recall_sweeps

HOSTILE = ["/x", "../../x", "..", ".", ".hidden", "a/../../b", "a\\..\\b", "a\x00b", "tab\there", "new\nline",
           "bell\x07", "x\u202eevil", "é" * 200, "😀" * 80, "a" * 300, "trailing.", "trailing ", "/", "\\"]

# Hostile names: separators, dots, NUL and control characters, format characters, long
# multi-byte text, and letters that case-fold or normalise to one another.
NASTY = st.sampled_from(["/", "\\", ".", "..", "\x00", "\x01", "\n", "\x7f", " ", "\u202e", "\u200b", "é", "e\u0301",
                         "Å", "Å", "A", "a", "ß", "ss", "😀", "x", "-"])
NAMES = st.one_of(st.lists(NASTY, min_size=1, max_size=12).map("".join),
                  st.text(min_size=1, max_size=40),
                  st.text(alphabet="é😀./x", min_size=60, max_size=400))


def _main(capsys, *args):
    code = cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return types.SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)


def _tree(root: Path) -> list:
    """Every path under root (links not followed), with its size: a before/after snapshot."""
    out = []
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            out.append((str(p.relative_to(root)), p.lstat().st_size if not p.is_dir() else None))
    return sorted(out)


def _is_component(c: str, max_bytes: int = MAX_BYTES) -> bool:
    return (bool(c) and "/" not in c and "\\" not in c and "\x00" not in c and not c.startswith(".")
            and c.isprintable() and len(c.encode()) <= max_bytes and not c.endswith((".", " ")))


def _images(names=("a", "b", "c")):
    rng = np.random.default_rng(0)
    return ImageSet.create(rng.integers(0, 256, (6 * len(names), 1, 8, 8), dtype=np.uint8),
                           np.arange(6 * len(names)) % len(names), list(names), source="real:toy")


# -- the function --------------------------------------------------------------------


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_name_becomes_one_component(name):
    c = component(name, "test")
    assert _is_component(c), repr(c)
    assert c != name and len(c.encode()) <= 255


@pytest.mark.parametrize("name", ["guidance=1", "mix rho=0.5, guidance=0.1", "n01440764", "ça va", "x" * 255])
def test_a_safe_name_is_kept_as_it_is(name):
    assert component(name, "test") == name


@pytest.mark.parametrize("name", ["", None, 3, "bad\udcffutf8"])
def test_a_name_that_is_no_text_is_refused(name):
    with pytest.raises(UserError, match="test"):
        component(name, "test")


@pytest.mark.parametrize("a, b", [("A", "a"), ("\u00e9", "e\u0301"), ("Straße", "STRASSE")])
def test_names_that_share_a_file_on_macos_or_windows_are_refused(a, b):
    with pytest.raises(UserError, match="would share one file or folder name"):
        components([a, b], "loop.variants")


def test_a_name_of_the_tools_own_file_is_refused():
    with pytest.raises(UserError, match="ouroboros writes itself"):
        components(["n01", "Manifest.JSONL"], "class file", reserved=("manifest.jsonl",))


@settings(max_examples=300, deadline=None)
@given(names=st.lists(NAMES, min_size=1, max_size=6))
def test_property_distinct_names_get_distinct_components_or_an_error(names):
    try:
        out = components(names, "test")
    except UserError:  # two names fold together: refused, never merged
        folded = [fold(component(n, "t")) for n in names]
        assert len(set(folded)) < len(set(names))
        return
    assert all(_is_component(c) for c in out)
    assert len({fold(c) for c in out}) == len(set(names))


def _write_inside(root: Path, parts: list[str]) -> None:
    """Write one file at root/parts... and check that it is the only change under root's parent."""
    before = _tree(root.parent)
    target = root.joinpath(*parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"x")
    after = _tree(root.parent)
    new = set(after) - set(before)
    assert target.resolve().is_relative_to(root.resolve()), target
    assert {p for p, _ in new} <= {str(Path(root.name, *parts[:i + 1])) for i in range(len(parts))}, new
    assert {p for p, _ in set(before) - set(after)} == set()


# -- every place a name becomes a path, under hypothesis ---------------------------------


@settings(max_examples=150, deadline=None)
@given(first=NAMES, second=NAMES, guidance=st.lists(st.sampled_from([0.0, 0.1, 1.0, 2.5]), min_size=1, max_size=3,
                                                    unique=True))
def test_property_variant_cells_become_sample_folders_inside_the_run(first, second, guidance):
    loop = LoopConfig(guidance=guidance, variants=[LoopVariant(name=first), LoopVariant(name=second)])
    try:
        folders = check_cells(loop)  # what loop.run names the sample grids' folders by
    except UserError:
        assert fold(component(first, "t")) == fold(component(second, "t"))
        return
    assert len(set(folders.values())) == len(folders) == len(guidance) * len({first, second})
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "sentinel" / "run"
        run.mkdir(parents=True)
        for folder in folders.values():
            assert _is_component(folder)
            _write_inside(run, ["samples", folder, "gen0.png"])


@settings(max_examples=150, deadline=None)
@given(scenario=NAMES, generators=st.one_of(st.just(""), NAMES))
def test_property_sweep_names_from_results_become_plot_files_inside_plots(scenario, generators):
    rows = [{"study": "s", "cell": f"v{r}", "variant": f"v{r}", "seed": "0", "generation": "1", "metric": "accuracy",
             "value": "0.5", "guidance": "1", "scenario": scenario, "generators": generators, "curation": "watermark",
             "curation.recall": str(r), "curation.false_positive": "0"} for r in (0.5, 0.9)]
    try:
        sweeps = recall_sweeps(rows)
    except UserError:
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sentinel" / "out"
        out.mkdir(parents=True)
        for name in sweeps:  # the file names report/html.py gives the sweep plots
            assert _is_component(name, 200)
            _write_inside(out, ["plots", f"sweep-{name}-train_real_share.svg"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=st.lists(NAMES, min_size=1, max_size=4, unique=True))
def test_property_text2image_ids_become_folders_inside_out(ids):
    try:
        prompts.check_group_ids(ids, "class file")
    except UserError:
        return
    assert all(i == component(i, "t") and fold(i) not in ("manifest.jsonl", "generate.json") for i in ids)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sentinel" / "out"
        out.mkdir(parents=True)
        for item in prompts.work_list([prompts.Group(i, ("x",)) for i in ids], "simple", 1, 0):
            _write_inside(out, item.file.split("/"))


@settings(max_examples=150, deadline=None)
@given(text=st.lists(st.tuples(NAMES, st.text(alphabet="abc ", min_size=1, max_size=5)), min_size=1, max_size=3))
def test_property_a_class_file_gives_folder_ids_or_one_error(text):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "classes.txt"
        try:
            path.write_text("".join(f"{i}\t{n}x\n" for i, n in text), encoding="utf-8")
        except UnicodeEncodeError:
            return
        try:
            groups = prompts.read_classes(path)
        except UserError:
            return
        assert all(_is_component(g.id, 200) for g in groups)


@settings(max_examples=200, deadline=None)
@given(name=NAMES)
def test_property_the_study_name_is_a_folder_name_or_refused(name):
    try:
        StudyConfig(name=name).validate()
    except UserError:
        return
    assert component(name, "name") == name  # runs/<name> is one folder


# -- failures once seen (hostile names, duplicate labels), one test each ----------------------


@pytest.mark.parametrize("values, shown", [([1.0, 1.0000001], "1.0 and 1.0000001"), ([0.5, 2.0, 2.0000001], "2.0")])
def test_two_guidance_values_with_one_label_are_refused(tmp_path, capsys, values, shown):
    with pytest.raises(UserError, match="both read guidance="):
        load_config(None, [f"loop.guidance={values}"])
    proc = _main(capsys, "run", "loop-digits", "--set", f"loop.guidance={values}", "--out", tmp_path / "run")
    assert_user_error(proc, shown, "guidance")
    assert not (tmp_path / "run").exists()


def test_two_variants_in_one_folder_are_refused(tmp_path, capsys):
    proc = _main(capsys, "run", "loop-digits", "--set", 'loop.variants=[{name: Mix}, {name: mix}]',
                 "--out", tmp_path / "run")
    assert_user_error(proc, "'Mix, guidance=1' and 'mix, guidance=1'", "rename one")
    assert not (tmp_path / "run").exists()


def test_hostile_variant_names_and_a_mathtext_class_through_a_tiny_run(tmp_path):
    """Variant names `"/x"` and `"../../x"` once wrote grids outside the run folder; a class
    named $\\x$ crashed plotting at the end of the run. One tiny run does both."""
    from ouroboros.data.imageset import stratified_split
    from ouroboros.data.loaders import load_digits

    part = stratified_split(load_digits(), {"a": 0.04}, seed=0)["a"]
    data = tmp_path / "d.npz"
    ImageSet.create(part.images, part.labels, ["$\\x$", *part.class_names[1:]], source="real:t").save(data)
    config = load_config(None, ["loop.generations=1", "loop.guidance=[1.0]", "loop.seeds=[0]",
                                "loop.samples_per_generation=30", "generator.train_steps=3",
                                "generator.sample_steps=2", "classifier.epochs=1", "executor.workers=1",
                                f"data.train={data}", 'loop.variants=[{name: "/x"}, {name: "../../x"}]'],
                         base={"name": "t"})
    run = tmp_path / "a" / "b" / "run"
    run.parent.mkdir(parents=True)
    before = _tree(tmp_path)
    execute(config, run, progress=False)
    outside = [p for p, _ in set(_tree(tmp_path)) - set(before) if not p.startswith("a/b/run")]
    assert outside == [] and not Path("/x, guidance=1").exists()
    folders = sorted(p.name for p in (run / "samples").iterdir() if p.is_dir())
    assert len(folders) == 2 and all(_is_component(f) and (run / "samples" / f / "gen0.png").is_file()
                                     for f in folders)
    page = (run / "report.html").read_text()
    assert "/x, guidance=1" in page and "../../x, guidance=1" in page  # the conditions, by their names
    assert "$\\x$" in (run / "plots" / "class_accuracy.svg").read_text()  # the class, as plain text


def _results(path: Path, scenario="replace", extra=None, cells=("guidance=1",)):
    """A small loop run folder: results.csv, sample grids and a loop study's config.yaml."""
    path.mkdir(parents=True, exist_ok=True)
    rows = [{"study": "s", "cell": "reference", "seed": "", "generation": "", "metric": "accuracy", "value": 0.9}]
    for cell in cells:
        for s in range(2):
            for g in range(2):
                rows.append({"study": "s", "cell": cell, "seed": s, "generation": g, "metric": "accuracy",
                             "value": 0.5 + 0.1 * g + 0.01 * s, "guidance": 1.0, "scenario": scenario,
                             **(extra(cell) if extra else {})})
    columns = ["guidance", "scenario", "curation", "variant", "curation.recall", "curation.false_positive"]
    write_results(path / "results.csv", rows, columns)
    (path / "config.yaml").write_text(yaml.safe_dump(load_config(None).to_dict()))
    save_grid(_images(), path / "samples" / "real.png", 3, 2)
    for cell in cells:
        save_grid(_images(), path / "samples" / component(cell, "cell") / "gen0.png", 3, 2)
    return path


def _watermark(cell):
    return {"variant": cell, "curation": "watermark", "curation.recall": cell.split()[0][1:],
            "curation.false_positive": "0"}


def test_a_scenario_that_is_a_path_names_a_plot_inside_plots(tmp_path, capsys):
    run = _results(tmp_path / "r" / "run", scenario="../../../evil", extra=_watermark,
                   cells=("r0.5 x, guidance=1", "r0.9 x, guidance=1"))
    before = _tree(tmp_path)
    proc = _main(capsys, "report", run)
    assert proc.returncode == 0, proc.stderr
    new = [p for p, _ in set(_tree(tmp_path)) - set(before)]
    assert new and all(p.startswith("r/run/") for p in new), new
    sweeps = sorted(p.name for p in (run / "plots").glob("sweep-*.png"))
    assert sweeps and all(_is_component(s) and "evil" in s for s in sweeps)


def test_two_scenarios_in_one_plot_file_are_refused_before_writing(tmp_path, capsys):
    def extra(cell):
        return {**_watermark(cell), "scenario": "Mix" if " a," in cell else "mix"}

    run = _results(tmp_path / "run", extra=extra, cells=("r0.5 a, guidance=1", "r0.9 a, guidance=1",
                                                          "r0.5 b, guidance=1", "r0.9 b, guidance=1"))
    before = _tree(tmp_path)
    assert_user_error(_main(capsys, "report", run), "'Mix' and 'mix'")
    assert _tree(tmp_path) == before


def _link_plots(run, elsewhere):
    (run / "plots").symlink_to(elsewhere, target_is_directory=True)


def _link_plot_file(run, elsewhere):
    (run / "plots").mkdir()
    (run / "plots" / "accuracy.svg").symlink_to(elsewhere / "victim.txt")


def _link_page(run, elsewhere):
    (run / "report.html").symlink_to(elsewhere / "victim.txt")


@pytest.mark.parametrize("make", [_link_plots, _link_plot_file, _link_page])
def test_the_report_never_writes_through_a_link(tmp_path, capsys, make):
    run = _results(tmp_path / "run")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "victim.txt").write_text("keep me")
    make(run, elsewhere)
    before = _tree(tmp_path)
    assert_user_error(_main(capsys, "report", run), "symbolic link", "refusing to write")
    assert _tree(tmp_path) == before and (elsewhere / "victim.txt").read_text() == "keep me"


def _outside_png(run, secret):
    (run / "samples" / "real.png").unlink()
    (run / "samples" / "real.png").symlink_to(secret)


def _outside_passwd(run, secret):
    (run / "samples" / "real.png").unlink()
    (run / "samples" / "real.png").symlink_to("/etc/passwd")


def _outside_folder(run, secret):
    (run / "samples" / "other").symlink_to(secret.parent, target_is_directory=True)


def _outside_results(run, secret):
    (run / "results.csv").rename(secret.parent / "results.csv")
    (run / "results.csv").symlink_to(secret.parent / "results.csv")


def _fifo(run, secret):
    os.mkfifo(run / "samples" / "pipe.png")


@pytest.mark.parametrize("make, fragment", [(_outside_png, "outside the run folder"),
                                            (_outside_passwd, "outside the run folder"),
                                            (_outside_folder, "outside the run folder"),
                                            (_outside_results, "outside the run folder"),
                                            (_fifo, "not a regular file")])
def test_the_report_never_reads_outside_the_run_folder(tmp_path, capsys, make, fragment):
    run = _results(tmp_path / "run")
    secret = tmp_path / "private" / "gen0.png"
    secret.parent.mkdir()
    save_grid(_images(), secret, 3, 2)
    make(run, secret)
    before = _tree(tmp_path)
    assert_user_error(_main(capsys, "report", run), fragment, "refusing to read")
    assert _tree(tmp_path) == before


def test_a_link_that_stays_inside_the_run_folder_is_read(tmp_path, capsys):
    run = _results(tmp_path / "run")
    (run / "samples" / "copy.png").symlink_to(run / "samples" / "real.png")
    assert _main(capsys, "report", run).returncode == 0


@pytest.mark.parametrize("column", ["value", "generation", "seed", "guidance", "ratio", "curation.recall",
                                    "curation.false_positive"])
def test_a_malformed_column_is_one_line_and_nothing_is_written(tmp_path, capsys, column):
    run = _results(tmp_path / "run", extra=lambda cell: {"ratio": "0.5"})
    lines = (run / "results.csv").read_text().splitlines()
    header = lines[0].split(",")
    if column not in header:
        header.append(column)
        lines = [",".join(header)] + [line + "," for line in lines[1:]]
    fields = lines[3].split(",")
    fields[header.index(column)] = "abc"
    lines[3] = ",".join(fields)
    (run / "results.csv").write_text("\n".join(lines) + "\n")
    before = _tree(tmp_path)
    assert_user_error(_main(capsys, "report", run), "line 4", column, "'abc' is not a number")
    assert _tree(tmp_path) == before


def test_an_infinite_parameter_is_refused(tmp_path, capsys):
    run = _results(tmp_path / "run")
    (run / "results.csv").write_text((run / "results.csv").read_text().replace(",1.0,", ",inf,", 1))
    assert_user_error(_main(capsys, "report", run), "guidance", "not a finite number")


MATH = "$\\x$"


def test_labels_from_data_never_reach_mathtext(tmp_path):
    """A condition, class, metric or run named like mathtext is drawn as the text it is."""
    rows = [{"cell": "reference", "metric": MATH, "value": "0.9", "generation": ""}]
    for g in range(2):
        rows += [{"cell": MATH, "seed": "0", "generation": str(g), "metric": m, "value": "0.5", "guidance": "1",
                  "curation.recall": "0.5"} for m in (MATH, f"accuracy/{MATH}", "train_real_share", "train_size",
                                                      "train_share_gen$1$", "accuracy")]
    P.plot_metric(rows, MATH, tmp_path / "m.png")
    P.plot_class_accuracy(rows, tmp_path / "c.png")
    P.plot_makeup(rows, tmp_path / "k.png")
    P.plot_shares({MATH: [(0.0, 0.5, 0.1), (0.5, 0.4, float("nan"))]}, tmp_path / "s.png", MATH, MATH)
    P.plot_spectra({MATH: np.ones((2, 4))}, tmp_path / "p.png")
    P.plot_confusions({MATH: np.eye(2)}, [MATH, "b"], tmp_path / "f.png")
    P.plot_sweep(rows, "curation.recall", "accuracy", tmp_path / "w.png", title=MATH)
    for name in "mckspfw":
        assert MATH in (tmp_path / f"{name}.svg").read_text()


def test_text2image_refuses_an_id_that_is_its_own_file(tmp_path, capsys):
    for text, fragment in (("manifest.jsonl\ta\n", "ouroboros writes itself"),
                           ("n01\ta\nGenerate.JSON\tb\n", "ouroboros writes itself"),
                           ("Tench\ta\ntench\tb\n", "would share one file or folder name"),
                           ("..\ta\n", "cannot name a folder"),
                           ("a/b\ta\n", "cannot name a folder")):
        classes = tmp_path / "classes.txt"
        classes.write_text(text)
        proc = _main(capsys, "generate", "text2image", "--model", tmp_path / "no-model", "--classes", classes,
                     "--out", tmp_path / "out", "--quiet")
        assert_user_error(proc, fragment)
        assert not (tmp_path / "out").exists()


def test_generate_checks_a_work_list_built_in_python(tmp_path):
    from ouroboros.generators.text2image import Settings
    from ouroboros.generators.text2image_run import generate

    items = prompts.work_list([prompts.Group("manifest.jsonl", ("a",))], "simple", 1, 0)
    with pytest.raises(UserError, match="writes itself"):
        generate(items, Settings(str(tmp_path / "no-model")), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_nfd_and_nfc_spellings_are_one_name():
    assert fold("\u00e9") == fold(unicodedata.normalize("NFD", "\u00e9"))


def test_a_plot_is_never_written_through_a_link(tmp_path):
    """What the study's own figures go through too (contamination writes plots/ during the run)."""
    (tmp_path / "victim.txt").write_text("keep me")
    (tmp_path / "m.svg").symlink_to(tmp_path / "victim.txt")
    rows = [{"cell": "c", "seed": "0", "generation": "0", "metric": "accuracy", "value": "0.5"}]
    with pytest.raises(UserError, match="symbolic link"):
        P.plot_metric(rows, "accuracy", tmp_path / "m.png")
    assert (tmp_path / "victim.txt").read_text() == "keep me" and not (tmp_path / "m.png").exists()
