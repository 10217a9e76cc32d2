"""Curation before training (`loop.curation`): a filter between a generation's candidate
pool and its training set.

Where it sits. For generation g >= 1 (generation 0 trains on real data, uncurated) the
*candidates* are the images the scenario (ouroboros.studies.scenarios) may draw from:
the outputs O_k of the window's generations, and the real images the scenario uses
(none under replace; the real split R under accumulate, accumulate-subsample, augment
and mix; the m new reservoir images under fresh). The filter removes some candidates;
the scenario then assembles the training set from the survivors, exactly as defined
there, with every size clipped to what survived (a draw of k from a pool with fewer
than k survivors takes them all; mix's round(rho N) real images are the first
survivors of the chain's real order; fresh's new images that were removed are used up,
not replaced). So under replace the set shrinks to the survivors of O_{g-1}.

A filter's verdict on an image is fixed per image, as a real watermark's or detector's
is: the same image is judged the same in every generation it is a candidate (under
accumulate-subsample O_0 is a candidate of every later generation). An image is
identified by where it was made, which every candidate keeps: its position in the real
split R, or its position in the output O_k of generation k's model. The watermark
draws one uniform number per image from the chain's seed and that identity
(`image_uniforms`); the detector's probe is a fixed function of the image. Reward
selection (below) is a choice among a group, drawn per (chain seed, generation). What
was removed is counted from the candidates' provenance (generation 0 = real) and
recorded per generation in results.csv:

- ``curation_candidates`` / ``curation_removed``: all candidates / those removed;
- ``curation_removed_real`` and ``curation_removed_gen<k>`` (output of the model of
  generation k, provenance generation k + 1), for each provenance present;
- ``curation_recall``: removed generated candidates / generated candidates;
- ``curation_fpr``: removed real candidates / real candidates (absent with none);
- ``curation_detector_fpr`` (detector only): the share of the whole real split R that
  the probe flags, so its false-positive rate is known even when no real image is a
  candidate (replace). R never trains the probe.

Kinds (`kind`):

- ``none``: no filter (the default).
- ``watermark``: removes each generated candidate with probability r (``recall``) and
  each real one with probability f (``false_positive``), independently across images and
  fixed per image: a watermark every generator embeds, read by a detector of that recall
  and false-positive rate, which misses the same images whenever it reads them.
- ``detector``: a real-vs-generated probe, logistic regression on the real-data
  classifier's features (standardised), trained once per chain on *held-out* real
  images and on generation 0's output, and removing every candidate whose probability
  of being generated exceeds ``threshold``. Held out: with this kind, a stratified
  fraction ``probe_fraction`` of the real training split (seeded by data.split_seed) is
  split off before anything trains: it trains only the probe, and the scenario's real
  split R is the rest (the real-data classifier, the measuring instrument, still
  trains on the whole split). The probe's generated images are a separate sample
  (as many as its real ones) from generation 0's model, never images that enter the
  pool, so the probe is scored per generation on images it has not seen.
- ``reward``: the K-choice Bradley-Terry curation of Ferbach et al. (2024). Each
  generation samples K (``choices``) times the images it needs; the generated
  candidates of each O_k are grouped, per class in sample order, into groups of K
  (a last, smaller group per class takes what is left), and one image x_k of each
  group is kept with probability e^{r(x_k)} / sum_j e^{r(x_j)}. Real candidates are
  not curated (the paper curates only the synthetic data). The reward is
  r(x) = beta * log p(y | x): beta (``reward_scale``) times the log-probability that
  the real-data classifier gives the image's own label y. Log-probability, not
  probability: with r = log p the softmax keeps images in proportion to the
  classifier's confidence (Luce's choice rule: twice as confident, twice as likely),
  whereas r = p in [0, 1] would make the surest image of a group at most e times as
  likely as the least sure, a filter that barely curates. beta = 0 keeps a uniform
  choice; beta -> infinity keeps the most confident image of each group.

  ``reward`` picks r (``label`` is the one above). Ferbach et al.'s two classifier rewards,
  with q(.|x) the real-data classifier's softmax and gamma = ``reward_scale``:
  ``class``: r(x) = gamma * q_c(x), the probability of a named class c (``target_class``);
  ``confidence``: r(x) = gamma * max_y q(y|x). Their K candidates are K independent draws
  of the model, whatever their classes, so for these two each O_k's candidates are put in
  a seeded random order and grouped in consecutive groups of K regardless of label (the
  last group may be smaller): the choice can then move mass between classes, which is
  how these rewards change the class proportions (with ``loop.labels: sampled``; balanced
  labels would restore them each generation). ``expected_reward`` (a results.csv row per
  generation, these two rewards only) is the mean of r over the generation's whole output
  (before any curation): E_{p_g}[r(x)], the quantity their Theorem says curation increases.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Literal, Optional

import numpy as np

from ouroboros.data.imageset import ImageSet
from ouroboros.errors import UserError, check_float, check_int

KINDS = ("none", "watermark", "detector", "reward")
REWARDS = ("label", "class", "confidence")  # r = beta log p(y|x), gamma q_c(x), gamma max_y q(y|x)


@dataclass
class CurationConfig:
    kind: Literal["none", "watermark", "detector", "reward"] = "none"
    recall: float = 0.9  # watermark: r, probability that a generated image is removed
    false_positive: float = 0.0  # watermark: f, probability that a real image is removed
    threshold: float = 0.5  # detector: remove when the probe's P(generated | x) exceeds it
    probe_fraction: float = 0.1  # detector: share of the real training split held out for the probe
    choices: int = 4  # reward: K, candidates sampled per kept image
    reward_scale: float = 1.0  # reward: beta in r(x) = beta * log p(y | x); gamma for class and confidence
    # reward: which r (see the module docstring): label (beta log p(y|x), groups within a class),
    # class (gamma q_c(x) of the class target_class) or confidence (gamma max_y q(y|x)); these two
    # group candidates across classes
    reward: Literal["label", "class", "confidence"] = "label"
    target_class: Optional[str] = None  # reward class: the class c whose probability is the reward

    def validate(self, where: str = "loop.curation") -> None:
        if self.kind not in KINDS:  # a config built in Python skips the Literal check
            raise UserError(f"{where}.kind: unknown curation {self.kind!r}; use one of {', '.join(KINDS)}")
        check_float(f"{where}.recall", self.recall, 0.0, 1.0)
        check_float(f"{where}.false_positive", self.false_positive, 0.0, 1.0)
        check_float(f"{where}.threshold", self.threshold, 0.0, 1.0, lo_open=True, hi_open=True)
        check_float(f"{where}.probe_fraction", self.probe_fraction, 0.0, 1.0, lo_open=True, hi_open=True)
        check_int(f"{where}.choices", self.choices, 1, 1000)
        check_float(f"{where}.reward_scale", self.reward_scale, 0.0, 1000.0)
        if self.reward not in REWARDS:
            raise UserError(f"{where}.reward: unknown reward {self.reward!r}; use one of {', '.join(REWARDS)}")
        if self.reward != "label" and self.kind != "reward":
            raise UserError(f"{where}.reward applies to kind reward; set {where}.kind: reward or remove it")
        if self.reward == "class" and self.target_class is None:
            raise UserError(f"{where}.reward class needs {where}.target_class, the name of the class whose "
                            "probability is the reward (e.g. target_class: '0')")
        if self.target_class is not None:
            if self.reward != "class":
                raise UserError(f"{where}.target_class applies to reward: class only; set {where}.reward: class "
                                "or remove it")
            if not isinstance(self.target_class, str) or not self.target_class:
                raise UserError(f"{where}.target_class must be a class name; got {self.target_class!r}")

    def check_classes(self, class_names, where: str = "loop.curation") -> None:
        """UserError when the class reward's target is not one of the data's classes."""
        if self.target_class is not None and self.target_class not in class_names:
            shown = ", ".join(repr(c) for c in list(class_names)[:20])
            raise UserError(f"{where}.target_class {self.target_class!r} is not a class of the data; its classes "
                            f"are {shown}")

    def params(self) -> dict:
        """The settings this kind reads (stage parameters: changing another kind's
        setting does not recompute it)."""
        used = {"none": (), "watermark": ("recall", "false_positive"), "detector": ("threshold",),
                "reward": ("choices", "reward_scale")}[self.kind]
        if self.kind == "reward" and self.reward != "label":  # label's keys stay as they were
            used += ("reward",) + (("target_class",) if self.reward == "class" else ())
        full = asdict(self)
        return {"kind": self.kind, **{k: full[k] for k in used}}


# -- the filters: each returns a boolean mask over the candidates, True = removed ------


def watermark(generation: np.ndarray, recall: float, false_positive: float, uniforms: np.ndarray) -> np.ndarray:
    """Remove each generated candidate (provenance generation > 0) with probability
    `recall` and each real one with probability `false_positive`: candidate i goes when its
    uniform number (`image_uniforms`: fixed per image) is below its probability."""
    p = np.where(np.asarray(generation) > 0, recall, false_positive)
    return np.asarray(uniforms) < p


def image_uniforms(seed: int, origin: int, size: int, index: np.ndarray | None = None) -> np.ndarray:
    """One uniform number in [0, 1) per image, a function of the chain's `seed` and the
    image's identity alone: `origin` -1 for the real split R, k for the output O_k of
    generation k's model, and the image's position in it (`index`, default all `size` of
    them). The same image gets the same number in every generation."""
    u = np.random.default_rng([int(seed), int(origin) + 1]).random(size)
    return u if index is None else u[np.asarray(index, dtype=np.int64)]


def k_choice(labels: np.ndarray, rewards: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """K-choice Bradley-Terry selection: group the candidates per class, in index order,
    into consecutive groups of k (the last group of a class may be smaller) and keep one
    per group, x_i with probability exp(r_i) / sum_j exp(r_j) over its group. Returns
    the removed mask."""
    labels, rewards = np.asarray(labels), np.asarray(rewards, dtype=np.float64)
    removed = np.ones(len(labels), dtype=bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        for start in range(0, len(members), k):
            group = members[start: start + k]
            r = np.exp(rewards[group] - rewards[group].max())  # softmax, stable
            removed[group[rng.choice(len(group), p=r / r.sum())]] = False
    return removed


def k_choice_any(rewards: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """K-choice Bradley-Terry selection over K independent draws whatever their classes:
    the candidates in a random order (`rng`), consecutive groups of k (the last may be
    smaller), one kept per group with probability exp(r_i) / sum_j exp(r_j). Returns the
    removed mask."""
    rewards = np.asarray(rewards, dtype=np.float64)
    removed = np.ones(len(rewards), dtype=bool)
    order = rng.permutation(len(rewards))
    for start in range(0, len(order), k):
        group = order[start: start + k]
        r = np.exp(rewards[group] - rewards[group].max())
        removed[group[rng.choice(len(group), p=r / r.sum())]] = False
    return removed


def reward_values(cfg: dict, logits: np.ndarray, labels: np.ndarray, class_names) -> np.ndarray:
    """r(x) of each image under the curation settings `cfg` (`CurationConfig.params`):
    beta log p(y|x) (reward label), gamma q_c(x) (class) or gamma max_y q(y|x) (confidence),
    from the real-data classifier's `logits`."""
    scale, reward = float(cfg["reward_scale"]), cfg.get("reward", "label")
    if reward == "label":
        return scale * log_label_probability(logits, labels)
    logits = np.asarray(logits, dtype=np.float64)
    q = np.exp(logits - logits.max(axis=1, keepdims=True))
    q /= q.sum(axis=1, keepdims=True)
    if reward == "class":
        return scale * q[:, list(class_names).index(cfg["target_class"])]
    return scale * q.max(axis=1)


def log_label_probability(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """log p(y | x) of each image's own label y under softmax(logits)."""
    logits = np.asarray(logits, dtype=np.float64)
    top = logits.max(axis=1, keepdims=True)
    log_z = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
    return logits[np.arange(len(logits)), labels] - log_z


@dataclass
class Probe:
    """A logistic-regression real-vs-generated probe on standardised features:
    P(generated | x) = sigmoid(w . (x - mean) / scale + b)."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    @classmethod
    def fit(cls, real: np.ndarray, generated: np.ndarray, seed: int = 0) -> Probe:
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        x = np.concatenate([real, generated]).astype(np.float64)
        y = np.r_[np.zeros(len(real)), np.ones(len(generated))]
        scaler = StandardScaler().fit(x)
        lr = LogisticRegression(max_iter=2000, random_state=seed).fit(scaler.transform(x), y)
        return cls(scaler.mean_, scaler.scale_, lr.coef_[0], float(lr.intercept_[0]))

    def prob_generated(self, features: np.ndarray) -> np.ndarray:
        z = ((np.asarray(features, dtype=np.float64) - self.mean) / self.scale) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))

    def to_json(self) -> dict:
        return {"format": "ouroboros.Probe", "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                "coef": self.coef.tolist(), "intercept": self.intercept}

    @classmethod
    def from_json(cls, data: dict) -> Probe:
        if data.get("format") != "ouroboros.Probe":
            raise UserError("not a saved ouroboros probe (format ouroboros.Probe expected)")
        return cls(np.asarray(data["mean"]), np.asarray(data["scale"]), np.asarray(data["coef"]),
                   float(data["intercept"]))

    @classmethod
    def load(cls, path) -> Probe:
        with open(path) as f:
            return cls.from_json(json.load(f))


# -- bookkeeping ----------------------------------------------------------------------


def removal_stats(generation: np.ndarray, removed: np.ndarray) -> dict[str, float]:
    """What the filter removed, from the candidates' provenance generation (0 = real)."""
    generation, removed = np.asarray(generation), np.asarray(removed, dtype=bool)
    real = generation == 0
    out = {"curation_candidates": float(len(generation)), "curation_removed": float(removed.sum()),
           "curation_removed_real": float((removed & real).sum())}
    for p in sorted(set(generation[~real].tolist())):
        out[f"curation_removed_gen{p - 1}"] = float((removed & (generation == p)).sum())
    if (~real).any():
        out["curation_recall"] = float(removed[~real].mean())
    if real.any():
        out["curation_fpr"] = float(removed[real].mean())
    return out


def check_class_left(train: ImageSet, generation: int, curation: dict, stats: dict) -> None:
    """A runtime UserError when curation left a class of generation g's training set empty."""
    counts = train.class_counts()
    if (counts == 0).any():
        name = train.class_names[int(np.flatnonzero(counts == 0)[0])]
        raise UserError(
            f"curation ({curation['kind']}) left generation {generation}'s training set with no images of class "
            f"{name!r} (it removed {int(stats['curation_removed'])} of {int(stats['curation_candidates'])} "
            f"candidates); {FIX[curation['kind']]}, or keep real data in the set (e.g. scenario mix)")


FIX = {"watermark": "lower loop.curation.recall", "detector": "raise loop.curation.threshold",
       "reward": "check the generator", "none": "check the scenario"}


def certain_empty_class(cfg: CurationConfig, real_labels_per_generation: list[np.ndarray | None],
                        class_names: tuple[str, ...]) -> None:
    """The config error, before anything runs, when a watermark filter surely empties a
    class: with recall 1 every generated image goes, so generation g keeps only its real
    candidates' survivors (none with false_positive 1). `real_labels_per_generation[g - 1]`
    holds the labels of the real images generation g's scenario may use (None: none)."""
    if cfg.kind != "watermark" or cfg.recall < 1.0:
        return
    for g, labels in enumerate(real_labels_per_generation, start=1):
        counts = np.zeros(len(class_names), dtype=int) if labels is None or cfg.false_positive >= 1.0 else \
            np.bincount(labels, minlength=len(class_names))
        if (counts == 0).any():
            name = class_names[int(np.flatnonzero(counts == 0)[0])]
            why = "no real images" if labels is None else (
                "false_positive 1 removes every real one" if cfg.false_positive >= 1.0
                else f"its real images have none of class {name!r}")
            raise UserError(
                f"loop.curation: a watermark with recall 1 removes every generated image, and generation {g}'s "
                f"training set has {why}, so class {name!r} would be left empty; lower loop.curation.recall "
                "(or false_positive), or use a scenario that keeps real data (e.g. mix)")
