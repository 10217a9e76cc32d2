"""Settings of the model-collapse literature's experiments, mixed into the loop and data
sections (`ouroboros.config_sections`): warm-started retraining (``loop.init``,
``loop.warm_steps``; Bertrand et al. 2024, Ferbach et al. 2024), labels that can drift
(``loop.labels``; Shumailov et al. 2024) and imbalanced real data (``data.class_weights``,
``data.long_tail``; Cao et al. 2019's long-tailed profile).

Each mixin validates its own values (`validate_*`); the checks that need the generator
families (`check_warm_start`, `check_sampled_labels`) or the data's classes
(`class_weights`) run later, still before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Union

from ouroboros.errors import UserError, check_float, check_int, check_list, check_text

MAX_WEIGHT = 1e6  # weights are relative; class counts (5000, 500, 50) may serve as weights
MAX_RATIO = 1e6


@dataclass
class LongTail:
    """An exponential long-tail profile (Cao et al. 2019): class c of C (in the dataset's
    order, class 0 the largest) gets weight ratio^(-c / (C - 1)), so the largest class
    has `ratio` times the images of the smallest."""

    ratio: float = 10.0  # largest / smallest class count, >= 1 (1: balanced)

    def validate(self, where: str) -> None:
        check_float(f"{where}.ratio", self.ratio, 1.0, MAX_RATIO)


@dataclass
class DataImbalance:
    """Imbalanced real data: the loop's real training split subsampled per class
    (`ouroboros.data.class_balance.subsample`: the largest subset with these class
    proportions, seeded by the split's seed) before anything trains on it: generation 0,
    the scenarios' real images, the measuring classifier and the yardstick. The test
    split is left balanced."""

    # One positive weight per class, in the dataset's class order, or a mapping class name ->
    # weight (unnamed classes weigh 1). Relative: [1, 0.1] keeps a tenth as many of class 1.
    class_weights: Optional[Union[dict, list[float]]] = None
    long_tail: Optional[LongTail] = None  # e.g. {ratio: 10}; or class_weights, not both

    def validate_imbalance(self, where: str) -> None:
        weights = self.class_weights
        if weights is not None:
            at = f"{where}.class_weights"
            if isinstance(weights, dict):
                if not weights:
                    raise UserError(f"{at} needs at least one class name")
                items = list(weights.items())
                for name, _ in items:
                    if not isinstance(name, (str, int)) or isinstance(name, bool):
                        raise UserError(f"{at} must map class names to weights; got the key {name!r}")
                    check_text(f"{at} key", str(name), 1000)
            else:
                items = list(enumerate(check_list(at, weights, 10**5)))
            for name, w in items:
                check_float(f"{at}[{name!r}]", w, 0.0, MAX_WEIGHT, lo_open=True)
        if self.long_tail is not None:
            self.long_tail.validate(f"{where}.long_tail")
            if weights is not None:
                raise UserError(f"{where}.class_weights and {where}.long_tail both set the class proportions; "
                                "give one of them")

    def imbalanced(self) -> bool:
        return self.class_weights is not None or self.long_tail is not None


def class_weights(data, class_names: tuple[str, ...], where: str = "data") -> list[float] | None:
    """The per-class weights `data` (a DataImbalance) sets for a dataset with these
    classes (None: balanced as loaded); UserError for a list of the wrong length or a
    class name the data does not have."""
    names = list(class_names)
    if data.long_tail is not None:
        k = len(names)
        return [data.long_tail.ratio ** (-c / (k - 1)) if k > 1 else 1.0 for c in range(k)]
    weights = data.class_weights
    if weights is None:
        return None
    if isinstance(weights, dict):
        unknown = [str(n) for n in weights if str(n) not in names]
        if unknown:
            raise UserError(f"{where}.class_weights names class {unknown[0]!r}, which the data does not have; its "
                            f"classes are {', '.join(names[:20])}{' ...' if len(names) > 20 else ''}")
        by_name = {str(n): float(w) for n, w in weights.items()}
        return [by_name.get(n, 1.0) for n in names]
    if len(weights) != len(names):
        raise UserError(f"{where}.class_weights has {len(weights)} weights, but the data has {len(names)} classes "
                        f"({', '.join(names[:20])}{' ...' if len(names) > 20 else ''}); give one per class, in "
                        "that order, or a mapping class name -> weight")
    return [float(w) for w in weights]


@dataclass
class LoopRetraining:
    """How each generation's model starts and which labels it samples.

    ``init``: ``scratch`` (every generation a fresh model) or ``previous`` (generation
    g > 0 starts from generation g - 1's fitted model of the same chain and family and
    trains ``warm_steps`` more steps: the diffusion families (the latent one with
    encoder_fit: real) continue from its weights, the gmm family runs that many EM
    iterations from its components; see each family's `warm_start`).

    ``labels``: ``balanced`` (each generation's samples cycle through the classes) or
    ``sampled`` (each generation draws its samples' labels, seeded, from the class
    proportions of the set its model trained on, as a multinomial: proportions drift
    from generation to generation and a class whose share reaches 0 is never sampled
    again; the scenarios then draw from their pools uniformly instead of class by class,
    so they keep the pools' proportions in expectation)."""

    init: Literal["scratch", "previous"] = "scratch"
    # init previous: training steps of a warm-started generation (diffusion: optimiser steps;
    # gmm: EM iterations). null: the family's own (generator.train_steps; gmm max_iter).
    warm_steps: Optional[int] = None
    labels: Literal["balanced", "sampled"] = "balanced"

    def validate_retraining(self, where: str) -> None:
        if self.init not in ("scratch", "previous"):  # a config built in Python skips the Literal check
            raise UserError(f"{where}.init must be scratch or previous; got {self.init!r}")
        if self.labels not in ("balanced", "sampled"):
            raise UserError(f"{where}.labels must be balanced or sampled; got {self.labels!r}")
        if self.warm_steps is not None:
            check_int(f"{where}.warm_steps", self.warm_steps, 0, 10**7)
            if self.init != "previous":
                raise UserError(f"{where}.warm_steps applies to warm-started generations only; set {where}.init: "
                                "previous or remove it")


def check_warm_start(config) -> None:
    """With loop.init previous, every family of every variant's pool can warm-start (its
    `GeneratorFamily.warm_start` accepts its settings): else one UserError naming it."""
    from ouroboros.generators.base import get_family

    if config.loop.init != "previous":
        return
    for v, (_, lc) in enumerate(config.loop.cells()):
        at = f"loop.variants[{v}]." if config.loop.variants is not None else "loop."
        for i, entry in enumerate(lc.families()):
            family = get_family(entry.family)
            settings = (config.generator if family.config is type(config.generator) and not entry.settings
                        else entry.generator_config(config.generator, f"{at}generators[{i}]"))
            why = ("its family does not say how (GeneratorFamily.warm_start)" if family.warm_start is None
                   else family.warm_start(settings))
            if why:
                where = "the generator" if config.loop.generators is None and lc.generators is None \
                    else f"{at}generators[{i}] ({family.name})"
                raise UserError(f"loop.init is previous, but {where} cannot warm-start: {why}; use loop.init: "
                                "scratch")


def check_sampled_labels(config) -> None:
    """loop.labels sampled needs class-conditional generators: an unconditional one's
    labels carry no information to drift."""
    if config.loop.labels != "sampled":
        return
    for _, lc in config.loop.cells():
        for entry in lc.families():
            if (entry.settings or {}).get("conditional", config.generator.conditional) is False:
                raise UserError("loop.labels is sampled, but the generator is unconditional (conditional: false): "
                                "its samples' labels carry no information to drift; use loop.labels: balanced")

