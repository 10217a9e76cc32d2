"""Curation before training (ouroboros.studies.curation): each filter against its
closed form, and the filters in the loop, through the real planner and runner, checked
from provenance."""

import csv
import json
import math

import numpy as np
import pytest
from scipy import stats

from conftest import TINY
from ouroboros import cli
from ouroboros.config import load_config
from ouroboros.data.imageset import ImageSet
from ouroboros.runner import Runner
from ouroboros.studies import curation, loop

N = 30  # samples per generation; the real split has R = 100 images


# -- the filters, alone --------------------------------------------------------------


def test_watermark_removes_generated_and_real_images_at_its_two_rates():
    # 20000 of each; the removed counts are Binomial(20000, r) and Binomial(20000, f).
    generation = np.r_[np.zeros(20000, int), np.ones(10000, int), np.full(10000, 3)]
    uniforms = np.concatenate([curation.image_uniforms(7, -1, 20000), curation.image_uniforms(7, 0, 10000),
                               curation.image_uniforms(7, 2, 10000)])
    removed = curation.watermark(generation, 0.3, 0.05, uniforms)
    for mask, p in ((generation > 0, 0.3), (generation == 0, 0.05)):
        sd = math.sqrt(20000 * p * (1 - p))
        assert abs(removed[mask].sum() - 20000 * p) < 4 * sd
    assert curation.watermark(generation, 1.0, 0.0, uniforms).tolist() == (generation > 0).tolist()


def test_a_watermarks_uniforms_are_fixed_per_image_and_chain_and_independent_otherwise():
    """An image's number depends on the chain's seed, its origin and its position alone:
    not on which other images are candidates with it."""
    whole = curation.image_uniforms(3, -1, 1000)
    assert np.array_equal(curation.image_uniforms(3, -1, 1000, [5, 900, 17]), whole[[5, 900, 17]])
    assert np.array_equal(curation.image_uniforms(3, -1, 1000), whole)
    others = [curation.image_uniforms(4, -1, 1000), curation.image_uniforms(3, 0, 1000),
              curation.image_uniforms(3, 1, 1000)]  # another chain, the outputs O_0 and O_1
    for u in others:  # independent of `whole`: correlation within 4 sd of 0 (sd = 1/sqrt(1000))
        assert abs(np.corrcoef(u, whole)[0, 1]) < 4 / math.sqrt(1000)
    assert stats.kstest(whole, "uniform").pvalue > 1e-3


def test_k_choice_keeps_each_candidate_with_its_bradley_terry_probability():
    # 20000 groups of K = 4 with the same rewards: the kept position is multinomial with
    # p_k = e^{r_k} / sum_j e^{r_j} = (1, e, 3, e^-2) / (4 + e + e^-2).
    r = np.array([0.0, 1.0, math.log(3.0), -2.0])
    groups = 20000
    removed = curation.k_choice(np.zeros(4 * groups, int), np.tile(r, groups), 4, np.random.default_rng(0))
    kept = np.flatnonzero(~removed)
    assert len(kept) == groups and (kept // 4 == np.arange(groups)).all()  # one per group
    counts = np.bincount(kept % 4, minlength=4)
    p = np.exp(r) / np.exp(r).sum()
    assert stats.chisquare(counts, groups * p).pvalue > 1e-3, (counts, groups * p)


def test_k_choice_groups_within_a_class_in_order_and_keeps_one_of_a_short_last_group():
    labels = np.arange(3 * 11) % 3  # 11 of each class, interleaved: groups of 4, 4 and 3
    rewards = np.zeros(len(labels))
    rewards[[0, 3, 6, 9]] = 50.0  # the first group of class 0 is images 0, 3, 6, 9: one of them wins
    removed = curation.k_choice(labels, rewards, 4, np.random.default_rng(0))
    kept = np.flatnonzero(~removed)
    assert np.bincount(labels[kept]).tolist() == [3, 3, 3]
    assert len(set(kept.tolist()) & {0, 3, 6, 9}) == 1
    assert len(set(kept.tolist()) & {24, 27, 30}) == 1  # class 0's last group of 3
    assert (~curation.k_choice(labels, rewards, 1, np.random.default_rng(0))).all()  # K = 1 keeps everything


def test_reward_is_the_log_probability_of_the_images_own_label():
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    expected = [2.0 - math.log(math.e ** 2 + 1 + math.e ** -1), -math.log(3.0)]
    assert np.allclose(curation.log_label_probability(logits, np.array([0, 2])), expected)


def test_detector_probe_on_separable_gaussians_reaches_the_bayes_rates():
    # real ~ N(0, I), generated ~ N(3 e1, I), equal priors: the Bayes posterior is
    # P(gen | x) = sigmoid(3 x1 - 4.5), so threshold 0.5 removes x1 > 1.5: recall
    # Phi(1.5) = 0.9332 and false-positive rate 1 - Phi(1.5) = 0.0668. A logistic probe
    # fitted on 4000 + 4000 images must come within 0.015 of both (MC sd on 20000 test
    # points ~0.002; the fitted boundary's error ~0.005).
    rng = np.random.default_rng(0)
    shift = np.array([3.0, 0.0])
    probe = curation.Probe.fit(rng.normal(size=(4000, 2)), rng.normal(size=(4000, 2)) + shift)
    real, gen = rng.normal(size=(20000, 2)), rng.normal(size=(20000, 2)) + shift
    recall, fpr = (probe.prob_generated(gen) > 0.5).mean(), (probe.prob_generated(real) > 0.5).mean()
    assert abs(recall - stats.norm.cdf(1.5)) < 0.015 and abs(fpr - stats.norm.sf(1.5)) < 0.015, (recall, fpr)
    # saved as JSON and read back, it scores the same
    again = curation.Probe.from_json(json.loads(json.dumps(probe.to_json())))
    assert np.array_equal(again.prob_generated(real), probe.prob_generated(real))


def test_removal_stats_count_from_provenance():
    generation = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    removed = np.array([1, 0, 0, 0, 1, 1, 0, 0, 0, 1], bool)
    assert curation.removal_stats(generation, removed) == {
        "curation_candidates": 10.0, "curation_removed": 4.0, "curation_removed_real": 1.0,
        "curation_removed_gen0": 2.0, "curation_removed_gen1": 1.0, "curation_recall": 0.5, "curation_fpr": 0.25}


# -- in the loop -----------------------------------------------------------------------


def _config(*extra):
    return load_config(None, ["loop.generations=3", "loop.guidance=[0.5]", "loop.seeds=[0]",
                              f"loop.samples_per_generation={N}", "generator.hidden=16", "generator.depth=1",
                              "generator.train_steps=2", "generator.batch_size=16", "generator.sample_steps=2",
                              "generator.sampler=ddim", "classifier.epochs=1", "executor.workers=1", *extra],
                       base={"name": "cur"})


def _chain(tmp_path, digits, *settings):
    """Per generation: (training set, its stage, curate decisions or None), the outputs, the plan."""
    runner = Runner(tmp_path, workers=1, progress=False)
    plan = loop.plan(_config(*settings), runner.cache, digits)
    ((_, stages),) = plan.chains.items()
    paths = runner.run([sample for _, sample, _ in stages])
    trains = []
    for fit, _, _ in stages:
        source = fit.deps["train"]
        cur = source.deps.get("curation")
        trains.append((ImageSet.load(paths[source.key]), source,
                       None if cur is None else json.loads(paths[cur.key].read_text())))
    return trains, [ImageSet.load(paths[sample.key]) for _, sample, _ in stages], plan


def _keys(s: ImageSet) -> list[bytes]:
    return [s.images[i].tobytes() + f"|{s.labels[i]}|{s.generation[i]}|{s.seed[i]}".encode() for i in range(len(s))]


def test_watermark_under_mix_draws_the_set_from_the_survivors(tmp_path, digits):
    trains, outputs, _ = _chain(tmp_path, digits, "loop.scenario=mix", "loop.real_fraction=0.4",
                                "loop.curation.kind=watermark", "loop.curation.recall=0.5",
                                "loop.curation.false_positive=0.3")
    real = digits[0]
    assert trains[0][2] is None  # generation 0: real data, uncurated
    for g in (1, 2):
        train, _, cur = trains[g]
        removed_real = set(cur["removed"]["real"])
        removed_gen = set(cur["removed"][f"out{g - 1}"])
        # nothing removed reaches the training set
        assert not set(_keys(train)) & {_keys(real)[i] for i in removed_real}
        assert not set(_keys(train)) & {_keys(outputs[g - 1])[i] for i in removed_gen}
        # mix: round(0.4 * 30) = 12 real survivors; 18 generated, or all that survived
        gens = dict(zip(*np.unique(train.generation, return_counts=True)))
        assert gens[0] == 12 and gens[g] == min(18, N - len(removed_gen))
        # the counts in results come from provenance and agree with the decisions
        s = cur["stats"]
        assert s["curation_candidates"] == len(real) + N
        assert s["curation_removed_real"] == len(removed_real) and s[f"curation_removed_gen{g - 1}"] == len(removed_gen)
        assert s["curation_fpr"] == len(removed_real) / len(real) and s["curation_recall"] == len(removed_gen) / N
    # a watermark's verdict is fixed per image: the real candidates (the same images in
    # both generations) are judged alike, and some were removed, so this is no accident
    assert trains[1][2]["removed"]["real"] == trains[2][2]["removed"]["real"] != []


def test_watermark_under_replace_trains_on_the_survivors_of_the_previous_output(tmp_path, digits):
    # recall 0.1: with 3 images a class, recall 0.2 empties a class with probability ~15%
    trains, outputs, _ = _chain(tmp_path, digits, "loop.curation.kind=watermark", "loop.curation.recall=0.1")
    for g in (1, 2):
        train, stage, cur = trains[g]
        assert stage.kind == "assemble" and "real" not in stage.deps["curation"].deps  # no real candidates
        kept = np.setdiff1d(np.arange(N), cur["removed"][f"out{g - 1}"])
        assert sorted(_keys(train)) == sorted(_keys(outputs[g - 1].subset(kept)))
        assert "curation_fpr" not in cur["stats"]


def test_reward_samples_k_times_and_keeps_one_per_group(tmp_path, digits):
    trains, outputs, _ = _chain(tmp_path, digits, "loop.curation.kind=reward", "loop.curation.choices=3")
    assert [len(o) for o in outputs] == [3 * N] * 3
    for g in (1, 2):
        train, _, cur = trains[g]
        assert len(train) == N and train.class_counts().tolist() == [3] * 10  # 9 per class, 3 groups of 3
        assert set(_keys(train)) <= set(_keys(outputs[g - 1]))
        assert cur["stats"]["curation_recall"] == 2 / 3


def test_detector_holds_out_real_images_for_its_probe(tmp_path, digits):
    trains, _, plan = _chain(tmp_path, digits, "loop.scenario=accumulate", "loop.curation.kind=detector",
                             "loop.generations=2")
    real = digits[0]
    # generation 0 trains on the whole real split, as every variant's does
    assert trains[0][0].content_hash() == real.content_hash()
    probe = trains[1][1].deps["curation"].deps["probe"]
    loop_real = ImageSet.load(trains[1][1].deps["real"].artifact(tmp_path / "cache"))
    assert len(loop_real) == 90 and set(_keys(loop_real)) < set(_keys(real))  # 10% held out, per class
    # from generation 1 on, the real pool holds no held-out image
    assert not set(_keys(trains[1][0])) & (set(_keys(real)) - set(_keys(loop_real)))
    held_out = ImageSet.load(probe.deps["real"].artifact(tmp_path / "cache"))
    assert len(held_out) == 10 and not set(_keys(held_out)) & set(_keys(loop_real))
    # its generated images are a separate sample of generation 0's model, not O_0
    probe_sample = probe.deps["generated"]
    fit0, sample0, _ = plan.chains[("", 0.5, 0)][0]
    assert probe_sample.deps["model"] is fit0 and probe_sample.key != sample0.key
    # the classifier (the instrument) still trains on the whole real split
    assert plan.classifier.deps["train"].params["content_hash"] == real.content_hash()
    cur = trains[1][2]
    assert cur["stats"]["curation_candidates"] == 90 + N and "curation_detector_fpr" in cur["stats"]


# -- from the command line -------------------------------------------------------------

_TINY_ARGS = [a for s in TINY + ["loop.seeds=[0]", "loop.guidance=[1.0]", "generator.train_steps=2"]
              for a in ("--set", s)]


def test_results_rows_record_what_curation_removed(tmp_path):
    args = ["demo", "--out", str(tmp_path), *_TINY_ARGS, "--set", "loop.samples_per_generation=100",
            "--set", "loop.scenario=mix", "--set", "loop.curation.kind=watermark",
            "--set", "loop.curation.recall=0.5", "--set", "loop.curation.false_positive=0.1"]
    assert cli.main(args) == 0
    with open(tmp_path / "results.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["cell"] != "reference"]
    assert {r["curation"] for r in rows} == {"watermark"}
    got = {(r["generation"], r["metric"]): float(r["value"]) for r in rows if r["metric"].startswith("curation_")}
    assert not [k for k in got if k[0] == "0"]  # generation 0 is not curated
    n_real = got[("1", "curation_candidates")] - 100
    assert got[("1", "curation_removed")] == got[("1", "curation_removed_real")] + got[("1", "curation_removed_gen0")]
    assert got[("1", "curation_recall")] == got[("1", "curation_removed_gen0")] / 100
    assert got[("1", "curation_fpr")] == got[("1", "curation_removed_real")] / n_real
    assert abs(got[("1", "curation_fpr")] - 0.1) < 4 * math.sqrt(0.1 * 0.9 / n_real)


@pytest.mark.parametrize("settings, fragment", [
    (["loop.curation.recall=1.5"], "loop.curation.recall"),
    (["loop.curation.recall=-0.1"], "loop.curation.recall"),
    (["loop.curation.false_positive=2"], "loop.curation.false_positive"),
    (["loop.curation.choices=0"], "loop.curation.choices"),
    (["loop.curation.threshold=0"], "loop.curation.threshold"),
    (["loop.curation.threshold=1"], "loop.curation.threshold"),
    (["loop.curation.kind=sieve"], "loop.curation.kind"),
    # certain to empty a class: recall 1 removes every generated image, and replace has no real ones
    (["loop.curation.kind=watermark", "loop.curation.recall=1"], "left empty"),
    # mix keeps round(0.02 x 100) = 2 real images: at most 2 of the 10 classes
    (["loop.curation.kind=watermark", "loop.curation.recall=1", "loop.scenario=mix", "loop.real_fraction=0.02"],
     "left empty"),
    (["loop.curation.kind=watermark", "loop.curation.recall=1", "loop.curation.false_positive=1",
      "loop.scenario=accumulate"], "false_positive 1"),
    # Ferbach et al.'s rewards (tests/test_reward_curation.py)
    (["loop.curation.kind=reward", "loop.curation.reward=beauty"], "loop.curation.reward"),
    (["loop.curation.kind=reward", "loop.curation.reward=class"], "target_class"),
    (["loop.curation.kind=reward", "loop.curation.target_class='0'"], "reward: class only"),
    (["loop.curation.kind=watermark", "loop.curation.reward=confidence"], "applies to kind reward"),
    (["loop.curation.kind=reward", "loop.curation.reward=class", "loop.curation.target_class=cat"],
     "not a class of the data"),
])
def test_bad_curation_settings_are_one_error_line_before_anything_is_written(tmp_path, capsys, settings, fragment):
    out = tmp_path / "run"
    extra = [a for s in ["loop.samples_per_generation=100", *settings] for a in ("--set", s)]
    assert cli.main(["demo", "--out", str(out), *_TINY_ARGS, *extra]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0], err
    assert not out.exists()


def test_a_class_emptied_by_chance_is_an_error_naming_the_generation_and_class(tmp_path, capsys):
    # 20 images, two per class, each removed with probability 0.5: about 10 stay, enough on
    # average (the up-front check passes), but this seed's draw empties a class
    out = tmp_path / "run"
    code = cli.main(["demo", "--out", str(out), *_TINY_ARGS, "--set", "loop.samples_per_generation=20",
                     "--set", "loop.curation.kind=watermark", "--set", "loop.curation.recall=0.5"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and not line.startswith("ouroboros")]
    err = [line for line in err if line.startswith("error")]
    assert code == 2 and len(err) == 1, err
    assert "generation 1" in err[0] and "no images of class" in err[0] and "recall" in err[0]


def test_sweep_series_gives_the_t_interval_over_seeds_at_the_last_generation(tmp_path):
    from ouroboros.report.plots import plot_sweep, sweep_series

    def row(recall, seed, gen, value, metric="accuracy"):
        return {"study": "s", "cell": "guidance=1", "seed": str(seed), "generation": str(gen), "metric": metric,
                "value": str(value), "guidance": "1.0", "curation.recall": str(recall)}

    rows = [row(0.5, s, 2, v) for s, v in enumerate([0.2, 0.4, 0.9])] + [row(0.5, 0, 1, 7.0)]  # gen 1: not last
    rows += [row(0.0, s, 2, 0.1 * s) for s in range(3)] + [row(0.5, 0, 2, 3.0, "fid")]
    rows += [{**row(0.9, 0, 2, 5.0), "curation.recall": ""}]  # a run without the setting: left out
    ((w, points),) = sweep_series(rows, "curation.recall", "accuracy").items()
    assert w == "1.0" and [x for x, _ in points] == [0.0, 0.5]
    mean, half = points[1][1].mean, points[1][1].half
    # mean 0.5, sample sd sqrt(0.13), t_{0.975, 2} = 4.3027: half-width 4.3027 sqrt(0.13 / 3)
    assert mean == pytest.approx(0.5) and half == pytest.approx(4.302653 * math.sqrt(0.13 / 3), rel=1e-5)
    assert sweep_series(rows, "curation.recall", "accuracy", generation=1)["1.0"][0][1].mean == 7.0
    assert plot_sweep(rows, "curation.recall", "accuracy", tmp_path / "sweep.png").stat().st_size > 1000


def test_watermark_under_fresh_screens_exactly_the_new_real_images(tmp_path, digits):
    trains, _, _ = _chain(tmp_path, digits, "loop.scenario=fresh", "loop.real_fraction=0.5",
                          "loop.curation.kind=watermark", "loop.curation.recall=0.2",
                          "loop.curation.false_positive=0.5")
    seen = set(_keys(trains[0][0]))
    for g in (1, 2):
        train, stage, cur = trains[g]
        new = stage.deps["curation"].params["real"]  # the 15 new reservoir images of generation g
        assert len(new) == 15 and not {_keys(digits[0])[i] for i in new} & seen
        reals = train.subset(np.flatnonzero(train.generation == 0))
        kept = sorted(set(new) - set(cur["removed"]["real"]))
        assert sorted(_keys(reals)) == sorted(_keys(digits[0].subset(kept)))  # removed ones are not replaced
        assert cur["stats"]["curation_candidates"] == 15 + N
        seen |= {_keys(digits[0])[i] for i in new}
