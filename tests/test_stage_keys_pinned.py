"""Refactors keep behaviour: every stage key (and its kind and label) of the shipped
digits configs' plans is pinned. A change here means caches stop matching: bump the
package version or a stage kind's version on purpose, and update these digests.

The digests were last changed on purpose by the `evaluate:` section (scoring against the
real test split, instruments redrawn per seed, a held-out loss stage per generation), the
detector variant's shared generation 0, the curated variants' controls, fixed watermark
verdicts and N = |R| in the scenario grid; then by the demo's defaults (5 seeds, 500
training steps) and the scenario grid's (5 seeds, the variants its findings need); then by
both fitting their time budgets (5 generations and guidances 1 and 0 in the demo, 6
generations and three diffusion variants in the grid, 25 sampling steps, a classifier
trained 10 epochs); then contamination-digits by Table 10 and the other-source control
(stages added, none of its 531 earlier keys or labels changed). The tails stages
(evaluate.tails: true; one per generation, family and yardstick) are pinned apart:
without them every config plans exactly the stages it did. With
``evaluate.reference: train`` and ``evaluate.instruments: fixed`` and the held-out loss
and tails stages left out, the single-loop configs still plan the very stages they did
before (the digests of commit 640b760)."""

import hashlib
import json
from pathlib import Path

import pytest

from ouroboros.config import load_config

PINNED = {  # config -> (stages in the plan's graph, digest of sorted (key, kind, label))
    "demo": (210, "fb4e19a68442049b"),
    "scenarios-digits": (2690, "50117e49fe4fda6c"),
    "loop-digits-gaussian": (80, "1afb7e9ef7e607bb"),
    "contamination-digits": (707, "2c88e3a4141b1720"),
}
# with evaluate.tails: true
TAILS = {"demo": (265, "b8df62305bf4de8e"), "scenarios-digits": (3215, "298341186ffd0e38"),
         "loop-digits-gaussian": (100, "e693d075a4234af8")}
# evaluate.reference train, evaluate.instruments fixed, without heldout and tails stages: as at 640b760
BEFORE_EVALUATE = {"demo": (162, "ddc3186f2a616077"), "loop-digits-gaussian": (58, "bf1a0256fd90d30b")}
# ... and with the defaults the demo had then (2 seeds, 1,000 training steps, 9 generations, 3 guidances,
# 50 sampling steps, a classifier trained 20 epochs)
BEFORE_DEFAULTS = {"demo": ["loop.seeds=[0,1]", "generator.train_steps=1000", "loop.generations=9",
                            "loop.guidance=[1.0,0.1,0.0]", "generator.sample_steps=50", "classifier.epochs=20"]}


def _graph(targets, skip: tuple[str, ...] = ()) -> dict:
    seen = {}

    def visit(stage):
        if stage.kind not in skip and stage.key not in seen:
            for dep in stage.deps.values():
                visit(dep)
            seen[stage.key] = (stage.kind, stage.label)

    for target in targets:
        visit(target)
    return seen


def _pinned(name: str, overrides: list[str], skip: tuple[str, ...] = ()) -> tuple[int, str]:
    from ouroboros.study import get_study
    import ouroboros.studies.builtin  # noqa: F401

    config = load_config(None if name == "demo" else name, overrides,
                         base={"name": "demo"} if name == "demo" else None)
    study = get_study(config.study)
    prepared = study.prepare(config)
    keys = _graph(study.plan(config, prepared, None).targets(), skip)  # no cache: plans without writing
    return len(keys), hashlib.sha256(json.dumps(sorted(keys.items())).encode()).hexdigest()[:16]


@pytest.mark.parametrize("name", sorted(PINNED))
def test_plans_keep_their_stage_keys(name):
    assert _pinned(name, []) == PINNED[name]


@pytest.mark.parametrize("name", sorted(TAILS))
def test_tails_stages_add_to_the_plan_and_change_nothing_else(name):
    assert _pinned(name, ["evaluate.tails=true"]) == TAILS[name]
    assert _pinned(name, ["evaluate.tails=true"], ("tails",)) == PINNED[name]


@pytest.mark.parametrize("name", sorted(BEFORE_EVALUATE))
def test_fixed_instruments_scored_on_train_plan_what_the_loop_planned_before_the_evaluate_section(name):
    assert _pinned(name, ["evaluate.reference=train", "evaluate.instruments=fixed", *BEFORE_DEFAULTS.get(name, [])],
                   ("heldout", "tails")) == BEFORE_EVALUATE[name]


# the tails (metrics/tails.py), and component_weight/...; the measuring classifier's test accuracy (reference rows)
NEW_METRICS = ("tail_unreached", "tail_mass", "core_mass", "instrument_accuracy")
GOLDEN = ["loop.generations=3", "loop.seeds=[0,1]", "classifier.epochs=1", "executor.workers=1",
          "loop.samples_per_generation=300"]


def test_a_run_gives_the_results_the_code_before_the_refactor_gave(tmp_path):
    """tests/data/golden-gaussian-results.csv: `ouroboros run loop-digits-gaussian` with
    GOLDEN's settings, written when the evaluate section came (before it, by commit
    640b760, before the study protocol; with evaluate.reference train and
    evaluate.instruments fixed that commit's rows are reproduced value for value), then
    given each generation's class_share/<class> and class_entropy rows (the rows before
    them unchanged, value for value). Every
    row and column is the same, each value to the last digit where this machine computes
    as that one did (byte-identical here) and to 1e-9 relative otherwise (another CPU's
    BLAS may round differently). Metrics added since (NEW_METRICS) are rows of their own,
    left out of the comparison."""
    import csv
    import math

    from conftest import run_cli

    proc = run_cli("run", "loop-digits-gaussian", "--out", tmp_path / "run", "--quiet",
                   *sum((["--set", s] for s in [*GOLDEN, "evaluate.tails=true"]), []))
    assert proc.returncode == 0, proc.stderr
    golden = (Path(__file__).parent / "data" / "golden-gaussian-results.csv").read_text().splitlines()
    now = list(csv.DictReader((tmp_path / "run" / "results.csv").read_text().splitlines()))
    added = [r for r in now if r["metric"] in NEW_METRICS or r["metric"].startswith("component_weight/")]
    assert {r["metric"] for r in added} == set(NEW_METRICS)  # a single Gaussian: no component weights
    now = [r for r in now if r not in added]
    assert len(now) == len(golden) - 1  # less the header
    for a, b in zip(csv.DictReader(golden), now):
        assert {k: v for k, v in a.items() if k != "value"} == {k: v for k, v in b.items() if k != "value"}
        assert math.isclose(float(a["value"]), float(b["value"]), rel_tol=1e-9, abs_tol=1e-12), (a, b)


def test_an_option_enters_the_keys_only_where_it_has_an_effect():
    """The classifier's affine warp and the latent family's autoencoder were added without
    changing any key above (`settings_params` leaves inert options out); set, they do."""
    from ouroboros.features.classifier import ClassifierConfig
    from ouroboros.generators.latent import LatentConfig
    from ouroboros.graph import settings_params

    assert "rotation" not in settings_params(ClassifierConfig())
    assert settings_params(ClassifierConfig(scale=0.1))["rotation"] == 0.0
    assert "encoder_hidden" not in settings_params(LatentConfig())
    assert settings_params(LatentConfig(encoder="autoencoder"))["encoder_hidden"] == 256
    assert _pinned("demo", ["classifier.rotation=10"])[1] != PINNED["demo"][1]
