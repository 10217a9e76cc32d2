"""The captioning study (issue 23 items 2, 5, 8): stand-ins generated from each image's own
captions, mixed in by the contamination study's draws; a tiny run end to end; bad input."""

import csv
import json

import numpy as np
import pytest

from conftest import assert_user_error, run_cli, run_main
from ouroboros.data.captions import Captions
from ouroboros.data.imageset import ImageSet
from ouroboros.data.mixtures import replace, substitute
from ouroboros.errors import UserError

TINY = ["captioning.seeds=[0,1]", "captioning.ratios=[0.0,1.0]", "captioning.subsets=[0.2]",
        "captioning.split_train=0.1", "captioning.split_control=0.12", "captioning.split_test=0.05",
        "captioning.captioner.epochs=1", "captioning.captioner.dim=16", "captioning.captioner.heads=2",
        "captioning.captioner.min_count=1", "generator.train_steps=20", "generator.sample_steps=4"]


def _captioned(n, classes=2, seed=0, tag="r", generation=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 1, 4, 4), dtype=np.uint8)
    ids = [f"id{i}" for i in range(n)]
    captions = Captions.create([[f"{tag} caption {i}", f"{tag} other {i}"] for i in range(n)], ids)
    return ImageSet.create(images, np.arange(n) % classes, [str(c) for c in range(classes)],
                           source=f"{'gen' if generation else 'real'}:{tag}", captions=captions,
                           generation=generation)


def test_substitute_drops_what_replace_drops_and_puts_in_each_ones_own_stand_in():
    real = _captioned(40)
    mirrored = real.subset(np.arange(39, -1, -1))  # the same ids and captions, in another order
    stand_ins = ImageSet(_captioned(40, seed=1).images, mirrored.labels, mirrored.class_names,
                         np.full(40, "gen:g"), np.ones(40, np.int64), mirrored.seed, mirrored.condition,
                         mirrored.captions)
    control = _captioned(40, seed=2, tag="c")
    for ratio in (0.2, 0.5, 1.0):
        mixed = substitute(real, stand_ins, ratio, seed=3)
        ctl = replace(real, control, ratio, seed=3)
        kept = mixed.generation == 0
        # The same real images kept as the control mixture keeps, and the same count replaced.
        assert mixed.captions.subset(np.flatnonzero(kept)).ids == ctl.captions.subset(
            np.flatnonzero(ctl.source == "real:r")).ids
        assert len(mixed) == len(real) and (~kept).sum() == 2 * round(ratio * 20)
        # Every caption of the real set is still there, each image once: only images changed.
        assert sorted(mixed.captions.ids) == sorted(real.captions.ids)
        by_id = dict(zip(real.captions.ids, real.captions.texts))
        assert all(by_id[i] == t for i, t in zip(mixed.captions.ids, mixed.captions.texts))
        # Each stand-in is the image made for the id it carries.
        made = dict(zip(stand_ins.captions.ids, stand_ins.images))
        assert all(np.array_equal(made[i], im) for i, im, g in zip(mixed.captions.ids, mixed.images, ~kept) if g)
        assert np.array_equal(mixed.labels[~kept], np.array([int(i[2:]) % 2 for i in
                                                             np.array(mixed.captions.ids)[~kept]]))
    small, large = (set(np.array(substitute(real, stand_ins, r, 3).captions.ids)[
        substitute(real, stand_ins, r, 3).generation > 0]) for r in (0.2, 0.5))
    assert small < large  # nested, as replace's draws are
    with pytest.raises(UserError, match="no image for 1 caption id"):
        substitute(real, stand_ins.subset(np.arange(1, 40)), 1.0)


def test_stand_ins_are_conditioned_on_the_class_their_caption_names():
    from ouroboros.data.digit_captions import load_captioned
    from ouroboros.studies.captioning_stages import caption_class, prompts_and_classes

    digits = load_captioned("digits").subset(np.arange(300))
    prompts, classes = prompts_and_classes(digits, seed=0)
    assert np.array_equal(classes, digits.labels)  # every composed caption names its digit
    assert all(p in t for p, t in zip(prompts, digits.captions.texts))
    assert prompts != prompts_and_classes(digits, seed=1)[0]  # the prompt is drawn per seed
    assert caption_class("a thick slanted seven near the top", digits.class_names) == 7
    assert caption_class("the digit 4, written small", digits.class_names) == 4
    with pytest.raises(UserError, match="names none of the classes"):
        prompts_and_classes(_captioned(4), seed=0)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("captioning") / "run"
    proc = run_cli("run", "captioning-digits", "--out", out, "--quiet", *sum((["--set", s] for s in TINY), []))
    assert proc.returncode == 0, proc.stderr
    return out


def test_a_tiny_captioning_run_writes_tables_2_and_9_and_their_comparisons(tiny_run):
    with open(tiny_run / "results.csv") as f:
        rows = list(csv.DictReader(f))
    cells = {(r["table"], r["source"], r["ratio"]) for r in rows}
    assert cells == {("2", s, r) for s in ("generated", "real control", "other-source control")
                     for r in ("0.0", "1.0")} | {("9", "20% real", "0.2"), ("9", "+ generated", "0.2")}
    assert {r["metric"] for r in rows} >= {"Bleu_1", "Bleu_4", "ROUGE_L", "CIDEr"}
    assert {r["seed"] for r in rows} == {"0", "1"}
    # 0% of every source is the clean training set: one captioner, the same scores.
    zero = {(r["source"], r["seed"]): r["value"] for r in rows if r["ratio"] == "0.0" and r["metric"] == "CIDEr"}
    assert len({v for (s, seed), v in zero.items() if seed == "0"}) == 1
    with open(tiny_run / "comparisons.csv") as f:
        comps = list(csv.DictReader(f))
    # 3 metrics x (100% vs 0%, vs each control, Table 9's filled vs alone)
    assert len(comps) == 12 and {c["table"] for c in comps} == {"2", "9"}
    assert {c["metric"] for c in comps} == {"Bleu_4", "ROUGE_L", "CIDEr"}
    tables = (tiny_run / "tables.md").read_text()
    for fragment in ("Table 2", "Table 9", "SPICE is not computed", "Which of the paper's directions hold"):
        assert fragment in tables


def test_the_generated_mixture_keeps_every_caption_and_swaps_every_image(tiny_run):
    from ouroboros.config import load_config
    from ouroboros.study import get_study

    config = load_config("captioning-digits", TINY)
    study = get_study("captioning")
    splits = study.prepare(config)
    plan = study.plan(config, splits, None)
    train = splits["train"]
    cell = next(c for c in plan.cells if (c.table, c.source, c.ratio, c.seed) == ("2", "generated", 1.0, 0))
    mixed = ImageSet.load(cell.mixture.artifact(tiny_run / "cache"))
    assert (mixed.generation > 0).all() and sorted(mixed.captions.ids) == sorted(train.captions.ids)
    order = np.argsort(mixed.captions.ids)
    assert ([mixed.captions.texts[i] for i in order]
            == [train.captions.texts[i] for i in np.argsort(train.captions.ids)])
    assert all(p in t for p, t in zip(mixed.condition, mixed.captions.texts))  # made from one of its captions
    scores = json.loads(plan.runs[(cell.mixture.key, 0)].artifact(tiny_run / "cache").read_text())
    assert len(scores["examples"]) == 8 and scores["examples"][0]["caption"]


def _no_run(capsys, tmp_path, *sets):
    out = tmp_path / "run"
    proc = run_main(capsys, "run", "captioning-digits", "--out", out,
                    *sum((["--set", s] for s in TINY + list(sets)), []))
    assert not out.exists(), "nothing may be written"
    return proc


def test_bad_captioning_input_is_one_error_line_and_writes_nothing(tmp_path, capsys, tripwire):
    from PIL import Image

    # A folder of stand-ins keyed by caption ids that match no training image.
    for name in ("coco:1", "coco:2"):
        (tmp_path / "gen" / name).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "gen" / name / "0.png")
    assert_user_error(_no_run(capsys, tmp_path, f"captioning.generated={tmp_path / 'gen'}"), "has no image for",
                      "caption id 'digits:")
    # Images without captions.
    plain = ImageSet.create(np.zeros((40, 1, 8, 8), np.uint8), np.arange(40) % 10, [str(d) for d in range(10)],
                            source="real:plain")
    plain.save(tmp_path / "plain.npz")
    assert_user_error(_no_run(capsys, tmp_path, f"data.train={tmp_path / 'plain.npz'}",
                              "captioning.controls=[same-source]"), "has no captions")
    # An empty vocabulary: no word occurs min_count times.
    assert_user_error(_no_run(capsys, tmp_path, "captioning.captioner.min_count=1000000"), "empty vocabulary",
                      "min_count")
    # A BLIP folder that is not a checkpoint.
    (tmp_path / "blip").mkdir()
    blip = ("captioning.captioner.arch=blip", f"captioning.captioner.model={tmp_path / 'blip'}")
    assert_user_error(_no_run(capsys, tmp_path, *blip), "captioning.captioner.model", "not a BLIP checkpoint")
    # A control whose classes do not match the training data's.
    _captioned(40, classes=3).save(tmp_path / "abc.npz")
    assert_user_error(_no_run(capsys, tmp_path, f"captioning.control={tmp_path / 'abc.npz'}"), "other-source control",
                      "classes in the same order")
