"""Tests that fail when the science is wrong, not only when the plumbing is.

Each test pins one behaviour the studies' conclusions rest on, against a closed form,
a hand computation or an independent reference: the feedback loop's chain of training
sets, the diffusion generator's EMA weights, label dropout, samplers and guidance,
and the classifier-based metrics. Every behaviour here was checked by breaking the
code on purpose and watching the test fail.
"""

import json

import numpy as np
import pytest
import torch
from scipy.special import log_softmax

from ouroboros.data.imageset import ImageSet, quantize
from ouroboros.generators import DiffusionConfig, DiffusionGenerator, FittedDiffusion
from ouroboros.generators import diffusion as diffusion_module

# -- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_digits(digits):
    """100 training images (10 per class) and 50 test images of the embedded digits (conftest)."""
    return digits


def _tiny_generator(**overrides) -> DiffusionConfig:
    cfg = dict(hidden=16, depth=1, train_steps=4, batch_size=16, sample_steps=3, device="cpu")
    cfg.update(overrides)
    return DiffusionConfig(**cfg)


# -- the diffusion generator: EMA weights ----------------------------------------------


def _record_optimizer_steps(monkeypatch):
    """Patch the generator's optimizer factory to record the initial weights and the raw
    weights after every optimizer step (a step post-hook: the training loop is untouched)."""
    record = {"init": None, "steps": []}
    make = diffusion_module._adamw

    def recording_adamw(params, *args, **kwargs):
        params = list(params)
        record["init"] = [p.detach().clone() for p in params]
        opt = make(params, *args, **kwargs)
        opt.register_step_post_hook(lambda *_: record["steps"].append([p.detach().clone() for p in params]))
        return opt

    monkeypatch.setattr(diffusion_module, "_adamw", recording_adamw)
    return record


def test_sampling_weights_are_the_ema_computed_by_hand(monkeypatch, small_digits):
    """The fitted model holds the EMA of the raw weights, with the documented warm-up
    decay min(ema_decay, (1 + s) / (10 + s)) at step s, not the raw final weights."""
    record = _record_optimizer_steps(monkeypatch)
    cfg = _tiny_generator(train_steps=5, lr=1e-2, warmup_steps=1, ema_decay=0.6)
    fitted = DiffusionGenerator(cfg).fit(small_digits[0], seed=0)
    assert len(record["steps"]) == cfg.train_steps

    ema = [p.clone() for p in record["init"]]
    for s, raw in enumerate(record["steps"]):
        decay = min(cfg.ema_decay, (1 + s) / (10 + s))
        ema = [decay * e + (1 - decay) * r for e, r in zip(ema, raw)]
    sampled = [p.detach() for p in fitted.model.parameters()]
    for mine, theirs in zip(ema, sampled):
        torch.testing.assert_close(theirs, mine, rtol=1e-5, atol=1e-6)
    # The check has teeth: the raw final weights are far from the EMA.
    gap = max((r - e).abs().max().item() for r, e in zip(record["steps"][-1], sampled))
    assert gap > 1e-3


def test_ema_decay_zero_samples_the_raw_final_weights(monkeypatch, small_digits):
    record = _record_optimizer_steps(monkeypatch)
    fitted = DiffusionGenerator(_tiny_generator(ema_decay=0.0)).fit(small_digits[0], seed=0)
    for raw, sampled in zip(record["steps"][-1], fitted.model.parameters()):
        torch.testing.assert_close(sampled.detach(), raw)


def test_saved_and_loaded_model_keeps_the_ema_weights(tmp_path, small_digits):
    fitted = DiffusionGenerator(_tiny_generator()).fit(small_digits[0], seed=0)
    back = FittedDiffusion.load(fitted.save(tmp_path / "m"))
    for a, b in zip(fitted.model.parameters(), back.model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


# -- the diffusion generator: label dropout ---------------------------------------------


class InputRecorder(torch.nn.Module):
    """Wraps a denoiser and records the inputs (x_t, t, labels) it is trained on."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.seen = []

    def forward(self, x, t, labels):
        if torch.is_grad_enabled():  # training calls, not sampling
            self.seen.append((x.detach().clone(), t.detach().clone(), labels.detach().clone()))
        return self.inner(x, t, labels)


def _fit_recording_inputs(monkeypatch, train, **cfg):
    built = []
    build = diffusion_module.build_denoiser

    def recording_build(*args, **kwargs):
        built.append(InputRecorder(build(*args, **kwargs)))
        return built[-1]

    monkeypatch.setattr(diffusion_module, "build_denoiser", recording_build)
    DiffusionGenerator(_tiny_generator(**cfg)).fit(train, seed=0)
    return built[0].seen


def _labels_seen_in_training(monkeypatch, train, **cfg):
    return torch.cat([labels for _, _, labels in _fit_recording_inputs(monkeypatch, train, **cfg)]).numpy()


@pytest.mark.parametrize("rate", [0.0, 0.3])
def test_label_dropout_replaces_labels_with_the_null_label_at_its_rate(monkeypatch, small_digits, rate):
    """Classifier-free guidance needs an unconditional branch: a fraction `label_dropout`
    of training labels is the null label K (= num_classes); the rest are real labels."""
    train = small_digits[0]
    seen = _labels_seen_in_training(monkeypatch, train, label_dropout=rate, train_steps=10, batch_size=500)
    k = train.num_classes
    assert len(seen) == 10 * 500
    assert seen.min() >= 0 and seen.max() <= k
    null_share = float((seen == k).mean())
    # Binomial standard deviation sqrt(0.3 * 0.7 / 5000) = 0.0065: 0.03 is over 4 sigma.
    assert abs(null_share - rate) < 0.03, null_share
    # The kept labels are the training labels' classes, roughly balanced (10 per class here).
    kept = np.bincount(seen[seen < k], minlength=k) / (seen < k).sum()
    assert np.abs(kept - 0.1).max() < 0.03, kept


def test_training_regresses_the_noise_added_at_the_drawn_timestep(monkeypatch, small_digits):
    """DDPM's objective: x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps with the training
    schedule, and the network regresses eps. With one image as the whole training set,
    x0 is known, so the target can be recovered from (x_t, t) and checked."""
    one = small_digits[0].subset([0] * 4)
    targets = []
    mse = torch.nn.functional.mse_loss

    def recording_mse(pred, target):
        targets.append(target.detach().clone())
        return mse(pred, target)

    monkeypatch.setattr(torch.nn.functional, "mse_loss", recording_mse)
    cfg = dict(train_steps=3, batch_size=32)
    seen = _fit_recording_inputs(monkeypatch, one, **cfg)
    abar = _alphas_cumprod(_tiny_generator(**cfg))
    x0 = torch.as_tensor(one.to_float()[:1])
    assert len(seen) == len(targets) == 3
    for (x_t, t, _), target in zip(seen, targets):
        a = abar[t].view(-1, 1, 1, 1)
        torch.testing.assert_close(target, (x_t - a.sqrt() * x0) / (1 - a).sqrt(), rtol=1e-4, atol=1e-4)
        assert 0.9 < target.std().item() < 1.1  # standard normal noise
    t_all = torch.cat([t for _, t, _ in seen])
    assert t_all.min() >= 0 and t_all.max() < 1000 and t_all.float().std() > 200  # uniform over [0, T)


# -- the diffusion generator: samplers and guidance against an analytic denoiser ------


def _alphas_cumprod(cfg: DiffusionConfig) -> torch.Tensor:
    """The training schedule's alpha-bar, from diffusers itself (independent of our code)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule).alphas_cumprod


class GaussianClassesEps(torch.nn.Module):
    """The exact noise predictor E[eps | x_t, y] when class y's images are N(mu_y, s^2 I).

    x_t | y ~ N(sqrt(abar) mu_y, v I) with v = abar s^2 + 1 - abar, so
    E[eps | x_t, y] = sqrt(1 - abar) (x_t - sqrt(abar) mu_y) / v. For the null label
    (y = K) mu_y is replaced by the posterior mean of mu over equally likely classes.
    """

    def __init__(self, means, s, alphas_cumprod):
        super().__init__()
        self.means = torch.as_tensor(means, dtype=torch.float32)
        self.s = s
        self.abar = alphas_cumprod.float()
        self.p = torch.nn.Parameter(torch.zeros(()))  # gives the module a device

    def forward(self, x, t, labels):
        abar = self.abar[t.long().cpu()].view(-1, 1, 1, 1)
        v = abar * self.s**2 + 1 - abar
        k = len(self.means)
        dist = ((x[:, None] - abar.sqrt()[:, None] * self.means.view(1, k, 1, 1, 1)) ** 2).flatten(2).sum(2)
        post = torch.softmax(-dist / (2 * v.view(-1, 1)), dim=1)  # p(y | x_t), uniform prior
        mu = torch.where(labels == k, post @ self.means, self.means[labels.clamp(max=k - 1)])
        return (1 - abar).sqrt() * (x - abar.sqrt() * mu.view(-1, 1, 1, 1)) / v + 0 * self.p


@pytest.fixture(scope="module")
def analytic():
    """A FittedDiffusion around the exact denoiser of two classes at -0.5 and +0.5, s = 0.15."""
    # 100 of 1000 steps: with fewer, both samplers' discretisation visibly shrinks the
    # spread (measured: std 0.09-0.10 at 10 steps, 0.13-0.15 at 100, 0.14-0.15 at 1000).
    cfg = DiffusionConfig(sample_steps=100, device="cpu")
    model = GaussianClassesEps([-0.5, 0.5], 0.15, _alphas_cumprod(cfg))
    return FittedDiffusion(cfg, model, ("neg", "pos"), (1, 2, 2), generation=1)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_samplers_reproduce_the_class_distributions_of_an_exact_denoiser(analytic, sampler):
    """With the exact noise predictor, both samplers must land on N(mu_y, s^2) per class:
    a wrong schedule, step rule or sign moves the means or the spread."""
    out = analytic.sample(600, guidance=0.0, seed=0, sampler=sampler)
    x = out.images.astype(np.float64) / 127.5 - 1.0
    for c, mu in enumerate([-0.5, 0.5]):
        pixels = x[out.labels == c].ravel()
        assert abs(pixels.mean() - mu) < 0.02, (sampler, c, pixels.mean())
        assert 0.125 < pixels.std() < 0.165, (sampler, c, pixels.std())


def _reference_sample(model, cfg, labels, w, seed, sampler):
    """The sampling loop written out from the papers with diffusers' schedulers: start
    noise from the seed, then per step eps = (1 + w) eps(x, y) - w eps(x, null) and one
    scheduler step. An independent reference for `FittedDiffusion.sample`."""
    from diffusers import DDIMScheduler, DDPMScheduler

    common = dict(num_train_timesteps=cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule, clip_sample=True)
    sched = DDPMScheduler(variance_type="fixed_small", **common) if sampler == "ddpm" else DDIMScheduler(**common)
    sched.set_timesteps(cfg.sample_steps)
    gen = torch.Generator().manual_seed(seed)
    y = torch.as_tensor(labels)
    null = torch.full_like(y, len(model.means))
    x = torch.randn((len(y), 1, 2, 2), generator=gen)
    with torch.no_grad():
        for t in sched.timesteps:
            tt = t.expand(len(y))
            eps = (1 + w) * model(x, tt, y) - w * model(x, tt, null)
            # DDIM steps with the eps implied by its clipped x0 (see
            # test_strong_guidance_keeps_samples_in_their_class).
            options = {"use_clipped_model_output": True} if sampler == "ddim" else {}
            x = sched.step(eps, t, x, generator=gen, **options).prev_sample
    return quantize(x)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_guided_sampling_equals_a_reference_loop(analytic, sampler):
    labels = np.arange(40) % 2
    out = analytic.sample(40, guidance=1.0, seed=3, sampler=sampler)
    ref = _reference_sample(analytic.model, analytic.config, labels, 1.0, 3, sampler)
    np.testing.assert_array_equal(out.images, ref)
    np.testing.assert_array_equal(out.labels, labels)
    assert set(out.condition) == {"class=neg;guidance=1", "class=pos;guidance=1"}
    assert set(out.seed) == {3}


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_strong_guidance_keeps_samples_in_their_class(analytic, sampler):
    """Guidance sharpens p(x | y) against p(x); it must never move samples to another
    class. Class means stay on their side, at least as far out as unguided ones. (DDIM once
    clipped x0 but stepped with the unclipped guided eps: at w = 2 every sample landed in
    the other class, class means +0.94 / -0.96.)"""
    plain = analytic.sample(200, guidance=0.0, seed=0, sampler=sampler)
    guided = analytic.sample(200, guidance=2.0, seed=0, sampler=sampler)
    for c, sign in ((0, -1), (1, 1)):
        m_plain = sign * (plain.images[plain.labels == c].mean() / 127.5 - 1.0)
        m_guided = sign * (guided.images[guided.labels == c].mean() / 127.5 - 1.0)
        assert m_guided > m_plain - 0.01 and m_guided > 0.45, (sampler, c, m_plain, m_guided)


class ZeroEps(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, t, labels):
        return torch.zeros_like(x) + 0 * self.p


def test_ddim_is_deterministic_given_the_start_noise_and_ddpm_is_not():
    """With eps = 0, DDIM (eta = 0) predicts x0 = clip(x_T / sqrt(abar_T)) at its first
    step and never leaves it; the result is exactly that, quantised. DDPM adds fresh
    noise at every step, so from the same seed it lands elsewhere."""
    from diffusers import DDIMScheduler

    cfg = DiffusionConfig(sample_steps=6, device="cpu")
    fitted = FittedDiffusion(cfg, ZeroEps(), ("a", "b"), (1, 4, 4), generation=1)
    n, seed = 16, 5
    x_t = torch.randn((n, 1, 4, 4), generator=torch.Generator().manual_seed(seed))
    sched = DDIMScheduler(num_train_timesteps=cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule)
    sched.set_timesteps(cfg.sample_steps)
    abar = sched.alphas_cumprod[sched.timesteps[0]]
    # Quantised by hand (not with our `quantize`): [-1, 1] -> round((x + 1) * 127.5).
    expected = np.round((torch.clamp(x_t / abar.sqrt(), -1, 1).numpy() + 1) * 127.5).astype(np.uint8)
    assert 0 < (np.abs(expected.astype(int) - 128) < 120).mean() < 1  # neither all nor none clipped

    ddim = fitted.sample(n, seed=seed, sampler="ddim")
    np.testing.assert_array_equal(ddim.images, expected)
    ddpm = fitted.sample(n, seed=seed, sampler="ddpm")
    assert np.abs(ddpm.images.astype(int) - expected.astype(int)).mean() > 5
    assert not np.array_equal(fitted.sample(n, seed=seed + 1, sampler="ddim").images, ddim.images)


# -- the feedback loop: each generation trains on its predecessor's samples ---------------


def _loop_config(*extra):
    from ouroboros.config import load_config

    return load_config(None, ["loop.generations=3", "loop.guidance=[0.5]", "loop.seeds=[0]",
                              "loop.samples_per_generation=30", "generator.hidden=16", "generator.depth=1",
                              "generator.train_steps=3", "generator.batch_size=16", "generator.sample_steps=2",
                              "generator.sampler=ddim",
                              "executor.workers=1", *extra], base={"name": "science"})


@pytest.fixture(scope="module")
def loop_chain(tmp_path_factory, small_digits):
    """A 3-generation chain, run through the real planner and runner (fit and sample only)."""
    from ouroboros.runner import Runner
    from ouroboros.studies import loop

    run_dir = tmp_path_factory.mktemp("loop")
    runner = Runner(run_dir, workers=1, progress=False)
    plan = loop.plan(_loop_config(), runner.cache, small_digits)
    (chain,) = plan.chains.values()
    paths = runner.run([chain[-1][1]])
    return plan, chain, paths


def test_each_generation_is_fitted_on_exactly_the_previous_generations_samples(loop_chain, small_digits):
    plan, chain, paths = loop_chain
    real_train = small_digits[0]
    assert len(chain) == 3
    expected = real_train.content_hash()  # generation 0 trains on the real training split
    for g, (fit, sample, _) in enumerate(chain):
        meta = json.loads((paths[fit.key] / "generator.json").read_text())
        assert meta["info"]["train_hash"] == expected, f"generation {g} was not trained on its predecessor's output"
        assert meta["generation"] == g + 1
        expected = ImageSet.load(paths[sample.key]).content_hash()


def test_each_generations_samples_are_sized_balanced_and_carry_provenance(loop_chain):
    plan, chain, paths = loop_chain
    sample_seeds = set()
    for g, (_, sample, _) in enumerate(chain):
        images = ImageSet.load(paths[sample.key])
        assert len(images) == 30
        assert images.class_counts().tolist() == [3] * 10
        assert set(images.generation.tolist()) == {g + 1}  # provenance generation increments
        assert set(images.source.tolist()) == {"gen:diffusion"}
        assert all(c.endswith("guidance=0.5") for c in images.condition)
        sample_seeds |= set(images.seed.tolist())
    assert len(sample_seeds) == 3  # fresh sampling noise every generation


def test_each_generations_samples_are_what_its_model_draws_with_the_configured_sampler(loop_chain):
    """The sample stage honours the study's sampling settings (DDIM, 2 steps here; the
    fitted model's own config says DDPM, since sampling settings are not fit settings)."""
    plan, chain, paths = loop_chain
    for fit, sample, _ in chain:
        model = FittedDiffusion.load(paths[fit.key])
        direct = model.sample(30, guidance=0.5, seed=sample.params["seed"], sampler="ddim", sample_steps=2)
        np.testing.assert_array_equal(ImageSet.load(paths[sample.key]).images, direct.images)
        ddpm = model.sample(30, guidance=0.5, seed=sample.params["seed"], sampler="ddpm", sample_steps=2)
        assert not np.array_equal(ddpm.images, direct.images)


def test_the_loop_scores_every_generation_against_the_test_split_with_a_classifier_trained_on_real_data(
        loop_chain, small_digits):
    plan, chain, _ = loop_chain
    train, test = (part.content_hash() for part in small_digits)
    assert plan.classifier.deps["train"].params["content_hash"] == train
    for _, sample, ev in chain:
        assert ev.deps["images"] is sample
        assert ev.deps["classifier"] is plan.classifier
        assert ev.deps["real"].params["content_hash"] == test  # what nothing trained on
    # the yardstick: the other real split (the training split) scored the same way
    assert plan.reference.deps["images"].params["content_hash"] == train
    assert plan.reference.deps["real"].params["content_hash"] == test


def test_samples_per_generation_defaults_to_the_real_training_set_size(tmp_path, small_digits):
    from ouroboros.config import load_config
    from ouroboros.studies import loop

    config = load_config(None, ["loop.generations=2", "loop.seeds=[0]"], base={"name": "science"})
    train = small_digits[0].subset(np.arange(73))
    plan = loop.plan(config, tmp_path / "cache", (train, small_digits[1]))
    for chain in plan.chains.values():
        assert [sample.params["n"] for _, sample, _ in chain] == [73, 73]


# -- the runner: keys, skipping, failures and order ---------------------------------------

CALLS: list = []  # (kind, params) of every test stage executed, in order


@pytest.fixture(scope="module")
def runner_test_kinds():
    """Stage kinds for these tests, registered for this module only: `t_text` writes its
    param `text` plus its inputs' contents; `t_fail` fails half-way through writing.
    They run in-process (workers=1)."""
    from ouroboros.io import atomic_path
    from ouroboros.runner import STAGE_KINDS, stage_kind


    @stage_kind("t_text", ".txt")
    def text_stage(params, deps, out):
        inputs = {name: path.read_text() for name, path in sorted(deps.items())}  # inputs exist already
        CALLS.append(("t_text", params["text"]))
        with atomic_path(out) as tmp:
            tmp.write_text(params["text"] + "".join(f"|{k}={v}" for k, v in inputs.items()))

    @stage_kind("t_fail", ".txt")
    def fail_stage(params, deps, out):
        CALLS.append(("t_fail", params["text"]))
        with atomic_path(out) as tmp:
            tmp.write_text("half")
            raise RuntimeError("stage failed half-way")

    yield
    for kind in ("t_text", "t_fail"):
        STAGE_KINDS.pop(kind, None)


def _graph(a="a", b="b", c="c"):
    """a -> b -> c, and a -> c."""
    from ouroboros.runner import Stage

    sa = Stage("t_text", {"text": a})
    sb = Stage("t_text", {"text": b}, {"up": sa})
    sc = Stage("t_text", {"text": c}, {"first": sa, "second": sb})
    return sa, sb, sc


def _run(run_dir, targets):
    from ouroboros.runner import Runner

    CALLS.clear()
    return Runner(run_dir, workers=1, progress=False).run(targets)


def test_runner_runs_dependencies_first_and_passes_their_artifacts(tmp_path, runner_test_kinds):
    sa, sb, sc = _graph()
    paths = _run(tmp_path, [sc])
    assert CALLS == [("t_text", "a"), ("t_text", "b"), ("t_text", "c")]
    assert paths[sc.key].read_text() == "c|first=a|second=b|up=a"


def test_runner_skips_done_stages_and_reruns_exactly_what_a_change_reaches(tmp_path, runner_test_kinds):
    _run(tmp_path, [_graph()[2]])
    _run(tmp_path, [_graph()[2]])
    assert CALLS == []  # all done: nothing runs
    _run(tmp_path, [_graph(c="c2")[2]])
    assert CALLS == [("t_text", "c2")]  # a leaf's param: only that stage
    _run(tmp_path, [_graph(b="b2")[2]])
    assert CALLS == [("t_text", "b2"), ("t_text", "c")]  # a middle stage's param: it and its dependents
    _run(tmp_path, [_graph(a="a2")[2]])
    assert CALLS == [("t_text", "a2"), ("t_text", "b"), ("t_text", "c")]


def test_stage_keys_change_with_any_param_or_input_and_nothing_else(runner_test_kinds):
    from ouroboros.runner import Stage

    sa, sb, sc = _graph()
    assert Stage("t_text", {"text": "b"}, {"up": Stage("t_text", {"text": "a"})}).key == sb.key  # rebuilt: same
    assert Stage("t_text", {"text": "b", "extra": 1}, {"up": sa}).key != sb.key
    assert Stage("t_text", {"text": "b"}, {"up": Stage("t_text", {"text": "z"})}).key != sb.key
    assert Stage("t_text", {"text": "b"}, {"other": sa}).key != sb.key  # the input's role matters
    assert Stage("t_fail", {"text": "b"}, {"up": sa}).key != sb.key
    assert Stage("t_text", {"text": "b"}, {"up": sa}, label="another label").key == sb.key


def test_a_failing_stage_leaves_no_artifact_and_nothing_after_it_runs(tmp_path, runner_test_kinds):
    from ouroboros.runner import Stage

    sa = Stage("t_text", {"text": "a"})
    bad = Stage("t_fail", {"text": "x"}, {"up": sa})
    after = Stage("t_text", {"text": "after"}, {"up": bad})
    with pytest.raises(RuntimeError, match="half-way"):
        _run(tmp_path, [after])
    assert CALLS == [("t_text", "a"), ("t_fail", "x")]
    assert sa.artifact(tmp_path / "cache").is_file()
    assert not bad.artifact(tmp_path / "cache").exists()
    assert sorted(p.name for p in (tmp_path / "cache" / "t_fail").iterdir()) == []  # no temporary left either
    with pytest.raises(RuntimeError):
        _run(tmp_path, [after])
    assert CALLS == [("t_fail", "x")]  # tried again; the finished input is reused


# -- metrics outside k-NN: FID and the classifier's scores ---------------------------------


def test_fid_closed_forms():
    """FID(x, x) = 0; a shift by d adds |d|^2; scaling by a gives (1 - a)^2 tr(S)."""
    from ouroboros.metrics import fid

    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6))
    trace = np.trace(np.cov(x, rowvar=False))
    assert abs(fid(x, x)) < 1e-8 * trace
    d = rng.normal(size=6)
    np.testing.assert_allclose(fid(x, x + d), d @ d, rtol=1e-7)
    np.testing.assert_allclose(fid(x, 0.5 * x), 0.25 * trace + 0.25 * np.sum(x.mean(0) ** 2), rtol=1e-7)
    # Independent Gaussians with diagonal covariances: sum (sqrt(s1) - sqrt(s2))^2 per axis.
    a, b = rng.normal(size=(40_000, 3)) * [1.0, 2.0, 0.5], rng.normal(size=(40_000, 3)) * [2.0, 2.0, 1.0]
    np.testing.assert_allclose(fid(a, b), 1.0 + 0.0 + 0.25, atol=0.06)


def test_classification_metrics_against_a_direct_computation():
    from ouroboros.metrics import classification_metrics

    rng = np.random.default_rng(1)
    logits = rng.normal(size=(60, 4)) * 3
    labels = rng.integers(0, 4, 60)
    labels[:3] = 3
    m = classification_metrics(logits, labels, ["w", "x", "y", "z"])
    ce = torch.nn.functional.cross_entropy(torch.as_tensor(logits), torch.as_tensor(labels)).item()
    assert m["cross_entropy"] == pytest.approx(ce, rel=1e-12)
    assert m["accuracy"] == pytest.approx(np.mean(logits.argmax(1) == labels))
    for c, name in enumerate("wxyz"):
        sel = labels == c
        assert m[f"accuracy/{name}"] == pytest.approx(np.mean(logits[sel].argmax(1) == c))
    # Cross-entropy is of the *intended* class, not the predicted one.
    assert m["cross_entropy"] == pytest.approx(-np.mean(log_softmax(logits, 1)[np.arange(60), labels]))
    assert "accuracy/w" in m and set(m) == {"accuracy", "cross_entropy", *(f"accuracy/{n}" for n in "wxyz")}


@pytest.fixture(scope="module")
def tiny_classifier(small_digits):
    from ouroboros.features.classifier import Classifier, ClassifierConfig

    return Classifier.train(small_digits[0], ClassifierConfig(width=8, feature_dim=16, epochs=3, device="cpu"), seed=0)


def test_classifier_features_are_the_penultimate_layer(tiny_classifier, small_digits):
    test = small_digits[1]
    logits, feats = tiny_classifier.logits_and_features(test)
    np.testing.assert_allclose(logits, tiny_classifier.logits(test), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(feats, tiny_classifier.features(test), rtol=1e-6, atol=1e-6)
    head = tiny_classifier.model.head
    by_hand = feats @ head.weight.detach().double().numpy().T + head.bias.detach().double().numpy()
    np.testing.assert_allclose(logits, by_hand, rtol=1e-5, atol=1e-5)
    assert feats.shape == (len(test), 16)
    # Batch size does not change features (eval mode: BatchNorm uses running statistics).
    small_batches = tiny_classifier._apply(test, tiny_classifier.model.features, batch_size=7)
    np.testing.assert_allclose(small_batches, feats, rtol=1e-5, atol=1e-6)


def test_evaluate_stage_scores_images_against_the_real_split(tmp_path, tiny_classifier, small_digits):
    """The loop's evaluate stage: classifier scores of the images, and FID / PRDC of their
    features against the *real* split's features (not against themselves)."""
    from ouroboros.metrics import fid, prdc
    from ouroboros.metrics import classification_metrics
    from ouroboros.stages import evaluate_stage

    real, test = small_digits
    # Inverted test digits: labelled images whose features are far from the real ones.
    images = ImageSet.create(255 - test.images, test.labels, test.class_names, source="gen:inverted", generation=1)
    clf_dir = tiny_classifier.save(tmp_path / "clf")
    real.save(tmp_path / "real.npz")
    images.save(tmp_path / "images.npz")
    evaluate_stage({"k": 3}, {"images": tmp_path / "images.npz", "classifier": clf_dir, "real": tmp_path / "real.npz"},
                   tmp_path / "m.json")
    got = json.loads((tmp_path / "m.json").read_text())
    want = classification_metrics(tiny_classifier.logits(images), images.labels, images.class_names)
    fr, ff = tiny_classifier.features(real), tiny_classifier.features(images)
    want["fid"] = fid(fr, ff)
    want.update(prdc(fr, ff, k=3))
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    assert got["fid"] > 1e-3, got["fid"]  # far from the ~1e-12 of FID(x, x): the comparison has teeth


# -- mixtures: the control source when it is short ------------------------------------------


def test_a_short_control_source_is_used_whole_before_any_image_repeats():
    """Replace with allow_repeats: when a class of the second source has fewer images than
    needed, every one of them is used once before any is drawn again."""
    from ouroboros.data.mixtures import replace

    real = ImageSet.create(np.zeros((20, 1, 2, 2), np.uint8), np.repeat([0, 1], 10), ["a", "b"], "real:a")
    pixels = np.arange(1, 8, dtype=np.uint8)[:, None, None, None] * np.ones((1, 1, 2, 2), np.uint8)
    short = ImageSet.create(pixels, [0, 0, 0, 1, 1, 1, 1], ["a", "b"], "real:b")  # 3 and 4 images
    for seed in range(5):
        out = replace(real, short, 0.8, seed=seed, allow_repeats=True)  # needs 8 per class
        from_b = out.images[out.source == "real:b", 0, 0, 0]
        counts = np.bincount(from_b, minlength=8)[1:]
        assert counts.sum() == 16 and (counts >= 1).all(), counts
        assert out.class_counts().tolist() == [10, 10]


# -- the contamination study's plan: who trains on what ------------------------------------


def test_contamination_plan_keeps_the_splits_apart_and_wires_each_cell_to_its_sources(tmp_path):
    """Hataya et al.'s design: the generator learns from its own real split, the control
    mixes in a *different* real split, mixtures are built from the downstream training
    split, and every classifier is scored on a test split none of them saw."""
    from ouroboros.config import load_config
    from ouroboros.studies import contamination

    config = load_config(None, ["study=contamination", "contamination.archs=[cnn]", "contamination.seeds=[0,1]"],
                         base={"name": "science"})
    splits = contamination.load_splits(config)
    assert {"train", "generator", "control", "test"} <= set(splits)
    seen = {}
    for role, part in splits.items():  # digits has no duplicate images, so pixels identify them
        for im in part.images:
            assert seen.setdefault(bytes(im), role) == role, f"an image is in both {seen[bytes(im)]} and {role}"
    plan = contamination.plan(config, tmp_path / "cache", splits)
    roles_by_hash = {part.content_hash(): role for role, part in splits.items()}

    def roles(stage):
        """The real splits a stage's output is made from, through all its inputs."""
        if stage.kind == "data":
            return {roles_by_hash[stage.params["content_hash"]]}
        return set().union(*(roles(d) for d in stage.deps.values()))

    expected = {"generated": {"train", "generator"}, "simple": {"train", "generator"},
                "diverse": {"train", "generator"}, "+ generated": {"train", "generator"},
                "real + generated": {"train", "generator"}, "real control": {"train", "control"},
                "+ real": {"train", "control"}}
    for cell in plan.cells:
        want = expected.get(cell.source, {"train"})  # the small real set alone
        if cell.ratio == 0.0 and cell.table in ("1", "5"):
            want = {"train"}  # nothing replaced: the clean training split
        assert roles(cell.mixture) == want, (cell.table, cell.source, cell.ratio)
        if cell.source in ("real control", "+ real") and cell.mixture.kind == "mix":
            assert cell.mixture.params["allow_repeats"] is True  # the control may be short of a class
    for seed, pools in plan.pools.items():
        for pool in pools.values():
            fits = [d for d in pool.deps.values() if d.kind == "fit"]
            assert fits and all(roles(f) == {"generator"} for f in fits)
    fit_keys = {seed: pools["simple"].deps["model"].key for seed, pools in plan.pools.items()}
    assert len(set(fit_keys.values())) == 2  # every seed refits the pool generator
    assert plan.runs
    for stage in plan.runs.values():
        assert roles(stage.deps["test"]) == {"test"}
        assert "test" not in roles(stage.deps["train"])
