"""The captioning study's stage kinds: generated stand-ins made from captions, and a
captioner trained on a mixture and scored on the test split's captions."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ouroboros.data.imageset import ImageSet
from ouroboros.errors import UserError
from ouroboros.graph import stage_kind
from ouroboros.io import write_json_atomic

EXAMPLES = 8  # test images whose generated captions a caption stage keeps beside its scores


def caption_class(caption: str, class_names) -> int | None:
    """The class a caption names: the first word that is a class name or, for the ten digit
    classes, a number word ("seven"); None when it names none."""
    from ouroboros.data.digit_captions import NUMBER_WORDS

    index = {name.lower(): i for i, name in enumerate(class_names)}
    if tuple(class_names) == tuple(str(d) for d in range(10)):
        index.update({w: i for i, w in enumerate(NUMBER_WORDS)})
    for word in re.findall(r"\w+", caption.lower()):
        if word in index:
            return index[word]
    return None


def prompts_and_classes(real: ImageSet, seed: int) -> tuple[list[str], np.ndarray]:
    """One caption of each image, drawn with `seed` (the prompt its stand-in is made from),
    and the class that caption names (a one-class set: class 0)."""
    rng = np.random.default_rng(seed)
    prompts = [texts[int(rng.integers(len(texts)))] for texts in real.captions.texts]
    if real.num_classes == 1:
        return prompts, np.zeros(len(real), np.int64)
    classes = [caption_class(p, real.class_names) for p in prompts]
    unnamed = [i for i, c in enumerate(classes) if c is None]
    if unnamed:
        raise UserError(f"the class-conditional generator makes an image from the class its caption names, but "
                        f"caption {prompts[unnamed[0]]!r} names none of the classes {list(real.class_names)[:10]} "
                        f"({len(unnamed)} such captions); give captioning.generated, images made from the captions")
    return prompts, np.array(classes, np.int64)


@stage_kind("caption_pool", ".npz", version=1)
def caption_pool_stage(params: dict, deps: dict, out: Path) -> None:
    """One generated stand-in per image of `deps["captions"]`: the fitted class-conditional
    model `deps["model"]` conditioned on the class one of the image's captions names. The
    stand-in keeps all the image's captions and its id (and the prompt as its condition)."""
    from ouroboros.generators.base import load_fitted

    real = ImageSet.load(deps["captions"])
    family, model = load_fitted(deps["model"])
    prompts, labels = prompts_and_classes(real, params["seed"])
    options = {kw: params[p] for p, kw in family.sampling_params.items() if p in params}
    options[family.bias] = params["guidance"]
    made = model.sample(len(real), labels, seed=params["seed"], **options)
    ImageSet(made.images, made.labels, made.class_names, made.source, made.generation, made.seed,
             np.array(prompts, dtype=np.str_), real.captions).save(out)


@stage_kind("caption", ".json", version=1)
def caption_stage(params: dict, deps: dict, out: Path) -> None:
    """Train a captioner (`ouroboros.tasks.captioning`) on the mixture `deps["train"]`,
    caption the test split `deps["test"]` by beam search and score the captions against its
    references (`ouroboros.metrics.captions`: the metrics that can run here)."""
    from ouroboros.metrics.captions import caption_metrics
    from ouroboros.tasks.captioner_config import CaptionerConfig
    from ouroboros.tasks.captioning import train

    mixture, test = ImageSet.load(deps["train"]), ImageSet.load(deps["test"])
    fitted = train(mixture.images, [list(t) for t in mixture.captions.texts], CaptionerConfig(**params["config"]),
                   seed=params["seed"])
    candidates = fitted.generate(test.images)
    scores = caption_metrics(dict(enumerate(candidates)), dict(enumerate(map(list, test.captions.texts))))
    examples = [{"id": test.captions.ids[i], "caption": candidates[i], "references": list(test.captions.texts[i])}
                for i in range(min(EXAMPLES, len(test)))]
    write_json_atomic(out, {"scores": scores, "examples": examples})
