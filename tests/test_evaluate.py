"""How the loop measures: scored against the real test split, a held-out loss
per generation, instruments redrawn per seed, and no hidden confounds between the
variants of a grid (a shared generation 0, matched unfiltered controls for curated
variants, watermark and detector verdicts fixed per image, N = |R|)."""

import json
import types

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

from ouroboros.config import load_config
from ouroboros.data.imageset import ImageSet
from ouroboros.errors import UserError
from ouroboros.generators.diffusion import DiffusionConfig, DiffusionGenerator, FittedDiffusion, heldout_loss
from ouroboros.generators.gaussian import GaussianConfig, GaussianGenerator, GMMConfig, GMMGenerator, heldout_nll
from ouroboros.runner import Runner
from ouroboros.studies import loop, scenarios

TINY = ["loop.generations=3", "loop.guidance=[0.5]", "loop.seeds=[0]", "loop.samples_per_generation=30",
        "generator.hidden=16", "generator.depth=1", "generator.train_steps=2", "generator.batch_size=16",
        "generator.sample_steps=2", "generator.sampler=ddim", "classifier.epochs=1", "executor.workers=1"]


def _config(*extra):
    return load_config(None, [*TINY, *extra], base={"name": "eval"})


# -- the held-out loss --------------------------------------------------------------------


def _nll_by_scipy(fitted, images) -> float:
    x = images.to_float().reshape(len(images), -1).astype(np.float64)
    if fitted.pca is not None:
        x = (x - fitted.pca[0]) @ fitted.pca[1].T
    logp = [logsumexp([np.log(w) + stats.multivariate_normal.logpdf(xi, m, c)
                       for w, m, c in zip(fitted.weights[y], fitted.means[y], fitted.covariances[y])])
            for xi, y in zip(x, images.labels)]
    return -np.mean(logp) / x.shape[1]


@pytest.mark.parametrize("generator", [
    GaussianGenerator(GaussianConfig(ridge=1e-2)),
    GaussianGenerator(GaussianConfig(space="pca", components=8)),
    GMMGenerator(GMMConfig(space="pca", components=6, mixture_components=2)),
], ids=["gaussian-pixels", "gaussian-pca", "gmm-pca"])
def test_the_gaussian_families_heldout_loss_is_the_exact_nll_per_dimension(digits, generator):
    train, test = digits
    fitted = generator.fit(train, seed=0, reference=train)
    assert heldout_nll(fitted, test) == pytest.approx(_nll_by_scipy(fitted, test), rel=1e-9)


@pytest.fixture(scope="module")
def diffusion_models(digits):
    cfg = dict(hidden=32, depth=1, batch_size=32, device="cpu", lr=3e-3, warmup_steps=10)
    return {steps: DiffusionGenerator(DiffusionConfig(train_steps=steps, **cfg)).fit(digits[0], seed=0)
            for steps in (1, 300)}


def test_the_diffusion_heldout_loss_is_fixed_noise_and_ranks_a_worse_model_worse(diffusion_models, digits, tmp_path,
                                                                                 monkeypatch):
    from ouroboros.generators import diffusion

    test = digits[1]
    trained, untrained = diffusion_models[300], diffusion_models[1]
    value = heldout_loss(trained, test)
    assert heldout_loss(trained, test) == value  # the noise and timesteps are fixed
    trained.save(tmp_path / "model")
    assert heldout_loss(FittedDiffusion.load(tmp_path / "model"), test) == value  # saved and read back
    assert heldout_loss(untrained, test) > 1.5 * value  # a model trained 1 step predicts the noise worse
    assert 0 < value < 1  # noise prediction beats predicting 0 (whose MSE is E[eps^2] = 1)
    assert heldout_loss(trained, digits[0].subset(np.arange(50))) != value  # other images, another value
    monkeypatch.setattr(diffusion, "HELDOUT_SEED", 1)  # it is the fixed seed that fixes the noise
    assert heldout_loss(trained, test) != value


def test_each_generation_gets_a_test_loss_on_the_test_split_per_family_and_none_without_one(digits, monkeypatch):
    import dataclasses

    from ouroboros.generators import base

    # a family without a held-out loss, registered for this test only
    lossless = dataclasses.replace(base.get_family("gaussian"), name="lossless", heldout_loss=None)
    monkeypatch.setitem(base._FAMILIES, "lossless", lossless)
    pool = "loop.generators=[{family: diffusion, share: 0.5}, {family: gaussian, share: 0.3}, " \
           "{family: lossless, share: 0.2}]"
    plan = loop.plan(_config(pool), None, digits)
    ((key, heldout),) = plan.heldout.items()
    test = plan.instruments[0].test_stage
    for g, (parts, fams) in enumerate(zip(heldout, plan.families[key])):
        assert set(parts) == {"diffusion", "gaussian"} and set(fams) == {"diffusion", "gaussian", "lossless"}
        for name, stage in parts.items():
            assert stage.deps == {"model": fams[name][0], "images": test}
    # the same stage parameters for every generation and chain: no seed, nothing per generation
    assert len({json.dumps(st.params, sort_keys=True) for parts in heldout for st in parts.values()}) == 2


# -- what the loop scores against, and which instruments ------------------------------


def test_every_generation_is_scored_against_the_test_split_unless_evaluate_reference_is_train(digits):
    for reference, scored, other in (("test", 1, 0), ("train", 0, 1)):
        plan = loop.plan(_config(f"evaluate.reference={reference}"), None, digits)
        inst = plan.instruments[0]
        split = [inst.train_stage, inst.test_stage]
        for _, _, ev in plan.chains[("", 0.5, 0)]:
            assert ev.deps["real"].key == split[scored].key
        assert inst.yardstick.deps["real"].key == split[scored].key  # the yardstick: the other split
        assert inst.yardstick.deps["images"].key == split[other].key


def test_each_seed_redraws_the_split_and_the_classifier_unless_the_instruments_are_fixed():
    config = _config("loop.seeds=[0,1]")
    plan = loop.plan(config, None)
    a, b = plan.instruments[0], plan.instruments[1]
    assert a.train.content_hash() != b.train.content_hash() and a.test.content_hash() != b.test.content_hash()
    assert len(a.train) == len(b.train) and len(a.train) + len(a.test) == 1797  # a split of all the digits
    assert a.classifier.params["seed"] != b.classifier.params["seed"]
    for s, inst in ((0, a), (1, b)):
        for fit, _, ev in plan.chains[("", 0.5, s)]:
            assert ev.deps["classifier"] is inst.classifier and ev.deps["real"] is inst.test_stage
        assert plan.chains[("", 0.5, s)][0][0].deps["train"] is inst.train_stage
    fixed = loop.plan(_config("loop.seeds=[0,1]", "evaluate.instruments=fixed"), None)
    (inst,) = fixed.instruments.values()
    assert inst.classifier.params["seed"] == 0
    assert inst.train.content_hash() == loop.load_splits(config)[0].content_hash()  # data.split_seed's split
    assert {ev.deps["classifier"].key for chain in fixed.chains.values() for _, _, ev in chain} == \
        {inst.classifier.key}


def test_a_given_test_set_is_kept_per_seed_and_only_the_classifier_is_redrawn(digits):
    plan = loop.plan(_config("loop.seeds=[0,1]"), None, digits)
    a, b = plan.instruments[0], plan.instruments[1]
    assert a.train_stage.key == b.train_stage.key and a.test_stage.key == b.test_stage.key
    assert a.classifier.key != b.classifier.key and a.yardstick.key != b.yardstick.key


@pytest.mark.parametrize("setting, fragment", [("evaluate.reference=val", "evaluate.reference must be one of"),
                                               ("evaluate.instruments=shared", "evaluate.instruments must be"),
                                               ("evaluate.scorer=x", "unknown key 'evaluate.scorer'")])
def test_bad_evaluate_settings_name_the_key(setting, fragment):
    with pytest.raises(UserError, match=fragment):
        _config(setting)


# -- no hidden confounds ---------------------------------------------------------------------


# (low recalls where the set has few images a class: a chance-emptied class stops the run)
GRID = ("loop.variants=[{scenario: replace}, {name: wm, scenario: accumulate-subsample, "
        "curation: {kind: watermark, recall: 0.5, false_positive: 0.2}}, "
        "{name: det, scenario: accumulate-subsample, curation: {kind: detector}}, "
        "{name: rw, scenario: replace, curation: {kind: reward, choices: 2}}, "
        "{name: mixwm, scenario: mix, real_fraction: 0.4, curation: {kind: watermark, recall: 0.3, "
        "false_positive: 0.3}}, "
        "{name: freshwm, scenario: fresh, real_fraction: 0.2, curation: {kind: watermark, recall: 0.1, "
        "false_positive: 0.3}}, "
        "{name: gauss, scenario: replace, generators: [{family: gaussian}]}]")


def test_every_variant_shares_generation_0_but_those_the_report_names(digits):
    from ouroboros.studies.loop_report import _generation0

    config = _config(GRID)
    plan = loop.plan(config, None, digits)
    own = loop.distinct_generation0(config)
    assert set(own) == {"freshwm", "freshwm control"}
    by_pool: dict = {}
    for (variant, _, _), chain in plan.chains.items():
        pool = repr(dict(config.loop.cells())[variant].generators)
        by_pool.setdefault((pool, variant in own), set()).add(chain[0][0].key)
    assert all(len(keys) == 1 for keys in by_pool.values())  # one generation-0 model per pool and start
    assert by_pool[(repr(None), True)] != by_pool[(repr(None), False)]
    (text,) = _generation0(types.SimpleNamespace(config=config))
    assert "freshwm (scenario fresh" in text.text and "freshwm control" in text.text and " wm " not in text.text


@pytest.fixture(scope="module")
def grid(tmp_path_factory, digits):
    """The tiny grid's training sets, outputs and curation decisions, run (no evaluation)."""
    runner = Runner(tmp_path_factory.mktemp("grid"), workers=1, progress=False)
    plan = loop.plan(_config(GRID), runner.cache, digits)
    paths = runner.run([st for chain in plan.chains.values() for fit, sample, _ in chain
                        for st in (sample, fit.deps["train"])])
    out = {}
    for (variant, _, _), chain in plan.chains.items():
        trains = [fit.deps["train"] for fit, _, _ in chain]
        out[variant] = types.SimpleNamespace(
            stages=trains, sets=[ImageSet.load(paths[st.key]) for st in trains],
            outputs=[ImageSet.load(paths[sample.key]) for _, sample, _ in chain],
            curated=[None if "curation" not in st.deps else json.loads(paths[st.deps["curation"].key].read_text())
                     for st in trains],
            real=None if not any("real" in st.deps for st in trains[1:]) else
            ImageSet.load(paths[trains[1].deps["real"].key]))
    return out


def _rows(s: ImageSet) -> list[bytes]:
    return [s.images[i].tobytes() + f"|{s.labels[i]}|{s.generation[i]}".encode() for i in range(len(s))]


@pytest.mark.parametrize("name", ["wm", "det", "rw", "mixwm", "freshwm"])
def test_each_curated_variant_has_an_unfiltered_control_at_the_same_size_and_real_count(grid, name):
    curated, control = grid[name], grid[f"{name} control"]
    assert control.stages[0].key == curated.stages[0].key  # the same generation 0
    assert control.outputs[0].content_hash() == curated.outputs[0].content_hash()
    for g in (1, 2):
        a, b = curated.sets[g], control.sets[g]
        assert len(b) == len(a) and (b.generation == 0).sum() == (a.generation == 0).sum()
        assert "curation" not in control.stages[g].deps  # no filter
        generated = b.subset(np.flatnonzero(b.generation > 0))  # from its own chain's outputs
        pool = _rows(ImageSet.concat(control.outputs[:g]))
        assert set(_rows(generated)) <= set(pool) and len(set(_rows(generated))) == len(generated)
        if control.real is not None:  # the real part: real images of the same real pool
            reals = b.subset(np.flatnonzero(b.generation == 0))
            assert set(_rows(reals)) <= set(_rows(control.real))
    assert any((curated.sets[g].generation == 0).sum() > 0 for g in (1, 2)) or name in ("rw",)


def test_a_controls_real_part_follows_its_scenario(grid):
    """mix: the first real images of the chain's real order (the same each generation);
    fresh: the first of generation g's new reservoir images."""
    from ouroboros.studies.common import derived_seed

    for name in ("mixwm control", "freshwm control"):
        c = grid[name]
        order = scenarios.real_order(len(c.real), derived_seed(0, "real order"))
        for g in (1, 2):
            k = int((c.sets[g].generation == 0).sum())
            start = 0 if name.startswith("mix") else 30 + (g - 1) * 6
            expected = c.real.subset(np.sort(order[start: start + k]))
            assert sorted(_rows(c.sets[g].subset(np.flatnonzero(c.sets[g].generation == 0)))) == \
                sorted(_rows(expected))


@pytest.mark.parametrize("name", ["wm", "det"])
def test_a_filters_verdict_on_an_image_is_the_same_in_every_generation(grid, name):
    """Under accumulate-subsample O_0 and R are candidates of generations 1 and 2: each image
    is judged alike both times (a watermark's uniform number and the probe are per image)."""
    first, second = grid[name].curated[1]["removed"], grid[name].curated[2]["removed"]
    assert first["out0"] == second["out0"] and first.get("real") == second.get("real")
    assert first["out0"] or first.get("real")  # something was removed: the equality is not empty


def test_the_detector_variant_trains_generation_0_on_the_whole_real_split(grid, digits):
    assert grid["det"].sets[0].content_hash() == digits[0].content_hash()
    assert len(grid["det"].real) == 90  # from generation 1 on, the probe's 10 are out of the pool


# -- N = |R| --------------------------------------------------------------------------------


def test_n_defaults_to_the_real_split_and_under_fresh_to_the_largest_its_reservoir_lasts(digits):
    plan = loop.plan(_config("loop.samples_per_generation=null",
                             "loop.variants=[{scenario: replace}, {scenario: fresh, real_fraction: 0.2}]"),
                     None, digits)
    assert plan.chains[("replace", 0.5, 0)][0][1].params["n"] == 100
    # fresh, G = 3, rho = 0.2, |R| = 100: 72 + 2 x round(14.4) = 100, 73 + 2 x 15 = 103
    assert plan.chains[("fresh rho=0.2", 0.5, 0)][0][1].params["n"] == 72
    for n_real, g, rho in [(1258, 9, 0.2), (1258, 6, 0.2), (100, 3, 0.2), (50, 5, 0.5), (7, 2, 1.0), (1000, 1, 0.3)]:
        n = scenarios.fresh_size(n_real, g, rho)
        assert scenarios.reals_needed("fresh", n, g, rho) <= n_real
        assert all(scenarios.reals_needed("fresh", m, g, rho) > n_real for m in range(n + 1, n_real + 1))
    assert scenarios.fresh_size(1258, 6, 0.2) == 628  # the scenario grid's, as its comment says


def test_the_scenario_grid_uses_n_equal_to_the_real_split_and_controls():
    from ouroboros.config import shipped_configs

    config = load_config("scenarios-digits")
    assert all(lc.samples_per_generation is None for _, lc in config.loop.cells())
    assert len(config.loop.controls()) == sum(lc.curation.kind != "none" for _, lc in config.loop.cells())
    assert "N = 628" in shipped_configs()["scenarios-digits"][0].read_text()
