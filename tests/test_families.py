"""Several generator families feeding the loop's pool (`loop.generators`): counts from
shares, one shared training set, provenance, balance, the family column and make-up in
results.csv, the bias each family samples with, and bad settings."""

import csv

import numpy as np
import pytest
from conftest import TINY

from ouroboros import cli
from ouroboros.config import load_config
from ouroboros.data.imageset import ImageSet
from ouroboros.generators.base import load_fitted
from ouroboros.runner import Runner
from ouroboros.studies import loop
from ouroboros.studies.loop import pool_counts
from ouroboros.studies.scenarios import makeup

N = 30  # samples per generation; the real split has 100 images


@pytest.mark.parametrize("shares, n, expected", [
    ([0.7, 0.3], 30, [21, 9]),
    ([0.7, 0.3], 31, [22, 9]),  # 21.7 and 9.3: the larger remainder gets the extra image
    ([1 / 3] * 3, 10, [4, 3, 3]),  # a tie goes to the earlier entry
    ([0.5, 0.5], 3, [2, 1]),
    ([0.95, 0.05], 10, [10, 0]),  # 9.5 and 0.5: a tie, to the earlier entry; the other makes nothing
    ([1.0, 0.0], 7, [7, 0]),
    ([0.3, 0.3, 0.4 + 1e-7], 1000, [300, 300, 400]),  # shares within 1e-6 of 1 are normalised
])
def test_counts_are_shares_of_n_by_largest_remainders(shares, n, expected):
    assert pool_counts(shares, n) == expected


def test_counts_always_sum_to_n_and_round_each_share():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        k, n = rng.integers(1, 6), int(rng.integers(1, 500))
        shares = rng.dirichlet(np.ones(k))
        counts = pool_counts(shares.tolist(), n)
        assert sum(counts) == n
        assert all(np.floor(s * n - 1e-9) <= c <= np.ceil(s * n + 1e-9) for s, c in zip(shares, counts))


POOL = ("loop.generators=[{family: gaussian, share: 0.7, settings: {space: pca, components: 8}}, "
        "{family: gaussian, name: cold, share: 0.3, bias: 0.5, settings: {space: pca, components: 8}}]")


def _config(*extra):
    return load_config(None, ["loop.generations=3", "loop.guidance=[1.0]", "loop.seeds=[0]",
                              f"loop.samples_per_generation={N}", "executor.workers=1", *extra],
                       base={"name": "fam"})


@pytest.fixture(scope="module")
def pooled_chain(tmp_path_factory, digits):
    """Two Gaussian families (70% at temperature 1, 30% named cold at temperature 0.5) on
    digits, three generations of replace, through loop.plan and the Runner."""
    runner = Runner(tmp_path_factory.mktemp("fam"), workers=1, progress=False)
    plan = loop.plan(_config(POOL), runner.cache, digits)
    ((_, chain),) = plan.chains.items()
    ((_, parts),) = plan.families.items()
    paths = runner.run([out for _, out, _ in chain] + [s for p in parts for (_, s, _) in p.values()])

    def load(stage):
        return ImageSet.load(paths[stage.key])

    load.paths = paths
    return chain, parts, load


def test_each_generation_pools_every_familys_share(pooled_chain):
    chain, parts, load = pooled_chain
    for g, (_, out, _) in enumerate(chain):
        pool = load(out)
        assert out.kind == "pool" and len(pool) == N
        sources, counts = np.unique(pool.source, return_counts=True)
        assert dict(zip(sources.tolist(), counts.tolist())) == {"gen:gaussian": 21, "gen:cold": 9}
        assert (pool.generation == g + 1).all()
        # balanced over classes as one set: the families continue each other's label cycle
        assert pool.class_counts().tolist() == [3] * 10
        # the pool is exactly the families' own samples, in entry order
        own = [load(parts[g][name][1]) for name in ("gaussian", "cold")]
        assert pool.content_hash() == ImageSet.concat(own).content_hash()


def test_every_family_retrains_on_the_same_shared_set(pooled_chain, digits):
    chain, parts, load = pooled_chain
    for g in range(3):
        fits = [parts[g][name][0] for name in ("gaussian", "cold")]
        assert fits[0].deps["train"].key == fits[1].deps["train"].key  # one training set for both
        assert fits[0].params["seed"] != fits[1].params["seed"]  # seeds derived per family
        expected = digits[0] if g == 0 else load(chain[g - 1][1])  # replace: the previous pool
        assert load(fits[0].deps["train"]).content_hash() == expected.content_hash()


def test_each_family_samples_with_its_own_bias(pooled_chain):
    _, parts, load = pooled_chain
    warm, cold = parts[0]["gaussian"][1], parts[0]["cold"][1]
    assert warm.params["temperature"] == 1.0 and cold.params["temperature"] == 0.5
    assert "guidance" not in warm.params  # loop.guidance is the knob of diffusion entries only
    assert {c.split(";")[1] for c in load(cold).condition} == {"temperature=0.5"}
    # Both fits are the same model (same set, same settings, a deterministic fit); the cold
    # samples lie closer to its class means: E|x - m_c|^2 scales with the temperature.
    assert parts[0]["gaussian"][0].params["config"] == parts[0]["cold"][0].params["config"]
    model = load_fitted(load.paths[parts[0]["gaussian"][0].key])[1]
    centre, basis = model.pca
    class_means = centre + model.means[:, 0] @ basis
    spread = []
    for stage in (warm, cold):
        s = load(stage)
        x = s.to_float().reshape(len(s), -1).astype(np.float64)
        spread.append(((x - class_means[s.labels]) ** 2).sum(axis=1).mean())
    assert 0.3 < spread[1] / spread[0] < 0.75  # 0.5 in expectation


def test_makeup_reports_each_familys_share_from_provenance(pooled_chain):
    chain, _, load = pooled_chain
    shares = makeup(load(chain[1][0].deps["train"]), by_family=True)
    assert shares["train_share_family_gaussian"] == 0.7 and shares["train_share_family_cold"] == 0.3
    assert "train_share_family_gaussian" not in makeup(load(chain[1][0].deps["train"]))  # one family: no rows


def test_a_mixed_pool_under_mix_draws_the_families_from_the_previous_pool(digits, tmp_path):
    runner = Runner(tmp_path, workers=1, progress=False)
    plan = loop.plan(_config(POOL, "loop.scenario=mix", "loop.real_fraction=0.5"), runner.cache, digits)
    ((_, chain),) = plan.chains.items()
    paths = runner.run([chain[1][0].deps["train"]])
    train = ImageSet.load(paths[chain[1][0].deps["train"].key])
    shares = makeup(train, by_family=True)
    assert shares["train_real_share"] == 0.5
    assert shares["train_share_family_gaussian"] + shares["train_share_family_cold"] == 0.5
    assert shares["train_share_family_cold"] > 0  # measured from provenance, not assumed to be 0.15


def test_one_diffusion_entry_keeps_the_default_stage_keys(digits, tmp_path):
    keys = []
    for extra in ([], ["loop.generators=[{family: diffusion, share: 1.0}]"],
                  ["loop.generators=[{family: diffusion, share: 1.0, settings: {}}]"]):
        plan = loop.plan(_config("loop.scenario=accumulate", *extra), tmp_path, digits)
        keys.append([s.key for chain in plan.chains.values() for stages in chain for s in stages])
        assert plan.families == {}
    assert keys[0] == keys[1] == keys[2]
    # a diffusion setting of the entry overrides generator: and so changes the fit
    plan = loop.plan(_config("loop.generators=[{family: diffusion, settings: {hidden: 64}}]"), tmp_path, digits)
    fit = plan.chains[("", 1.0, 0)][0][0]
    assert fit.params["config"]["hidden"] == 64 and fit.key not in keys[0]


def test_guidance_is_the_knob_of_diffusion_entries(digits, tmp_path):
    config = _config("loop.guidance=[1.0,0.0]", "loop.generators=[{family: diffusion, share: 0.5}, "
                     "{family: gaussian, share: 0.5}, ]")
    plan = loop.plan(config, tmp_path, digits)
    for (_, w, _), parts in plan.families.items():
        assert parts[0]["diffusion"][1].params["guidance"] == w
        assert parts[0]["gaussian"][1].params["temperature"] == 1.0 and "guidance" not in parts[0]["gaussian"][1].params
        assert parts[0]["gaussian"][1].params["n"] == parts[0]["diffusion"][1].params["n"] == 15
    fixed = loop.plan(_config("loop.guidance=[1.0,0.0]",
                              "loop.generators=[{family: diffusion, share: 1, bias: 2.5}]"), tmp_path, digits)
    assert {c[0][1].params["guidance"] for c in fixed.chains.values()} == {2.5}  # an entry's bias wins


def test_results_have_a_family_column_and_per_family_rows(tmp_path):
    """End to end from the CLI: 70% diffusion + 30% gaussian on tiny settings."""
    args = ["demo", "--out", str(tmp_path), "--quiet", *[a for s in TINY for a in ("--set", s)]]
    args += ["--set", "loop.guidance=[1.0]", "--set", "loop.seeds=[0]", "--set", "loop.samples_per_generation=100",
             "--set", "generator.train_steps=2", "--set",
             "loop.generators=[{family: diffusion, share: 0.7}, {family: gaussian, share: 0.3}]"]
    assert cli.main(args) == 0
    with open(tmp_path / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[-1] == "family"
    loop_rows = [r for r in rows if r["cell"] != "reference"]
    assert {r["family"] for r in loop_rows} == {"", "diffusion", "gaussian"}
    acc = {(r["generation"], r["family"]): float(r["value"]) for r in loop_rows if r["metric"] == "accuracy"}
    for g in ("0", "1"):  # the pooled accuracy is the count-weighted mean of the families'
        assert abs(acc[(g, "")] - (0.7 * acc[(g, "diffusion")] + 0.3 * acc[(g, "gaussian")])) < 1e-9
    shares = {r["metric"]: float(r["value"]) for r in loop_rows if r["generation"] == "1" and not r["family"]}
    assert shares["train_share_family_diffusion"] == 0.7 and shares["train_share_family_gaussian"] == 0.3
    assert not any(r["metric"].startswith("train_") for r in loop_rows if r["family"])  # make-up: pooled rows only
    assert (tmp_path / "plots" / "accuracy.png").is_file()
    # each family's own samples are conditions of their own in the report's findings and plots
    page = (tmp_path / "report.html").read_text()
    assert "guidance=1 · gaussian" in page and "guidance=1 · diffusion" in page
    # the reference rows: the yardstick (the training split) and the instrument's accuracy on the test split
    from ouroboros.data.imageset import ImageSet
    from ouroboros.features.classifier import Classifier

    (clf_dir,) = (tmp_path / "cache" / "classifier").iterdir()
    classifier = Classifier.load(clf_dir)
    accs = []
    for path in sorted((tmp_path / "cache" / "data").glob("*.npz")):
        split = ImageSet.load(path)
        accs.append(float((classifier.logits(split).argmax(1) == split.labels).mean()))
    ref = {r["metric"]: float(r["value"]) for r in rows if r["cell"] == "reference"}
    assert sorted([ref["accuracy"], ref["instrument_accuracy"]]) == pytest.approx(sorted(accs))
    assert f"recognises {100 * ref['instrument_accuracy']:.2f}% of the real test split" in page


_TINY_ARGS = [a for s in TINY + ["loop.seeds=[0]", "loop.guidance=[1.0]", "generator.train_steps=2"]
              for a in ("--set", s)]


@pytest.mark.parametrize("generators, fragment", [
    ("[{family: diffusion, share: 0.7}, {family: gaussian, share: 0.2}]", "the shares sum to 0.9, not 1"),
    ("[{family: diffusion, share: 1.2}, {family: gaussian, share: -0.2}]", "loop.generators[0].share must lie in"),
    ("[{family: gaussian, share: 1.5}]", "loop.generators[0].share must lie in [0, 1]"),
    ("[{family: vae}]", "unknown generator family 'vae'; use one of diffusion, gaussian, gmm, latent"),
    ("[{family: gaussian, settings: {space: pixel}}]", "loop.generators[0].settings: space must be pixels or pca"),
    ("[{family: gaussian, settings: {hidden: 4}}]", "unknown gaussian generator setting(s) ['hidden']"),
    ("[{family: diffusion, settings: {hidden: 3}}]", "loop.generators[0].settings.hidden must be even"),
    ("[{family: diffusion, settings: {sampler: euler}}]", "loop.generators[0].settings.sampler must be one of"),
    ("[{family: gaussian, share: 0.5}, {family: gaussian, share: 0.5}]", "names 'gaussian' twice"),
    ("[{family: gaussian, bias: -1}]", "loop.generators[0].bias must lie in"),
    ("[{family: gaussian, settings: {space: pca, components: 65}}]", "components (65) exceeds"),
    ("[{family: diffusion, share: 1, settings: {denoiser: unet, hidden: 8, depth: 5}}]",
     "loop.generators[0].settings: the U-Net of generator.depth 5 takes images whose sides are multiples of 16"),
    ("[]", "loop.generators needs at least one value"),
])
def test_bad_generators_are_one_error_line_before_anything_is_written(tmp_path, capsys, generators, fragment):
    out = tmp_path / "run"
    assert cli.main(["demo", "--out", str(out), *_TINY_ARGS, "--set", f"loop.generators={generators}"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0], err
    assert not out.exists()


def test_a_gaussian_family_without_two_images_per_class_is_refused_up_front(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["demo", "--out", str(out), *_TINY_ARGS, "--set", "loop.samples_per_generation=15",
                     "--set", "loop.generators=[{family: gmm, settings: {mixture_components: 2}}]"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "needs at least 2 images per class" in err[0] and "has 1 per class" in err[0], err
    assert not out.exists()


def test_a_pca_family_models_every_generation_in_the_real_datas_pca_space(pooled_chain, digits):
    """The PCA space is fitted on the real training split, not on each
    generation's training set, so every generation's Gaussians live in one space."""
    from ouroboros.generators.base import load_fitted
    from ouroboros.generators.gaussian import fit_pca

    chain, parts, load = pooled_chain
    real = digits[0].to_float().reshape(len(digits[0]), -1).astype(np.float64)
    centre, basis = fit_pca(real, 8)
    for g, generation in enumerate(parts):
        for name, (fit, _, _) in generation.items():
            _, model = load_fitted(load.paths[fit.key])
            assert np.allclose(model.pca[0], centre) and np.allclose(model.pca[1], basis), (g, name)
    # ...while a PCA on generation 2's own training set is a different space
    _, own = fit_pca(load(chain[2][0].deps["train"]).to_float().reshape(-1, real.shape[1]).astype(np.float64), 8)
    assert not np.allclose(own, basis)
