"""`Captions`: the captions an `ImageSet` may carry, several per image.

Image captioning data (COCO, Flickr-30k, the captioned digits) gives each image a few
reference captions. An ImageSet keeps them in one `Captions` object beside its other
per-image fields, and it travels with the images through every subset, concatenation,
mixture, save and load:

- ``texts``: one tuple of captions per image (at least one each, in the dataset's order);
- ``ids``: one string per image naming the image its captions belong to (a COCO image
  id, a Flickr-30k file stem, ``digits:<index>``). A generated image made from one of
  those captions keeps the captions and the id of the image it stands in for, so a
  folder of generated images keyed by id pairs up with the real set.

On disk the captions are three plain arrays of the ImageSet's ``.npz`` (``ARRAYS``):
all captions in order, the number each image has, and the ids. Nothing is pickled.
The loaders of captioned datasets live in `ouroboros.data.caption_loaders`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ouroboros.errors import UserError

ARRAYS = ("caption_texts", "caption_counts", "caption_ids")


@dataclass(frozen=True, eq=False)
class Captions:
    texts: tuple[tuple[str, ...], ...]
    ids: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.texts):
            raise UserError(f"captions: {len(self.ids)} ids for {len(self.texts)} images; give one id per image")
        for i, group in enumerate(self.texts):
            if not group or not all(isinstance(t, str) and t.strip() for t in group):
                raise UserError(f"captions: image {i} ({self.ids[i]!r}) has no caption or an empty one; "
                                "every image needs at least one non-empty caption")
        if not all(isinstance(i, str) for i in self.ids):
            raise UserError("captions: ids must be strings")
        try:
            json.dumps([self.ids, self.texts], ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise UserError("captions: a caption or id holds text that is not valid UTF-8 (a lone surrogate); "
                            "fix the captions file") from None

    @classmethod
    def create(cls, texts: Sequence[Sequence[str]], ids: Sequence[str] | None = None) -> "Captions":
        """Captions from one sequence of strings per image; ids default to the images' positions."""
        texts = tuple(tuple(group) for group in texts)
        return cls(texts, tuple(str(i) for i in (range(len(texts)) if ids is None else ids)))

    def __len__(self) -> int:
        return len(self.texts)

    def __repr__(self) -> str:  # not every caption: an ImageSet's repr would run to megabytes
        return f"Captions({len(self)} images, {sum(len(t) for t in self.texts)} captions)"

    def subset(self, index: np.ndarray) -> "Captions":
        return Captions(tuple(self.texts[i] for i in index.tolist()), tuple(self.ids[i] for i in index.tolist()))

    @staticmethod
    def concat(parts: Sequence["Captions | None"]) -> "Captions | None":
        """The captions of concatenated sets: None when no set has captions; a set without
        captions beside one with them is an error (its images would have no reference)."""
        if all(p is None for p in parts):
            return None
        if any(p is None for p in parts):
            raise UserError("cannot combine a captioned image set with one without captions: every image of a "
                            "captioning set needs its captions (caption the other set, or drop the captions)")
        return Captions(sum((p.texts for p in parts), ()), sum((p.ids for p in parts), ()))

    def update_hash(self, h) -> None:
        """Feed the captions into an ImageSet's content hash (JSON: unambiguous for any text)."""
        h.update(json.dumps([self.ids, self.texts], ensure_ascii=False).encode("utf-8"))

    # -- the .npz arrays --------------------------------------------------------------

    def arrays(self) -> dict[str, np.ndarray]:
        flat = [t for group in self.texts for t in group]
        return {"caption_texts": np.array(flat, dtype=np.str_).reshape(len(flat)),
                "caption_counts": np.array([len(g) for g in self.texts], dtype=np.int64).reshape(len(self)),
                "caption_ids": np.array(self.ids, dtype=np.str_).reshape(len(self))}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], n: int) -> "Captions | None":
        """The captions stored in an .npz's arrays, checked; None when it has none."""
        present = [name for name in ARRAYS if name in arrays]
        if not present:
            return None
        if len(present) != len(ARRAYS):
            raise UserError(f"caption arrays {sorted(set(ARRAYS) - set(present))} are missing; "
                            "write the file with ImageSet.save")
        texts, counts, ids = (arrays[name] for name in ARRAYS)
        if (texts.dtype.kind != "U" or texts.ndim != 1 or counts.dtype.kind not in "iu" or counts.shape != (n,)
                or ids.dtype.kind != "U" or ids.shape != (n,) or (counts < 1).any()
                or int(counts.sum()) != len(texts)):
            raise UserError(f"its caption arrays do not fit {n} images (one count >= 1 and one id per "
                            "image, as many captions as the counts add up to); the file is corrupt")
        ends = np.cumsum(counts).tolist()
        flat = texts.tolist()
        groups = tuple(tuple(flat[end - c:end]) for end, c in zip(ends, counts.tolist()))
        return cls(groups, tuple(ids.tolist()))
