"""`ImageSet`: images, labels, class names and per-image provenance, saved without pickle.

Images are uint8 arrays of shape N x C x H x W, like any image published on the web.
Provenance travels with every image through every mixture and generation:

- ``source``: ``real:<dataset>`` or ``gen:<generator>``
- ``generation``: how many generative models separate the image from real data
  (0 = real; the output of a model trained on real data is 1, and so on)
- ``seed``: the seed that produced a generated image (-1 for real images)
- ``condition``: the class name, prompt or condition used to generate it ("" for real)

On disk an ImageSet is one ``.npz`` holding only plain arrays plus a JSON string with
the metadata; it loads with ``allow_pickle=False``.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ouroboros.errors import UserError
from ouroboros.io import atomic_path

FORMAT_VERSION = 1


@dataclass(frozen=True, eq=False)
class ImageSet:
    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    source: np.ndarray
    generation: np.ndarray
    seed: np.ndarray
    condition: np.ndarray
    _hash: list = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        imgs = self.images
        if not isinstance(imgs, np.ndarray) or imgs.dtype != np.uint8 or imgs.ndim != 4:
            raise UserError(
                "images must be a uint8 array of shape N x C x H x W; "
                f"got {getattr(imgs, 'dtype', type(imgs))} with shape {getattr(imgs, 'shape', None)}"
            )
        n = len(imgs)
        for name in ("labels", "source", "generation", "seed", "condition"):
            arr = getattr(self, name)
            if len(arr) != n:
                raise UserError(f"ImageSet field {name!r} has {len(arr)} entries for {n} images")
        if len(self.class_names) == 0:
            raise UserError("an ImageSet needs at least one class name")
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise UserError(
                f"labels must lie in [0, {len(self.class_names) - 1}] for {len(self.class_names)} classes; "
                f"got [{self.labels.min()}, {self.labels.max()}]"
            )

    # -- construction -------------------------------------------------------------

    @classmethod
    def create(
        cls,
        images: np.ndarray,
        labels: Sequence[int] | np.ndarray,
        class_names: Sequence[str],
        source: str | Sequence[str],
        generation: int | Sequence[int] = 0,
        seed: int | Sequence[int] = -1,
        condition: str | Sequence[str] = "",
    ) -> "ImageSet":
        """Build a set, broadcasting scalar provenance to every image."""
        images = np.ascontiguousarray(images)
        n = len(images)

        def per_image(value, dtype):
            if isinstance(value, str):
                return np.array([value] * n, dtype=np.str_)  # np.full would truncate to one character
            if isinstance(value, (int, np.integer)):
                return np.full(n, value, dtype=dtype)
            return np.asarray(value, dtype=dtype)

        return cls(
            images=images,
            labels=np.asarray(labels, dtype=np.int64).reshape(n),
            class_names=tuple(str(c) for c in class_names),
            source=per_image(source, np.str_),
            generation=per_image(generation, np.int64),
            seed=per_image(seed, np.int64),
            condition=per_image(condition, np.str_),
        )

    def with_provenance(self, source=None, generation=None, condition=None) -> "ImageSet":
        """A copy with some provenance fields replaced (scalars broadcast to every image)."""
        return ImageSet.create(
            self.images, self.labels, self.class_names,
            source=self.source if source is None else source,
            generation=self.generation if generation is None else generation,
            seed=self.seed,
            condition=self.condition if condition is None else condition,
        )

    # -- basic properties ---------------------------------------------------------

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.num_classes)

    def content_hash(self) -> str:
        """SHA-256 over pixels, labels, class names and provenance (hex, 16 chars)."""
        if not self._hash:
            h = hashlib.sha256()
            h.update(json.dumps([list(self.class_names), list(self.images.shape)]).encode())
            for arr in (self.images, self.labels, self.generation, self.seed):
                h.update(np.ascontiguousarray(arr).tobytes())
            for arr in (self.source, self.condition):
                h.update("\x1f".join(arr.tolist()).encode())
            self._hash.append(h.hexdigest()[:16])
        return self._hash[0]

    # -- selection ----------------------------------------------------------------

    def subset(self, index: np.ndarray | Sequence[int]) -> "ImageSet":
        index = np.asarray(index, dtype=np.int64)
        return ImageSet(
            images=self.images[index],
            labels=self.labels[index],
            class_names=self.class_names,
            source=self.source[index],
            generation=self.generation[index],
            seed=self.seed[index],
            condition=self.condition[index],
        )

    @staticmethod
    def concat(sets: Sequence["ImageSet"]) -> "ImageSet":
        if not sets:
            raise UserError("cannot concatenate zero ImageSets")
        first = sets[0]
        for s in sets[1:]:
            if s.class_names != first.class_names:
                raise UserError(
                    f"class names differ between sets: {list(first.class_names)} vs {list(s.class_names)}"
                )
            if s.shape != first.shape:
                raise UserError(f"image shapes differ between sets: {first.shape} vs {s.shape}")
        return ImageSet(
            images=np.concatenate([s.images for s in sets]),
            labels=np.concatenate([s.labels for s in sets]),
            class_names=first.class_names,
            source=np.concatenate([s.source for s in sets]),
            generation=np.concatenate([s.generation for s in sets]),
            seed=np.concatenate([s.seed for s in sets]),
            condition=np.concatenate([s.condition for s in sets]),
        )

    # -- conversion ---------------------------------------------------------------

    def to_float(self) -> np.ndarray:
        """Images as float32 in [-1, 1], the range the generators and classifiers use."""
        return self.images.astype(np.float32) / 127.5 - 1.0

    # -- persistence --------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write one ``.npz`` atomically (plain arrays + a JSON metadata string)."""
        path = Path(path)
        if path.suffix != ".npz":
            raise UserError(f"ImageSet files end in .npz; got {path}")
        meta = {"format": "ouroboros.ImageSet", "version": FORMAT_VERSION, "class_names": list(self.class_names)}
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(
                    f,
                    images=self.images,
                    labels=self.labels,
                    source=self.source.astype(np.str_),
                    generation=self.generation,
                    seed=self.seed,
                    condition=self.condition.astype(np.str_),
                    metadata=np.array(json.dumps(meta)),
                )
        return path

    @classmethod
    def load(cls, path: str | Path) -> "ImageSet":
        path = Path(path)
        if not path.is_file():
            raise UserError(f"ImageSet file not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
            raise UserError(f"{path} is not a readable ouroboros .npz ({exc}); write it with ImageSet.save") from None
        if "metadata" not in arrays or "images" not in arrays:
            raise UserError(f"{path} is an .npz but not an ouroboros ImageSet (no 'metadata'/'images' arrays)")
        meta = json.loads(str(arrays["metadata"]))
        if meta.get("format") != "ouroboros.ImageSet":
            raise UserError(f"{path} is not an ouroboros ImageSet file")
        return cls(
            images=arrays["images"],
            labels=arrays["labels"].astype(np.int64),
            class_names=tuple(meta["class_names"]),
            source=arrays["source"],
            generation=arrays["generation"].astype(np.int64),
            seed=arrays["seed"].astype(np.int64),
            condition=arrays["condition"],
        )


def quantize(x) -> np.ndarray:
    """Float images in [-1, 1] (numpy or torch) -> uint8, as a published image would be."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().float().numpy()
    x = np.clip(np.asarray(x, dtype=np.float32), -1.0, 1.0)
    return np.round((x + 1.0) * 127.5).astype(np.uint8)


def stratified_split(
    imageset: ImageSet, fractions: dict[str, float], seed: int = 0
) -> dict[str, ImageSet]:
    """Split into disjoint named parts with the given fractions, per class, reproducibly.

    Fractions must be positive and sum to at most 1; each class is shuffled with
    `seed` and cut in order, so every part keeps the class balance of the whole.
    """
    total = sum(fractions.values())
    if any(f <= 0 for f in fractions.values()) or total > 1 + 1e-9:
        raise UserError(f"split fractions must be positive and sum to at most 1; got {fractions}")
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in fractions}
    for c in range(imageset.num_classes):
        idx = np.flatnonzero(imageset.labels == c)
        idx = idx[rng.permutation(len(idx))]
        start = 0
        cum = 0.0
        for name, frac in fractions.items():
            cum += frac
            stop = int(round(cum * len(idx)))
            parts[name].append(idx[start:stop])
            start = stop
    out = {}
    for name, chunks in parts.items():
        index = np.sort(np.concatenate(chunks))
        if len(index) == 0:
            raise UserError(f"split {name!r} ({fractions[name]}) of {len(imageset)} images is empty")
        out[name] = imageset.subset(index)
    return out
