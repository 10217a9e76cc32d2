"""Labels that can drift (`loop.labels: sampled`) and imbalanced real data
(`data.class_weights`, `data.long_tail`): the label draw, per-class subsampling, the
class_share/<class> and class_entropy rows, shrinking and absent classes in the Gaussian
families, uniform draws from the scenarios' pools, the plot, and bad input."""

import math

import numpy as np
import pytest

from ouroboros import cli, stages
from ouroboros.config import load_config
from ouroboros.config_loop_extra import class_weights
from ouroboros.data.class_balance import class_shares, subsample, subsample_counts
from ouroboros.data.imageset import ImageSet
from ouroboros.generators.base import load_fitted, sampled_labels
from ouroboros.report.page import Plot
from ouroboros.runner import Runner
from ouroboros.studies import loop, loop_report
from ouroboros.studies.loop_data import imbalanced, load_splits
from ouroboros.studies.scenarios import _draw

GMM = "loop.generators=[{family: gmm, settings: {space: pca, components: 6, mixture_components: 2}}]"


def _config(*extra):
    return load_config(None, ["loop.generations=3", "loop.guidance=[0.0]", "loop.seeds=[0]",
                              "loop.samples_per_generation=100", "classifier.epochs=1", "executor.workers=1", *extra],
                       base={"name": "drift"})


# -- the label draw --------------------------------------------------------------------------


def test_sampled_labels_are_a_seeded_multinomial_that_never_draws_an_absent_class():
    counts = [50, 30, 20, 0]
    draws = np.stack([np.bincount(sampled_labels(counts, 100, seed), minlength=4) for seed in range(2000)])
    assert (draws.sum(axis=1) == 100).all() and (draws[:, 3] == 0).all()
    p = np.array([0.5, 0.3, 0.2])
    se = np.sqrt(100 * p * (1 - p) / len(draws))
    assert (np.abs(draws[:, :3].mean(axis=0) - 100 * p) < 4 * se).all()  # E = n p
    assert np.allclose(draws[:, :3].var(axis=0), 100 * p * (1 - p), rtol=0.15)  # multinomial, not rounded shares
    assert np.array_equal(sampled_labels(counts, 100, 7), sampled_labels(counts, 100, 7))


def test_uniform_draws_keep_a_pools_class_proportions_where_balanced_ones_restore_balance(toy_set):
    pool = toy_set.subset(np.r_[np.flatnonzero(toy_set.labels == 0), np.flatnonzero(toy_set.labels == 1)[:2]])
    # 10 images of class 0, 2 of class 1 (12 in all); draw 6
    uniform = np.mean([(_draw(pool, 6, np.random.default_rng(s), balanced=False).labels == 1).sum()
                       for s in range(3000)])
    balanced = {(_draw(pool, 6, np.random.default_rng(s)).labels == 1).sum() for s in range(50)}
    assert abs(uniform - 6 * 2 / 12) < 0.05  # hypergeometric mean 1; sd of the mean 0.013
    assert balanced == {2}  # 3 a class, capped by the 2 there are


# -- imbalanced real data ----------------------------------------------------------------------


def test_subsample_counts_keep_the_largest_subset_with_the_proportions():
    ratio10 = [10 ** (-c / 4) for c in range(5)]
    assert subsample_counts([100] * 5, ratio10).tolist() == [100, 56, 32, 18, 10]
    assert subsample_counts([50, 100, 80], [1, 1, 1]).tolist() == [50, 50, 50]
    assert subsample_counts([50, 100], [1, 4]).tolist() == [25, 100]  # class 1 runs out first


def test_class_weights_resolve_lists_mappings_and_the_long_tail_profile():
    names = ("a", "b", "c")
    data = load_config(None, ["data.class_weights=[1, 0.5, 2]"]).data
    assert class_weights(data, names) == [1.0, 0.5, 2.0]
    data = load_config(None, ["data.class_weights={c: 0.25}"]).data
    assert class_weights(data, names) == [1.0, 1.0, 0.25]  # unnamed classes weigh 1
    data = load_config(None, ["data.class_weights={0: 0.5}"]).data  # a YAML number names class "0"
    assert class_weights(data, ("0", "1")) == [0.5, 1.0]
    data = load_config(None, ["data.long_tail={ratio: 9}"]).data
    assert np.allclose(class_weights(data, names), [1, 1 / 3, 1 / 9])
    assert class_weights(load_config(None, []).data, names) is None


def test_the_real_training_split_is_subsampled_per_seed_and_the_test_split_kept():
    config = load_config(None, ["data.long_tail={ratio: 10}"])
    plain, plain_test = load_splits(load_config(None, []), 0)
    train, test = load_splits(config, 0)
    assert test.content_hash() == plain_test.content_hash()
    counts = train.class_counts()
    assert counts[0] == plain.class_counts()[0] and abs(counts[0] / counts[-1] - 10) < 1
    assert np.all(np.diff(counts) <= 0)
    # a subset of the plain split, the same for the same seed, another for another seed
    key = lambda s: {im.tobytes() for im in s.images}  # noqa: E731
    assert key(train) <= key(plain)
    assert imbalanced(config, plain, 0).content_hash() == train.content_hash()
    assert load_splits(config, 1)[0].content_hash() != train.content_hash()


def test_subsample_refuses_to_empty_a_class(toy_set):
    with pytest.raises(Exception, match="leaves class 'c' with no image"):
        subsample(toy_set, [1.0, 1.0, 1e-6], seed=0)


def test_class_shares_and_their_entropy(toy_set):
    shares = class_shares(toy_set.subset(np.r_[0:4, 10:12]))  # toy labels cycle 0, 1, 2
    assert shares == pytest.approx({"class_share/a": 2 / 6, "class_share/b": 2 / 6, "class_share/c": 2 / 6,
                                    "class_entropy": math.log(3)})
    one = class_shares(toy_set.subset(np.flatnonzero(toy_set.labels == 1)))
    assert one["class_share/a"] == 0.0 and one["class_share/b"] == 1.0 and one["class_entropy"] == 0.0


# -- shrinking and absent classes ----------------------------------------------------------------


@pytest.mark.parametrize("family, settings", [("gaussian", {"space": "pca", "components": 4}),
                                              ("gmm", {"space": "pca", "components": 4, "mixture_components": 2})])
def test_a_class_that_died_out_is_never_sampled_again(tmp_path, digits, family, settings):
    """A training set without class 2 and with one image of class 1 (what sampled labels
    can leave): the Gaussian families fit it (class 1: one Gaussian at that image; class 2:
    absent), and the sample stage's labels, drawn from its proportions, never ask for 2."""
    train = digits[0]
    keep = np.flatnonzero(train.labels != 2)
    keep = keep[(train.labels[keep] != 1) | (keep == np.flatnonzero(train.labels == 1)[0])]
    small = train.subset(keep)
    small.save(tmp_path / "train.npz")
    stages.fit_stage({"config": settings, "seed": 0, "family": family, "labels": "sampled"},
                     {"train": tmp_path / "train.npz"}, tmp_path / "model")
    stages.sample_stage({"n": 500, "seed": 1, "family": family, "temperature": 1.0, "labels": "sampled",
                         "label_seed": 3}, {"model": tmp_path / "model", "train": tmp_path / "train.npz"},
                        tmp_path / "out.npz")
    out = ImageSet.load(tmp_path / "out.npz")
    counts = out.class_counts()
    assert counts[2] == 0 and counts.sum() == 500
    assert np.array_equal(out.labels, sampled_labels(small.class_counts(), 500, 3))  # the stage's draw, exactly
    one = out.images[out.labels == 1].astype(float)
    assert len(one) > 1 and np.ptp(one, axis=0).max() <= 2  # one point (its image, in the PCA space), ridge-wide
    model = load_fitted(tmp_path / "model")[1]
    with pytest.raises(Exception, match="class '2' is absent"):
        model.sample(3, np.array([2, 2, 2]))
    from ouroboros.generators.gaussian import heldout_nll

    test = digits[1]
    assert np.isfinite(heldout_nll(model, test))  # the absent class's test images are left out


def test_without_sampled_labels_a_class_too_small_is_still_refused(tmp_path, digits):
    train = digits[0].subset(np.r_[np.flatnonzero(digits[0].labels != 1), np.flatnonzero(digits[0].labels == 1)[:1]])
    train.save(tmp_path / "train.npz")
    with pytest.raises(Exception, match="at least 2 training images per class"):
        stages.fit_stage({"config": {}, "seed": 0, "family": "gaussian"}, {"train": tmp_path / "train.npz"},
                         tmp_path / "model")


# -- the loop ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def drifting(tmp_path_factory, digits):
    """A gmm chain with labels sampled on long-tailed digits (ratio 5 over 10 per class):
    three generations of replace, 100 images each, through loop.plan, the Runner and _rows."""
    config = _config(GMM, "loop.labels=sampled", "data.long_tail={ratio: 5}")
    train = imbalanced(config, digits[0], 0)
    runner = Runner(tmp_path_factory.mktemp("drift"), workers=1, progress=False)
    plan = loop.plan(config, runner.cache, (train, digits[1]))
    paths = runner.run(plan.targets())
    return config, plan, paths, loop._rows(config, plan, paths), train


def test_each_generation_samples_labels_from_its_training_sets_proportions(drifting):
    _, plan, paths, _, train = drifting
    ((_, chain),) = plan.chains.items()
    assert train.class_counts().tolist() == [10, 8, 7, 6, 5, 4, 3, 3, 2, 2]
    for g, (fit, sample, _) in enumerate(chain):
        assert sample.params["labels"] == "sampled" and sample.deps["train"] is fit.deps["train"]
        own = ImageSet.load(paths[fit.deps["train"].key])
        out = ImageSet.load(paths[sample.key])
        assert np.array_equal(out.labels, sampled_labels(own.class_counts(), 100, sample.params["label_seed"]))
        if g > 0:  # replace: generation g trains on generation g - 1's output, proportions and all
            assert own.content_hash() == ImageSet.load(paths[chain[g - 1][1].key]).content_hash()
    first = ImageSet.load(paths[chain[0][1].key]).class_counts()
    assert first[0] > first[-1]  # the real data's long tail is carried into the samples, not balanced away


def test_the_rows_record_each_training_sets_class_shares_and_entropy(drifting):
    _, plan, paths, rows, train = drifting
    ((_, chain),) = plan.chains.items()
    for g, (fit, _, _) in enumerate(chain):
        got = {r["metric"]: r["value"] for r in rows if r["generation"] == g and r["metric"].startswith("class_")}
        assert got == pytest.approx(class_shares(ImageSet.load(paths[fit.deps["train"].key])))
        assert sum(v for m, v in got.items() if m.startswith("class_share/")) == pytest.approx(1.0)
    gen0 = {r["metric"]: r["value"] for r in rows if r["generation"] == 0}
    assert gen0["class_share/0"] == pytest.approx(10 / 50) and gen0["class_entropy"] < math.log(10)


def test_the_report_plots_class_shares_when_they_are_not_balanced(drifting, tmp_path):
    *_, rows, _ = drifting
    plots = {p.name: p for p in loop_report._plots(rows).items if isinstance(p, Plot)}
    assert {"class_shares", "class_entropy"} <= set(plots)
    plots["class_shares"].draw(tmp_path / "shares.png")
    assert (tmp_path / "shares.png").is_file()
    balanced = [{**r, "value": 0.1} if r["metric"].startswith("class_share/") else r for r in rows]
    assert "class_shares" not in {p.name for p in loop_report._plots(balanced).items if isinstance(p, Plot)}


def test_sampled_labels_change_sample_and_assemble_keys_not_generation_0s_fit(digits):
    pool = "loop.scenario=mix"
    balanced = loop.plan(_config(GMM, pool), None, digits)
    sampled = loop.plan(_config(GMM, pool, "loop.labels=sampled"), None, digits)
    ((_, a),), ((_, b),) = balanced.chains.items(), sampled.chains.items()
    assert a[0][0].key == b[0][0].key  # generation 0's model: the real data, fitted alike
    assert a[0][1].key != b[0][1].key and a[1][0].key != b[1][0].key
    assert b[1][0].deps["train"].params["labels"] == "sampled" and "labels" not in a[1][0].deps["train"].params
    assert b[1][0].params["labels"] == "sampled" and "labels" not in a[1][0].params


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("sets, message", [
    (["data.class_weights=[1, 2, 3]"], "data.class_weights has 3 weights, but the data has 10 classes"),
    (["data.class_weights={x: 2}"], "data.class_weights names class 'x', which the data does not have"),
    (["data.class_weights=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0]"], "data.class_weights[9] must lie in (0, 1e+06]"),
    (["data.class_weights={'3': -1}"], "data.class_weights['3'] must lie in (0, 1e+06]"),
    (["data.class_weights=[]"], "data.class_weights needs at least one value"),
    (["data.class_weights=[1, 1, 1, 1, 1, 1, 1, 1, 1, 1.0e-9]"], "data.class_weights leaves class '9' with no image"),
    (["data.long_tail={ratio: 0.5}"], "data.long_tail.ratio must lie in [1, 1e+06]"),
    (["data.long_tail={ratio: 10}", "data.class_weights=[1]"], "give one of them"),
    (["data.long_tail={ratio: 100}", "loop.generators=[{family: gaussian}]"],
     "the gaussian family needs at least 2 images per class, but the real training split has 1 of class '9'"),
    (["loop.labels=sampled", "generator.conditional=false", "loop.guidance=[0]"],
     "loop.labels is sampled, but the generator is unconditional"),
    (["loop.labels=drift"], "loop.labels must be one of balanced, sampled"),
])
def test_bad_class_settings_are_one_error_line_and_nothing_written(tmp_path, capsys, tripwire, sets, message):
    out = tmp_path / "run"
    code = cli.main(["demo", "--out", str(out), "--quiet", *sum((["--set", s] for s in sets), [])])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not out.exists()


def test_the_contamination_study_refuses_class_weights(tmp_path, capsys, tripwire):
    out = tmp_path / "run"
    code = cli.main(["run", "contamination-digits", "--out", str(out), "--quiet", "--set", "data.long_tail={ratio: 2}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["error: data.class_weights and data.long_tail apply to the loop study only; "
                                 "remove them"] and not out.exists()


def test_the_density_tails_of_a_model_that_lost_a_class(digits):
    """metrics.tails.mixture_tails against generation 0's model: a class the model lacks
    claims no component weight and leaves the masses of the others as they are."""
    from ouroboros.generators.base import get_family
    from ouroboros.metrics.tails import mixture_tails

    train = digits[0]
    settings = {"space": "pca", "components": 4, "mixture_components": 2}
    gmm = get_family("gmm")
    real = gmm.fit(train, settings, seed=0, reference=train)
    lost = gmm.fit(train.subset(np.flatnonzero(train.labels != 2)), settings, seed=0, reference=train,
                   small_classes=True)
    tails = mixture_tails(real, lost, draws=300)
    assert tails["component_weight/2/0"] == tails["component_weight/2/1"] == 0.0
    assert tails["component_weight/3/0"] + tails["component_weight/3/1"] == pytest.approx(1.0)
    assert 0 <= tails["tail_mass"] <= 1 and 0 <= tails["core_mass"] <= 1
