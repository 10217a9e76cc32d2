"""Ferbach et al.'s classifier rewards for reward curation (ouroboros.studies.curation):
r = gamma q_c(x) (reward class) and r = gamma max_y q(y|x) (reward confidence), chosen
K-choice Bradley-Terry over draws of any class, the expected_reward rows, unchanged keys
for the label reward, and bad settings."""

import json

import numpy as np
import pytest

from ouroboros.config import load_config
from ouroboros.data.imageset import ImageSet
from ouroboros.runner import Runner
from ouroboros.studies import curation, loop


N = 60

LOGITS = np.log(np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [1 / 3, 1 / 3, 1 / 3]]))


def test_class_and_confidence_rewards_are_gamma_times_the_classifiers_probabilities():
    names = ("a", "b", "c")
    labels = np.array([1, 1, 1])  # the images' own labels do not enter these rewards
    target = curation.reward_values({"reward_scale": 5.0, "reward": "class", "target_class": "b"}, LOGITS + 2.0,
                                    labels, names)
    assert np.allclose(target, 5 * np.array([0.2, 0.3, 1 / 3]))  # softmax is shift-invariant
    confident = curation.reward_values({"reward_scale": 2.0, "reward": "confidence"}, LOGITS, labels, names)
    assert np.allclose(confident, 2 * np.array([0.7, 0.6, 1 / 3]))
    label = curation.reward_values({"reward_scale": 1.0}, LOGITS, np.array([0, 2, 1]), names)  # the old reward
    assert np.allclose(label, np.log([0.7, 0.6, 1 / 3]))


def test_k_choice_any_keeps_each_draw_with_its_bradley_terry_probability():
    rewards = np.log([1.0, 2.0, 3.0, 4.0])  # one group of K = 4: kept with probability 1:2:3:4 / 10
    kept = [np.flatnonzero(~curation.k_choice_any(rewards, 4, np.random.default_rng(s)))[0] for s in range(20000)]
    freq = np.bincount(kept, minlength=4) / len(kept)
    assert np.allclose(freq, [0.1, 0.2, 0.3, 0.4], atol=0.012)  # sd of a frequency <= 0.0035


def test_k_choice_any_groups_draws_of_different_classes_so_a_class_reward_moves_the_shares():
    # 1000 draws in class order, the first 10% of the target class with reward 50 (certainly
    # chosen in its group), the rest 0: groups of 4 drawn at random whatever the order, so the
    # chosen share is P(a group holds one) ~ 1 - 0.9^4 (consecutive groups would keep 10%)
    target = np.arange(1000) < 100
    removed = curation.k_choice_any(np.where(target, 50.0, 0.0), 4, np.random.default_rng(2))
    assert (~removed).sum() == 250  # one kept per group
    share = target[~removed].mean()
    assert abs(share - (1 - (1 - target.mean()) ** 4)) < 0.06 and share > 2.5 * target.mean()
    # the per-class grouping of the label reward cannot move shares: one kept per class group
    by_class = curation.k_choice(target.astype(int), np.where(target, 50.0, 0.0), 4, np.random.default_rng(2))
    assert abs(target[~by_class].mean() - target.mean()) < 0.02


def test_the_label_rewards_stage_parameters_keep_their_old_keys():
    assert curation.CurationConfig(kind="reward").params() == {"kind": "reward", "choices": 4, "reward_scale": 1.0}
    assert curation.CurationConfig(kind="reward", reward="class", target_class="3").params() == {
        "kind": "reward", "choices": 4, "reward_scale": 1.0, "reward": "class", "target_class": "3"}
    assert curation.CurationConfig(kind="reward", reward="confidence").params()["reward"] == "confidence"


def _config(*extra):
    return load_config(None, ["loop.generations=3", "loop.guidance=[1.0]", "loop.seeds=[0]",
                              f"loop.samples_per_generation={N}", "loop.labels=sampled", "classifier.epochs=20",
                              "executor.workers=1", "loop.generators=[{family: gaussian, settings: {space: pca, "
                              "components: 8}}]", "loop.curation.kind=reward", "loop.curation.choices=4", *extra],
                       base={"name": "reward"})


def test_a_class_reward_in_the_loop_keeps_one_of_k_draws_of_any_class_and_records_the_expected_reward(
        tmp_path, digits):
    runner = Runner(tmp_path, workers=1, progress=False)
    config = _config("loop.curation.reward=class", "loop.curation.target_class='0'",
                     "loop.curation.reward_scale=50")
    plan = loop.plan(config, runner.cache, digits)
    ((_, stages),) = plan.chains.items()
    paths = runner.run([e for _, _, e in stages])
    shares = []
    for g, (fit, sample, evaluate) in enumerate(stages):
        train = ImageSet.load(paths[fit.deps["train"].key])
        shares.append(float((train.labels == 0).mean()))
        assert "expected_reward" in json.loads(paths[evaluate.key].read_text())
        assert evaluate.params["reward"] == {"kind": "reward", "choices": 4, "reward_scale": 50.0,
                                             "reward": "class", "target_class": "0"}
        if g:
            assert len(train) == N  # one kept of each group of 4 of the 4 N draws
    # class 0 is a tenth of the real data; a sure class-0 draw wins its group of 4 draws
    assert shares[0] == pytest.approx(0.1, abs=0.02) and shares[1] > 0.2 and shares[2] > shares[1]
    rewards = [json.loads(paths[e.key].read_text())["expected_reward"] for _, _, e in stages]
    assert rewards[2] > rewards[0]


def test_without_a_classifier_reward_the_evaluate_stage_is_unchanged(digits):
    plan = loop.plan(_config(), None, digits)  # reward label: the evaluate stages keep their parameters
    ((_, stages),) = plan.chains.items()
    assert all("reward" not in e.params for _, _, e in stages)
