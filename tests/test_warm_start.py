"""Warm-started retraining (`loop.init: previous`, `loop.warm_steps`): generation g > 0
starts from generation g - 1's fitted model of its own chain and family; its fit stage's
key depends on that fit; families that cannot warm-start are refused before anything
is written."""

import numpy as np
import pytest
from safetensors.numpy import load_file
from sklearn.mixture import GaussianMixture

from ouroboros import cli
from ouroboros.config import load_config
from ouroboros.data.imageset import ImageSet
from ouroboros.generators.base import get_family, load_fitted
from ouroboros.runner import Runner
from ouroboros.studies import loop

N = 100  # samples per generation; the real split (conftest's digits) has 100 images
GMM = "loop.generators=[{family: gmm, settings: {space: pca, components: 6, mixture_components: 2}}]"
TINY_DIFFUSION = ["generator.train_steps=20", "generator.sample_steps=4", "generator.hidden=32",
                  "generator.warmup_steps=5"]


def _config(*extra):
    return load_config(None, ["loop.generations=3", "loop.guidance=[0.0]", "loop.seeds=[0]",
                              f"loop.samples_per_generation={N}", "executor.workers=1", *extra], base={"name": "warm"})


def _chain(config, digits, cache):
    ((_, chain),) = loop.plan(config, cache, digits).chains.items()
    return chain


def _weights(path):
    return load_file(str(path / "model.safetensors"))


def test_with_zero_warm_steps_a_diffusion_generation_is_its_predecessor(tmp_path, digits):
    """Through the plan, the fit stage and the family: generation 1's network is generation
    0's, tensor for tensor, when it trains 0 steps from it; with steps it moves off it."""
    runner = Runner(tmp_path, workers=1, progress=False)
    chain = _chain(_config("loop.generations=2", "loop.init=previous", "loop.warm_steps=0", *TINY_DIFFUSION),
                   digits, runner.cache)
    fit0, fit1 = chain[0][0], chain[1][0]
    assert fit1.deps["init"] is fit0 and fit1.params["init"] == "previous" and fit1.params["warm_steps"] == 0
    paths = runner.run([fit1])
    w0, w1 = _weights(paths[fit0.key]), _weights(paths[fit1.key])
    assert w0.keys() == w1.keys() and all(np.array_equal(w0[k], w1[k]) for k in w0)
    # a few steps from it: near it, much nearer than a model trained from scratch as long
    model0 = load_fitted(paths[fit0.key])[1]
    train1 = ImageSet.load(paths[fit1.deps["train"].key])
    family = get_family("diffusion")
    settings = fit1.params["config"]
    warm = family.fit(train1, settings, seed=1, init=model0, steps=5).model.state_dict()
    cold = family.fit(train1, {**settings, "train_steps": 5}, seed=1).model.state_dict()
    dist = lambda a: sum(float(((a[k].numpy() - w0[k]) ** 2).sum()) for k in w0)  # noqa: E731
    assert 0 < dist(warm) < 0.1 * dist(cold)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_a_warm_started_gmm_runs_em_from_the_previous_components(tmp_path, digits):
    """warm_steps 0: the previous components themselves; 2: scikit-learn's EM started from
    them for 2 iterations (the reference), in every class."""
    runner = Runner(tmp_path, workers=1, progress=False)
    for steps in (0, 2):
        chain = _chain(_config(GMM, "loop.generations=2", "loop.init=previous", f"loop.warm_steps={steps}"),
                       digits, runner.cache)
        paths = runner.run([chain[1][0]])
        prev, model = (load_fitted(paths[chain[g][0].key])[1] for g in (0, 1))
        train = ImageSet.load(paths[chain[1][0].deps["train"].key])
        x = (train.to_float().reshape(len(train), -1) - model.pca[0]) @ model.pca[1].T
        for c in range(10):
            if steps == 0:
                expected = prev.means[c], prev.covariances[c], prev.weights[c]
            else:
                ref = GaussianMixture(2, covariance_type="full", reg_covar=1e-6, max_iter=2,
                                      weights_init=prev.weights[c], means_init=prev.means[c],
                                      precisions_init=np.linalg.inv(prev.covariances[c]))
                ref.fit(x[train.labels == c])
                expected = ref.means_, ref.covariances_, ref.weights_
            for got, want in zip((model.means[c], model.covariances[c], model.weights[c]), expected):
                np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    # ... and not what EM from k-means gives on the same training set
    scratch = _chain(_config(GMM, "loop.generations=2"), digits, runner.cache)
    assert scratch[1][0].deps["train"].key == chain[1][0].deps["train"].key
    assert not np.allclose(load_fitted(runner.run([scratch[1][0]])[scratch[1][0].key])[1].means, model.means)


def test_warm_start_enters_the_fit_keys_from_generation_1_on(tmp_path, digits):
    scratch = _chain(_config(GMM), digits, tmp_path)
    warm = _chain(_config(GMM, "loop.init=previous"), digits, tmp_path)
    steps = _chain(_config(GMM, "loop.init=previous", "loop.warm_steps=5"), digits, tmp_path)
    assert warm[0][0].key == scratch[0][0].key == steps[0][0].key  # generation 0 trains on real data from scratch
    assert "init" not in warm[0][0].deps
    for g in (1, 2):
        assert len({warm[g][0].key, scratch[g][0].key, steps[g][0].key}) == 3
        assert warm[g][0].deps["init"].key == warm[g - 1][0].key  # the previous fit of the same chain
        assert "init" not in scratch[g][0].deps and "init" not in scratch[g][0].params
    # scratch plans keep their keys: the fit stage of a config without loop.init has no new parameter
    assert set(scratch[1][0].params) == {"config", "seed", "name", "family"}


def test_each_family_of_a_pool_warm_starts_from_its_own_predecessor(tmp_path, digits):
    pool = ("loop.generators=[{family: gmm, share: 0.5, settings: {space: pca, components: 6, mixture_components: 2}},"
            " {family: gmm, name: other, share: 0.5, settings: {space: pca, components: 6, mixture_components: 2}}]")
    plan = loop.plan(_config(pool, "loop.init=previous"), tmp_path, digits)
    ((_, parts),) = plan.families.items()
    for g in (1, 2):
        for name in ("gmm", "other"):
            assert parts[g][name][0].deps["init"] is parts[g - 1][name][0]


def test_a_killed_warm_started_chain_resumes_to_the_same_models(tmp_path, digits):
    """Generations 0-1 made first (a run stopped there), then the whole chain in the same
    cache: only generation 2's stages run, and its samples are those of a run in one go."""
    config = _config(GMM, "loop.init=previous", "loop.warm_steps=3")
    first = Runner(tmp_path / "a", workers=1, progress=False)
    chain = _chain(config, digits, first.cache)
    first.run([chain[1][1]])
    again = Runner(tmp_path / "a", workers=1, progress=False)
    chain = _chain(config, digits, again.cache)
    paths = again.run([chain[2][1]])
    assert {label for _, label, _ in again.timings} == {chain[2][0].label}  # generation 2's fit and sample only
    whole = Runner(tmp_path / "b", workers=1, progress=False)
    other = _chain(config, digits, whole.cache)
    other_paths = whole.run([other[2][1]])
    assert ImageSet.load(paths[chain[2][1].key]).content_hash() == \
        ImageSet.load(other_paths[other[2][1].key]).content_hash()


@pytest.mark.parametrize("sets, message", [
    (["loop.init=previous", "loop.generators=[{family: gaussian}]"],
     "loop.generators[0] (gaussian) cannot warm-start: its fit is the closed-form"),
    (["loop.init=previous", "loop.generators=[{family: latent, settings: {components: 8}}]"],
     "loop.generators[0] (latent) cannot warm-start: with encoder_fit: own"),
    (["loop.init=previous", "loop.variants=[{name: a}, {name: g, generators: [{family: gaussian}]}]"],
     "loop.variants[1].generators[0] (gaussian) cannot warm-start"),
    (["loop.variants=[{name: a}, {name: g, init: previous, generators: [{family: gaussian}]}]"],
     "loop.variants[1].init is previous, but loop.variants[1].generators[0] (gaussian) cannot warm-start"),
    (["loop.warm_steps=10"], "loop.warm_steps applies to warm-started generations only"),
    (["loop.init=previous", "loop.warm_steps=-1"], "loop.warm_steps must lie in [0, 10000000]"),
    (["loop.init=last"], "loop.init must be one of scratch, previous"),
])
def test_what_cannot_warm_start_is_one_error_line_and_nothing_written(tmp_path, capsys, tripwire, sets, message):
    out = tmp_path / "run"
    code = cli.main(["demo", "--out", str(out), "--quiet", *sum((["--set", s] for s in sets), [])])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not out.exists()


def test_a_latent_family_with_a_real_fitted_code_can_warm_start(digits):
    config = _config("loop.init=previous",
                     "loop.generators=[{family: latent, settings: {components: 8, encoder_fit: real}}]")
    plan = loop.plan(config, None, digits)
    ((_, chain),) = plan.chains.items()
    assert chain[1][0].deps["init"] is chain[0][0]


def test_variants_and_grids_set_init_per_variant(digits):
    """loop.variants (or loop.grid) may set init and warm_steps per variant: the scratch and
    the warm variant share generation 0's model and differ from generation 1 on, and
    results.csv gets an init column."""
    config = _config(GMM, "loop.variants=[{name: scratch}, {name: warm, init: previous, warm_steps: 3}]")
    plan = loop.plan(config, None, digits)
    scratch, warm = (plan.chains[(name, 0.0, 0)] for name in ("scratch", "warm"))
    assert scratch[0][0].key == warm[0][0].key
    assert "init" not in scratch[1][0].deps and warm[1][0].deps["init"] is warm[0][0]
    assert warm[1][0].params["warm_steps"] == 3
    assert loop.varied_columns(config)["init"] == {"scratch": "scratch", "warm": "previous"}
    grid = _config(GMM, "loop.grid={init: [scratch, previous]}")
    assert [(name, lc.init) for name, lc in grid.loop.cells()] == [("init=scratch", "scratch"),
                                                                   ("init=previous", "previous")]
