"""Real controls of the contamination study (Hataya et al. 2023): what replaces the same
shares of a training set as the generated images do, but is real.

- ``same-source``: the control split of ``data.train``, more images of the very
  distribution the training set comes from. Generated images that hurt more than it
  hurt by being generated *or* by being different.
- ``other-source``: a second real source of the same classes (the paper's WebVision for
  ImageNet, Flickr-30k for COCO), named by ``contamination.control``. It is different
  without being generated, so comparing the two controls separates "generated" from
  "different". The embedded datasets are each other's: ``digits`` draws its other-source
  control from ``mnist5k``, ``mnist5k`` from ``digits``.

An other-source control must have the training data's classes, in the same order; its
images are resized to the training images' height and width (`ouroboros.data.resize`:
area averaging down, bilinear up). The two embedded datasets frame a digit differently,
and the resizing keeps each one's framing: MNIST centres a 20 x 20 box holding the digit
in a 28 x 28 image (a 4-pixel border), the scikit-learn digits fill their 8 x 8 frame
(each pixel counts the ink of a 4 x 4 block of a 32 x 32 bitmap of the digit). So MNIST's
20 x 20 box is area-averaged to 8 x 8, the way the digits were made, and a digit is
enlarged to 20 x 20 inside MNIST's border. Resized whole, an MNIST digit would fill only
the middle 6 x 6 pixels of the 8 x 8 frame: the study's CNN trained on 539 digits then
classifies 24% of the mnist5k digits correctly, against 56% with the box, and one trained
on 539 MNIST digits 45% of the digits' test split, against 76% (one seed each).
"""

from __future__ import annotations

from ouroboros.data.imageset import ImageSet
from ouroboros.errors import UserError, check_float, check_list, check_text

CONTROLS = ("same-source", "other-source")
COUNTERPARTS = {"digits": "mnist5k", "mnist5k": "digits"}  # data.train -> its embedded other source
BORDERS = {"digits": 0, "mnist5k": 4}  # the empty border around each embedded dataset's digit box


def check_splits_and_sources(where: str, section) -> None:
    """Config check shared by the studies that mix real and generated images (contamination,
    captioning): the four split fractions in [0, 1) summing to at most 1, and the generated
    and other-source control dataset specs, where given, as text."""
    names = ("split_train", "split_generator", "split_control", "split_test")
    for name in names:
        check_float(f"{where}.{name}", getattr(section, name), 0.0, 1.0, hi_open=True)
    if sum(getattr(section, name) for name in names) > 1.0 + 1e-9:
        raise UserError(f"{where} splits must sum to at most 1 (split_train + split_generator + split_control "
                        "+ split_test)")
    for name in ("generated", "control"):
        if getattr(section, name) is not None:
            check_text(f"{where}.{name}", getattr(section, name))


def check_controls(where: str, controls, control: str | None) -> None:
    """Config check: `controls` a non-empty list of distinct CONTROLS; `control` (the
    other-source control's dataset spec) only given when other-source is run."""
    check_list(f"{where}.controls", controls, len(CONTROLS), distinct=True)
    for name in controls:
        if name not in CONTROLS:
            raise UserError(f"{where}.controls: unknown control {name!r}; use {' and/or '.join(CONTROLS)}")
    if control is not None and "other-source" not in controls:
        raise UserError(f"{where}.control names the other-source control, which {where}.controls {list(controls)} "
                        "does not run: add other-source to it, or remove control")


def other_source_spec(control: str | None, train: str) -> str:
    """The dataset spec of the other-source control: `control`, or data.train's embedded counterpart."""
    if control is not None:
        return control
    if train in COUNTERPARTS:
        return COUNTERPARTS[train]
    raise UserError(f"contamination.controls runs other-source, a second real source of the training data's "
                    f"classes: name it as contamination.control (only {' and '.join(COUNTERPARTS)} have an embedded "
                    f"one; data.train is {train})")


def check_same_classes(what: str, names, train_names) -> None:
    """A control's classes must be the training data's, in the same order (labels index them)."""
    names, train_names = list(names), list(train_names)
    if names == train_names:
        return
    if len(names) != len(train_names):
        differ = f"{len(names)} classes, the training data {len(train_names)}"
    else:
        i = next(i for i, (a, b) in enumerate(zip(names, train_names)) if a != b)
        differ = f"class {i} {names[i]!r} where the training data has {train_names[i]!r}"
    raise UserError(f"{what} has {differ} (its classes {names[:5]}{'...' if len(names) > 5 else ''}); a control "
                    "must have the training data's classes in the same order: give one that does")


def load_other_source(control: str | None, train_spec: str, train: ImageSet) -> ImageSet:
    """The other-source control, checked against the training data and resized to its images."""
    from ouroboros.data.loaders import load_dataset
    from ouroboros.data.resize import resize_set

    spec = other_source_spec(control, train_spec)
    what = f"the other-source control {spec}" + ("" if control is not None else f" (the counterpart of {train_spec})")
    try:
        other = load_dataset(spec)
    except UserError as exc:
        raise UserError(f"{what}: {exc}; or remove other-source from contamination.controls") from None
    check_same_classes(what, other.class_names, train.class_names)
    c, h, w = train.shape
    if other.shape[0] != c:
        raise UserError(f"{what} has {other.shape[0]}-channel images, the training data {c}-channel: give a control "
                        "with the training data's channels")
    return resize_set(other, h, w, crop=BORDERS.get(spec, 0), pad=BORDERS.get(train_spec, 0))
