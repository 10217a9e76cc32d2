"""The contamination study's real controls from another source (digits <-> mnist5k,
resized), the resizing itself, and Table 10 (a generator trained on the top mixture
against one trained on that mixture's real images alone)."""

import numpy as np
import pytest
import torch

from conftest import REPO, assert_user_error, run_main
from ouroboros.config import load_config
from ouroboros.data.imageset import ImageSet
from ouroboros.data.mixtures import keep, replace
from ouroboros.data.resize import resampling_matrix, resize_images
from ouroboros.errors import UserError
from ouroboros.report.stats import HIGHER, HOLDS, LOWER, NOT_RESOLVED, REVERSED

CONFIG = str(REPO / "configs" / "contamination-digits.yaml")


# -- resizing -----------------------------------------------------------------------------


def test_shrinking_averages_exactly_the_area_each_output_pixel_covers():
    """28 -> 8 is a factor of 3.5: each output pixel covers three whole input pixels and
    half of a fourth. Reference: double every pixel (56, where the factor is a whole 7) and
    take plain 7-pixel block means."""
    reference = np.repeat(np.eye(28), 2, axis=0).reshape(8, 7, 28).mean(axis=1)
    np.testing.assert_allclose(resampling_matrix(28, 8), reference, atol=1e-12)
    images = np.random.default_rng(0).integers(0, 256, (5, 1, 28, 28), dtype=np.uint8)
    blocks = images.reshape(5, 1, 14, 2, 14, 2).astype(np.float64).mean(axis=(3, 5))  # a whole factor of 2
    np.testing.assert_array_equal(resize_images(images, 14, 14), np.rint(blocks).astype(np.uint8))


def test_enlarging_is_torchs_bilinear_and_every_matrix_keeps_a_constant_image():
    x = np.random.default_rng(1).random((2, 1, 8, 8))
    ours = np.einsum("ih,nchw,jw->ncij", resampling_matrix(8, 28), x, resampling_matrix(8, 28))
    theirs = torch.nn.functional.interpolate(torch.from_numpy(x), size=(28, 28), mode="bilinear",
                                             align_corners=False).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-12)
    for n_in, n_out in ((28, 8), (8, 28), (5, 3), (3, 7), (8, 8)):
        np.testing.assert_allclose(resampling_matrix(n_in, n_out).sum(axis=1), 1.0, atol=1e-12)


# -- the other-source control ---------------------------------------------------------------


def _splits(overrides):
    from ouroboros.studies.contamination import load_splits

    config = load_config(CONFIG, overrides)
    return config, load_splits(config)


def test_digits_draw_their_other_source_control_from_mnist_and_mnist_from_digits():
    from ouroboros.data.loaders import load_digits, load_mnist5k

    _, splits = _splits([])
    other = splits["other control"]
    assert other.shape == splits["train"].shape == (1, 8, 8) and len(other) == 5000
    assert set(other.source) == {"real:mnist5k"} and other.class_names == splits["train"].class_names
    # MNIST's 20 x 20 digit box (inside its 4-pixel border), area-averaged: the digits fill their frame
    np.testing.assert_array_equal(other.images, resize_images(load_mnist5k().images[:, :, 4:24, 4:24].copy(), 8, 8))
    assert {"train", "generator", "control", "test"} <= set(splits)  # the same-source control split too

    _, splits = _splits(["data.train=mnist5k", "contamination.controls=[other-source]"])
    other = splits["other control"]
    assert other.shape == (1, 28, 28) and set(other.source) == {"real:digits"} and len(other) == len(load_digits())
    np.testing.assert_array_equal(other.images[:, :, 4:24, 4:24], resize_images(load_digits().images, 20, 20))
    assert not other.images[:, :, :4].any() and not other.images[:, :, :, 24:].any()  # MNIST's empty border
    assert "control" not in splits  # no same-source control: no control split is cut


@pytest.mark.parametrize("classes, fragment", [
    ([f"c{i}" for i in range(10)], "class 0 'c0' where the training data has '0'"),  # names
    ([str(i) for i in range(9)], "9 classes, the training data 10"),  # count
    ([str(i) for i in range(9, -1, -1)], "class 0 '9'"),  # same names, another order
])
def test_a_control_source_whose_classes_differ_is_refused_before_anything_is_written(tmp_path, capsys, tripwire,
                                                                                     classes, fragment):
    rng = np.random.default_rng(0)
    n = 5 * len(classes)
    ImageSet.create(rng.integers(0, 256, (n, 1, 8, 8), dtype=np.uint8), np.arange(n) % len(classes), classes,
                    source="real:other").save(tmp_path / "other.npz")
    out = tmp_path / "run"
    proc = run_main(capsys, "run", CONFIG, "--out", out, "--set", f"contamination.control={tmp_path / 'other.npz'}")
    assert_user_error(proc, "other-source control", fragment, "classes in the same order")
    assert not out.exists()


def test_a_control_source_of_other_channels_is_refused(tmp_path):
    ImageSet.create(np.zeros((20, 3, 8, 8), np.uint8), np.arange(20) % 10, [str(i) for i in range(10)],
                    source="real:rgb").save(tmp_path / "rgb.npz")
    with pytest.raises(UserError, match="3-channel images, the training data 1-channel"):
        _splits([f"contamination.control={tmp_path / 'rgb.npz'}"])


@pytest.mark.parametrize("overrides, fragment", [
    (["contamination.controls=[webvision]"], "unknown control 'webvision'"),
    (["contamination.controls=[]"], "at least one value"),
    (["contamination.controls=[same-source,same-source]"], "twice"),
    (["contamination.controls=[same-source]", "contamination.control=mnist5k"], "add other-source"),
])
def test_bad_control_settings(overrides, fragment):
    with pytest.raises(UserError, match=fragment):
        load_config(CONFIG, overrides)


def test_other_source_without_a_counterpart_asks_for_contamination_control(tmp_path):
    ImageSet.create(np.zeros((40, 1, 8, 8), np.uint8), np.arange(40) % 2, ["a", "b"], source="real:x").save(
        tmp_path / "x.npz")
    with pytest.raises(UserError, match="name it as contamination.control"):
        _splits([f"data.train={tmp_path / 'x.npz'}", "contamination.class_groups=null"])


def test_each_control_is_wired_to_its_own_source_and_keeps_the_generated_cells_real_images(tmp_path):
    """Both controls replace the same real images as the generated cell at each ratio (paired
    draws), each with images of its own source; Table 7 fills the same subset with each."""
    from ouroboros.studies.contamination import plan

    config, splits = _splits(["contamination.seeds=[0]", "contamination.archs=[cnn]"])
    p = plan(config, tmp_path / "cache", splits)
    by_hash = {part.content_hash(): role for role, part in splits.items()}

    def roles(stage):
        if stage.kind == "data":
            return {by_hash[stage.params["content_hash"]]}
        return set().union(*(roles(d) for d in stage.deps.values()))

    cells = {(c.table, c.source, c.ratio): c for c in p.cells}
    for r in (0.2, 0.8):
        gen, same, other = (cells[("1", s, r)].mixture for s in ("generated", "real control", "other-source control"))
        assert roles(same) == {"train", "control"} and roles(other) == {"train", "other control"}
        assert same.params == other.params == {**gen.params, "allow_repeats": True}  # the same real images dropped
        assert (cells[("1", "other-source control", r)].control, cells[("1", "real control", r)].control) == (
            "other-source", "same-source")
    assert roles(cells[("7", "+ other-source real", 0.05)].mixture) == {"train", "other control"}
    assert roles(cells[("7", "+ real", 0.05)].mixture) == {"train", "control"}
    assert all(roles(st.deps["real"]) == {"control"} for k, st in p.analysis.items() if k[0] == "detection")
    # Table 3 has a model per control mixture; Table 10 one on the 80% mixture's real images alone
    assert {k[1] for k in p.analysis if k[0] == "3"} == {"generated", "real control", "other-source control"}


# -- Table 10 --------------------------------------------------------------------------------


def test_keep_is_the_real_part_of_the_replace_mixture_alone(toy_set):
    other = ImageSet.create(np.full((30, 1, 8, 8), 7, np.uint8), np.arange(30) % 3, ["a", "b", "c"], source="gen:x",
                            generation=1)
    for ratio in (0.2, 0.8):
        mixed, alone = replace(toy_set, other, ratio, seed=3), keep(toy_set, ratio, seed=3)
        real = mixed.generation == 0
        np.testing.assert_array_equal(alone.images, mixed.images[real])  # the same images, in the same order
        np.testing.assert_array_equal(alone.labels, mixed.labels[real])
        assert len(alone) == 30 - (~real).sum()
    assert not np.array_equal(keep(toy_set, 0.8, seed=3).images, keep(toy_set, 0.8, seed=4).images)
    with pytest.raises(UserError, match="keeps no images"):
        keep(toy_set, 1.0)


def test_table10_trains_on_the_top_mixtures_real_images_with_that_mixtures_seeds(tmp_path):
    from ouroboros.studies.contamination import plan

    config, splits = _splits(["contamination.seeds=[0,1]", "contamination.archs=[cnn]",
                              "contamination.controls=[same-source]"])
    p = plan(config, tmp_path / "cache", splits)
    assert sorted(k for k in p.analysis if k[0] == "10") == [("10", "real alone", 0.8, 0), ("10", "real alone", 0.8, 1)]
    for seed in (0, 1):
        alone, mixture = (p.analysis[(t, s, 0.8, seed)].deps["images"] for t, s in (("10", "real alone"),
                                                                                  ("3", "generated")))
        fit_alone, fit_mixture = alone.deps["model"], mixture.deps["model"]
        assert fit_alone.params == fit_mixture.params and alone.params == mixture.params  # paired seeds
        kept, mixed = fit_alone.deps["train"], fit_mixture.deps["train"]
        assert kept.params == {**mixed.params, "mode": "keep", "allow_repeats": False}
        assert kept.deps["real"].key == mixed.deps["real"].key
    none = load_config(CONFIG, ["contamination.ratios=[0.0,1.0]", "contamination.seeds=[0]"])
    from ouroboros.studies.contamination import load_splits

    assert not [k for k in plan(none, None, load_splits(none)).analysis if k[0] == "10"]  # no ratio below 100%


def _rows(recall_alone, recall_mixture, recall_full, precision_gain=0.0, seeds=range(5)):
    """Table 10's rows: recall per seed as given; precision the same in every set except the
    mixture's, higher by `precision_gain` (and a little noise); FID the same everywhere."""
    rows = []
    noise = [0.001, -0.002, 0.0, 0.002, -0.001]
    for s in seeds:
        for table, source, ratio, recall, gain in (("10", "real alone", 0.8, recall_alone[s], 0.0),
                                                   ("3", "generated", 0.8, recall_mixture[s], precision_gain),
                                                   ("3", "generated", 0.0, recall_full[s], 0.0)):
            precision = 0.7 + 0.01 * s + (gain + noise[s] if gain else 0.0)
            for metric, value in (("recall", recall), ("precision", precision), ("fid", 1.0 + 0.01 * s)):
                rows.append({"table": table, "source": source, "ratio": ratio, "seed": s, "metric": metric,
                             "value": value})
    return rows


def test_table10_comparisons_are_paired_tests_holm_corrected_and_decide_the_claims():
    from ouroboros.studies.contamination_tables import findings, table10

    config = load_config(CONFIG, ["contamination.controls=[same-source]"])
    jitter = np.array([0.0, 0.01, -0.01, 0.02, -0.02])
    alone = 0.5 + 0.1 * np.arange(5)  # seeds differ a lot; the pairs do not
    rows = _rows(alone, alone - 0.2 + jitter, alone + 0.1 - jitter, precision_gain=0.05)
    comps = {(c.what.split(" ")[1], c.metric): c for c in table10(rows, config)}
    assert len(comps) == 6
    recall = comps[("generated", "recall")]  # mixture - alone
    assert recall.test.diff.mean == pytest.approx(-0.2) and recall.test.diff.n == 5
    assert recall.decision == LOWER and recall.p_holm > recall.test.p  # Holm-corrected over the six
    assert comps[("real", "recall")].decision == LOWER  # alone - all real: less real data costs recall too
    assert comps[("generated", "precision")].decision == HIGHER
    assert comps[("real", "precision")].decision == NOT_RESOLVED  # no difference at all
    claims = {c.text: c for c in findings(rows, config) if c.table == "10"}
    assert claims["a model trained on the 80% generated mixture has lower recall than on its real images alone"
                  ].verdict == HOLDS
    assert claims["a model trained on the 80% generated mixture has higher precision than on its real images alone"
                  ].verdict == HOLDS  # a ">" claim shown higher holds
    assert claims["a model trained on the 80% generated mixture has lower fid than on its real images alone"
                  ].verdict == NOT_RESOLVED
    from ouroboros.studies.contamination_report import findings as finding_lines

    texts = [f.text for f in finding_lines(rows, config) if f.text.startswith("Table 10")]
    # fractions keep three decimals (at one, a recall difference of -0.2 read -0.2, but 0.017 read +0.0)
    assert any("lower recall than on its real images alone: difference -0.200 [" in t for t in texts), texts
    reversed_ = {c.text: c for c in findings(_rows(alone, alone + 0.2 + jitter, alone), config) if c.table == "10"}
    claim = reversed_["a model trained on the 80% generated mixture has lower recall than on its real images alone"]
    assert (claim.decision, claim.verdict) == (HIGHER, REVERSED)
    # unpaired, the same differences are lost in the spread between seeds: pairing is what resolves them
    shuffled = _rows(alone, (alone - 0.2 + jitter)[[4, 3, 0, 1, 2]], alone)
    assert {(c.what.split(" ")[1], c.metric): c for c in table10(shuffled, config)}[
        ("generated", "recall")].decision == NOT_RESOLVED


def test_generated_or_different_gives_each_paired_difference():
    """Table 1 against both controls: generated - same-source, other-source - same-source
    (the cost of being different), generated - other-source (of being generated beyond it)."""
    from ouroboros.studies.contamination_tables import _generated_or_different

    config = load_config(CONFIG, ["contamination.archs=[cnn]", "contamination.ratios=[0.0,0.8]"])
    base = {"generated": 0.90, "real control": 0.97, "other-source control": 0.93}
    rows = [{"table": "1", "source": src, "ratio": 0.8, "arch": "cnn", "test": "clean", "seed": s,
             "metric": "accuracy", "value": acc + 0.01 * s + 0.001 * (s % 2) * (src == "generated")}
            for s in range(5) for src, acc in base.items()]
    tables = []
    _generated_or_different(rows, config, lambda title, header, body, note="": tables.append((header, body)))
    (header, body), = tables
    assert header == ["arch", "share", "generated - same-source", "other-source - same-source",
                      "generated - other-source"]
    assert [row[:2] for row in body] == [["cnn", "80%"]]
    assert [cell.split(" ")[0] for cell in body[0][2:]] == ["-7.0", "-4.0", "-3.0"]  # points, paired per seed


@pytest.mark.parametrize("section", ["contamination", "captioning"])
@pytest.mark.parametrize("override, message", [
    ("split_train=0.9",
     "{s} splits must sum to at most 1 (split_train + split_generator + split_control + split_test)"),
    ("split_test=1.0", "{s}.split_test must lie in [0, 1); got 1"),
    ("generated=[1]", "{s}.generated must be a string; got [1]"),
    ("control=[1]", "{s}.control must be a string; got [1]"),
])
def test_both_mixing_studies_check_their_splits_and_sources_alike(section, override, message):
    """data.controls.check_splits_and_sources serves the contamination and captioning configs."""
    with pytest.raises(UserError) as err:
        load_config(f"{section}-digits", [f"{section}.{override}"])
    assert str(err.value) == message.format(s=section)
