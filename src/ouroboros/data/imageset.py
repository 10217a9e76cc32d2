"""`ImageSet`: images, labels, class names and per-image provenance, saved without pickle.

Images are uint8 arrays of shape N x C x H x W, like any image published on the web.
Provenance travels with every image through every mixture and generation:

- ``source``: ``real:<dataset>`` or ``gen:<generator>``
- ``generation``: how many generative models separate the image from real data
  (0 = real; the output of a model trained on real data is 1, and so on)
- ``seed``: the seed that produced a generated image (-1 for real images)
- ``condition``: the class name, prompt or condition used to generate it ("" for real)
- ``captions`` (optional): several captions per image (`ouroboros.data.captions.Captions`)

On disk an ImageSet is one ``.npz`` holding only plain arrays plus a JSON string with
the metadata. Loading never unpickles, reads each array's header before allocating it,
and checks every field, so a damaged file is a `UserError`, not a crash.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ouroboros.data.captions import ARRAYS as CAPTION_ARRAYS, Captions
from ouroboros.errors import UserError
from ouroboros.errors import _UNSAFE_CATEGORIES, printable  # noqa: F401  (printable: used through this module too)
from ouroboros.io import atomic_path, open_bounded

FORMAT_VERSION = 1
ARRAYS = ("images", "labels", "source", "generation", "seed", "condition", "metadata")


def check_class_names(names, where: str = "an ImageSet") -> tuple[str, ...]:
    """Class names end up in JSON, CSV and report files and in per-class metric names:
    each must be a non-empty string of printable UTF-8, and no two alike."""
    names = tuple(names)
    if not names:
        raise UserError(f"{where} needs at least one class name")
    for name in names:
        if not isinstance(name, str) or not name:
            raise UserError(f"{where}: class names must be non-empty strings; got {name!r}")
        if any(unicodedata.category(ch) in _UNSAFE_CATEGORIES for ch in name):
            raise UserError(
                f"{where}: class name {name!r} holds control characters or bytes that are not UTF-8; "
                "class names must be printable UTF-8 text (rename it)"
            )
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise UserError(f"{where}: class names must be distinct; {dupes} appear more than once")
    return names


def check_fits_in_memory(nbytes: int, what: str) -> None:
    """Refuse to allocate what a file's header declares when it exceeds this machine's
    memory: a corrupt or hostile header must give an error, not a MemoryError or a hang."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not a POSIX system: no limit known
        return
    if nbytes > total:
        raise UserError(f"{what} declares {nbytes:,} bytes, more than this machine's memory ({total:,} bytes); "
                        "the file is corrupt, or too large to load here")


@dataclass(frozen=True, eq=False)
class ImageSet:
    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    source: np.ndarray
    generation: np.ndarray
    seed: np.ndarray
    condition: np.ndarray
    captions: Captions | None = None
    _hash: list = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        imgs = self.images
        if not isinstance(imgs, np.ndarray) or imgs.dtype != np.uint8 or imgs.ndim != 4 or 0 in imgs.shape[1:]:
            raise UserError(
                "images must be a uint8 array of shape N x C x H x W with at least one pixel; "
                f"got {getattr(imgs, 'dtype', type(imgs))} with shape {getattr(imgs, 'shape', None)}"
            )
        n = len(imgs)
        for name in ("labels", "source", "generation", "seed", "condition"):
            arr = getattr(self, name)
            if len(arr) != n:
                raise UserError(f"ImageSet field {name!r} has {len(arr)} entries for {n} images")
        if self.captions is not None and len(self.captions) != n:
            raise UserError(f"ImageSet captions are given for {len(self.captions)} images of {n}")
        check_class_names(self.class_names)
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
        condition: str | Sequence[str] = "", captions: Captions | None = None,
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
            condition=per_image(condition, np.str_), captions=captions,
        )

    def with_provenance(self, source=None, generation=None, condition=None) -> "ImageSet":
        """A copy with some provenance fields replaced (scalars broadcast to every image)."""
        return ImageSet.create(
            self.images, self.labels, self.class_names,
            source=self.source if source is None else source,
            generation=self.generation if generation is None else generation,
            seed=self.seed,
            condition=self.condition if condition is None else condition, captions=self.captions,
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
            if self.captions is not None:  # a set without captions keeps the hash it always had
                self.captions.update_hash(h)
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
            captions=None if self.captions is None else self.captions.subset(index),
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
            captions=Captions.concat([s.captions for s in sets]),
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
                    **({} if self.captions is None else self.captions.arrays()),
                )
        return path

    @classmethod
    def load(cls, path: str | Path) -> "ImageSet":
        """Read a file written by `save`, checking everything before trusting it: a
        corrupt or hostile file gives a `UserError`, never a crash or a huge allocation."""
        path = Path(path)
        if not path.exists():
            raise UserError(f"ImageSet file not found: {path}")
        arrays = _read_npz(path, ARRAYS, optional=CAPTION_ARRAYS)
        meta = _parse_metadata(path, arrays["metadata"])
        images = arrays["images"]
        if images.dtype != np.uint8 or images.ndim != 4:
            raise UserError(f"{path}: 'images' must be a uint8 array N x C x H x W; "
                            f"got {images.dtype} with shape {images.shape}")
        n = len(images)
        for name, kinds, what in (("labels", "iu", "integer"), ("generation", "iu", "integer"),
                                  ("seed", "iu", "integer"), ("source", "U", "string"),
                                  ("condition", "U", "string")):
            arr = arrays[name]
            if arr.dtype.kind not in kinds or arr.shape != (n,):
                raise UserError(f"{path}: {name!r} must hold one {what} per image ({n}); "
                                f"got {arr.dtype} with shape {arr.shape}")
        for name in ("source", "condition"):
            if any(unicodedata.category(ch) == "Cs" for ch in "".join(np.unique(arrays[name]).tolist())):
                raise UserError(f"{path}: {name!r} holds text that is not valid UTF-8; the file is corrupt")
        class_names = check_class_names(meta["class_names"], str(path))
        try:
            return cls(
                images=images,
                # uint64 beyond the int64 range wraps to negative: __post_init__ refuses it
                labels=arrays["labels"].astype(np.int64),
                class_names=class_names,
                source=arrays["source"],
                generation=arrays["generation"].astype(np.int64),
                seed=arrays["seed"].astype(np.int64),
                condition=arrays["condition"],
                captions=Captions.from_arrays(arrays, n),
            )
        except UserError as exc:
            raise UserError(f"{path}: {exc}") from None


def _npy_header(f, size: int, what: str) -> int:
    """Check the .npy header at the start of `f` (`size` bytes in all); returns the data size.

    `np.load` allocates whatever shape a header declares before it reads any data, so a
    200-byte file could ask for terabytes: the declared shape must account for exactly
    the bytes that follow. Object arrays are refused (never unpickled)."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise UserError(f"{what} has .npy format version {version}; only 1.0 and 2.0 are read")
    if dtype.hasobject:
        raise UserError(f"{what} holds Python objects, which are never unpickled; save plain arrays")
    nbytes = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    if nbytes != size - f.tell():
        raise UserError(f"{what} declares shape {shape} of {dtype} ({nbytes:,} bytes) but holds "
                        f"{size - f.tell():,} bytes; the file is truncated or corrupt")
    return nbytes


# Every way the zip, gzip or .npy layers can fail on a damaged file: bad CRC, truncated
# stream, unsupported compression or encryption, malformed header.
_CORRUPT = (zipfile.BadZipFile, zlib.error, struct.error, OSError, EOFError, ValueError, NotImplementedError,
            RuntimeError, OverflowError)


def read_npy(path: str | Path) -> np.ndarray:
    """A plain .npy array, its header checked before anything is allocated."""
    try:
        with open_bounded(path, ".npy file", "data") as f:
            nbytes = _npy_header(f, os.fstat(f.fileno()).st_size, f"{path}")
            check_fits_in_memory(nbytes, str(path))
            f.seek(0)
            return np.lib.format.read_array(f, allow_pickle=False)
    except UserError:
        raise
    except _CORRUPT as exc:
        raise UserError(f"cannot read {path} as a plain .npy array "
                        f"({exc.__class__.__name__}: {printable(exc)})") from None


def _read_npz(path: Path, names: Sequence[str], optional: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """The named arrays of an .npz, each member's header checked (`_npy_header`) before
    anything is allocated, and their total against this machine's memory."""
    unreadable = f"{path} is not a readable ouroboros .npz"
    try:
        with open_bounded(path, "ImageSet file", "data") as fh, zipfile.ZipFile(fh) as zf:
            members = {info.filename: info for info in zf.infolist()}
            missing = [n for n in names if f"{n}.npy" not in members]
            if missing:
                raise UserError(f"{path} is an .npz but not an ouroboros ImageSet: arrays {missing} are missing; "
                                "write it with ImageSet.save")
            names = [*names, *(n for n in optional if f"{n}.npy" in members)]
            total = 0
            for name in names:
                info = members[f"{name}.npy"]
                with zf.open(info) as f:
                    total += _npy_header(f, info.file_size, f"{unreadable}: array {name!r}")
            check_fits_in_memory(total, str(path))
            arrays = {}
            for name in names:
                with zf.open(members[f"{name}.npy"]) as f:
                    arrays[name] = np.lib.format.read_array(f, allow_pickle=False)
            return arrays
    except UserError:
        raise
    except _CORRUPT as exc:
        raise UserError(f"{unreadable} ({exc.__class__.__name__}: {printable(exc)}); "
                        "write it with ImageSet.save") from None


def _parse_metadata(path: Path, arr: np.ndarray) -> dict:
    if arr.dtype.kind != "U" or arr.shape != ():
        raise UserError(f"{path}: 'metadata' must be one JSON string; got {arr.dtype} with shape {arr.shape}")
    try:
        meta = json.loads(str(arr))
    except (ValueError, RecursionError) as exc:
        raise UserError(f"{path}: 'metadata' is not valid JSON ({printable(exc)}); "
                        "write the file with ImageSet.save") from None
    if not isinstance(meta, dict) or meta.get("format") != "ouroboros.ImageSet":
        raise UserError(f"{path} is not an ouroboros ImageSet file (its metadata has no format 'ouroboros.ImageSet')")
    version = meta.get("version")
    if type(version) is not int or not 1 <= version <= FORMAT_VERSION:
        raise UserError(f"{path} has ImageSet format version {version!r}; this ouroboros reads versions "
                        f"1..{FORMAT_VERSION} (a newer file needs a newer ouroboros)")
    if not isinstance(meta.get("class_names"), list):
        raise UserError(f"{path}: its metadata needs 'class_names', a list of strings; write it with ImageSet.save")
    return meta


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
