"""Captions for handwritten digits, composed from what each image shows (no download).

The captioning task needs real captioned data; the embedded digits have only labels. So
each image gets five captions built from its class and from four attributes measured
from its pixels (`measure`), put into words (`describe`) and through varied templates:
"a thick slanted seven near the top", "the digit 7, written small and thin", ... A
captioner then has something real to learn beyond the class, and to get wrong.

Attributes (ink = pixel value / 255, image H x W):

- thickness: 2 x ink mass / total variation of the ink (the ink's outline length) -- about
  the stroke width in pixels: a 1-pixel line gives ~1, a 3-pixel bar ~2.6;
- slant: how far the stroke moves right per row going up, from the ink's second moments
  (-cov(column, row) / var(row)): > 0 leans right like "/", < 0 leans left like "\\";
- size: the area of the bounding box of the pixels at least half as dark as the darkest,
  as a fraction of the image;
- position: the ink's centroid offset from the image centre, as fractions of H and W.

Thickness and size have no natural zero (they depend on resolution and on the class: a
one is narrow), so they are words only at the ends of their own class: the thinnest and
thickest third of a class's images in the set are "thin" and "thick", likewise "small"
and "large". Slant and position do have a zero: a digit is "slanted" when it leans more
than `SLANT` (about 8.5 degrees) and "near the top" etc. when its centroid is more than
`OFFSET` of the image off centre (MNIST digits are centred by their centroid, so they
rarely are). Which templates an image gets is drawn from a seed made of its pixels:
the same image always gets the same five captions, whatever set it is in.
"""

from __future__ import annotations

import zlib

import numpy as np

from ouroboros.data.captions import Captions
from ouroboros.data.imageset import ImageSet
from ouroboros.errors import UserError

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SLANT = 0.15  # tan(8.5 degrees): columns per row
OFFSET = 0.06  # of the image's height or width
CAPTIONS_PER_IMAGE = 5


def measure(images: np.ndarray) -> dict[str, np.ndarray]:
    """The four attributes of every image of an N x 1 x H x W uint8 stack (module docstring)."""
    if images.ndim != 4 or images.shape[1] != 1:
        raise UserError(f"digit captions need greyscale images (N x 1 x H x W); got shape {images.shape}")
    x = images[:, 0].astype(np.float64) / 255.0
    n, h, w = x.shape
    mass = np.maximum(x.sum((1, 2)), 1e-12)
    framed = np.pad(x, ((0, 0), (1, 1), (1, 1)))  # the outline closes at the image's border too
    outline = np.abs(np.diff(framed, axis=1)).sum((1, 2)) + np.abs(np.diff(framed, axis=2)).sum((1, 2))
    rows, cols = np.arange(h, dtype=np.float64)[None, :, None], np.arange(w, dtype=np.float64)[None, None, :]
    cy, cx = (x * rows).sum((1, 2)) / mass, (x * cols).sum((1, 2)) / mass
    dy, dx = rows - cy[:, None, None], cols - cx[:, None, None]
    var_rows = np.maximum((x * dy**2).sum((1, 2)) / mass, 1e-12)
    cov = (x * dy * dx).sum((1, 2)) / mass
    dark = x >= 0.5 * x.max(axis=(1, 2), keepdims=True)
    in_rows, in_cols = dark.any(2), dark.any(1)
    height = h - in_rows.argmax(1) - in_rows[:, ::-1].argmax(1)
    width = w - in_cols.argmax(1) - in_cols[:, ::-1].argmax(1)
    return {"thickness": 2 * mass / np.maximum(outline, 1e-12), "slant": -cov / var_rows,
            "size": height * width / (h * w), "dy": (cy - (h - 1) / 2) / h, "dx": (cx - (w - 1) / 2) / w}


def _ends_of_class(values: np.ndarray, labels: np.ndarray, low: str, high: str) -> list[str | None]:
    """`low` for the lowest third of each class's values, `high` for the highest third."""
    words: list[str | None] = [None] * len(values)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        lo, hi = np.quantile(values[idx], [1 / 3, 2 / 3])
        for i in idx.tolist():
            words[i] = low if values[i] < lo else high if values[i] > hi else None
    return words


def describe(attributes: dict[str, np.ndarray], labels: np.ndarray) -> list[dict[str, str | None]]:
    """Per image: its thickness, size, lean and position in words (None: unremarkable)."""
    thick = _ends_of_class(attributes["thickness"], labels, "thin", "thick")
    size = _ends_of_class(attributes["size"], labels, "small", "large")
    out = []
    for i in range(len(labels)):
        slant, dy, dx = (float(attributes[k][i]) for k in ("slant", "dy", "dx"))
        lean = "right" if slant > SLANT else "left" if slant < -SLANT else None
        vertical = "top" if dy < -OFFSET else "bottom" if dy > OFFSET else None
        horizontal = "left" if dx < -OFFSET else "right" if dx > OFFSET else None
        if vertical:
            where = f"near the {vertical} {horizontal}" if horizontal else f"near the {vertical}"
        else:
            where = f"on the {horizontal}" if horizontal else None
        out.append({"thickness": thick[i], "size": size[i], "lean": lean, "where": where})
    return out


def _a(text: str) -> str:
    return f"{'an' if text[0] in 'aeiou' and not text.startswith('one') else 'a'} {text}"


def _join(*parts: str | None) -> str:
    return " ".join(p for p in parts if p)


# Each template turns (number word, digit, attribute words) into one caption; every one
# names the class, each says the attributes in its own way (or leaves some out), and no
# two can give the same caption (each has its own start).
def _t_adjectives(word, digit, a):
    return _a(_join(a["size"], a["thickness"], "slanted" if a["lean"] else None, word, a["where"]))


def _t_written(word, digit, a):
    how = " and ".join(v for v in (a["size"], a["thickness"]) if v)
    lean = f"leaning {a['lean']}" if a["lean"] else None
    return "the digit " + digit + "".join(f", {p}" for p in (f"written {how}" if how else None, lean) if p)


def _t_handwritten(word, digit, a):
    return _a(_join("handwritten", word, f"leaning to the {a['lean']}" if a["lean"] else "standing upright"))


def _t_stroke(word, digit, a):
    return _join(_a(word), "drawn with", _a(f"{a['thickness'] or 'medium'} stroke"), a["where"])


def _t_number(word, digit, a):
    return _join(_a(_join(a["size"], "number")), digit, f"tilted to the {a['lean']}" if a["lean"] else None)


def _t_image(word, digit, a):
    where = a["where"] or "in the middle"
    return f"an image of the number {word}, {'slanted' if a['lean'] else 'upright'} and {where}"


def _t_picture(word, digit, a):
    return _join("a picture showing", _a(_join(a["thickness"], a["size"], digit)))


def _t_list(word, digit, a):
    lean = f"leaning {a['lean']}" if a["lean"] else None
    return ", ".join(v for v in (f"the number {word}", a["size"], a["thickness"], lean, a["where"]) if v)


TEMPLATES = (_t_adjectives, _t_written, _t_handwritten, _t_stroke, _t_number, _t_image, _t_picture, _t_list)


def compose(image: np.ndarray, label_word: str, digit: str, words: dict[str, str | None]) -> tuple[str, ...]:
    """Five captions of one image: five distinct templates drawn with a seed made of its pixels."""
    rng = np.random.default_rng([zlib.crc32(np.ascontiguousarray(image).tobytes()), len(TEMPLATES)])
    chosen = rng.choice(len(TEMPLATES), CAPTIONS_PER_IMAGE, replace=False)
    return tuple(TEMPLATES[k](label_word, digit, words) for k in chosen.tolist())


def caption_digits(images: ImageSet, name: str) -> ImageSet:
    """The set with five captions per image; ids ``<name>:<index>`` (the index in `images`)."""
    if images.class_names != tuple(str(d) for d in range(10)):
        raise UserError(f"digit captions need the ten digit classes 0..9; got {list(images.class_names)}")
    words = describe(measure(images.images), images.labels)
    texts = [compose(img, NUMBER_WORDS[c], str(c), w)
             for img, c, w in zip(images.images, images.labels.tolist(), words)]
    captions = Captions.create(texts, [f"{name}:{i}" for i in range(len(images))])
    return ImageSet(images.images, images.labels, images.class_names, images.source, images.generation, images.seed,
                    images.condition, captions)


def load_captioned(name: str) -> ImageSet:
    """An embedded digit set with its captions: ``digits`` (scikit-learn) or ``mnist5k``."""
    from ouroboros.data.loaders import EMBEDDED

    if name not in ("digits", "mnist5k"):
        raise UserError(f"captioned digits come from 'digits' or 'mnist5k'; got {name!r}")
    return caption_digits(EMBEDDED[name](), name)
