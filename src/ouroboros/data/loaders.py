"""Dataset loaders: something on disk (or embedded) -> `ImageSet`.

A dataset is named by a spec string:

- ``digits``: the 1,797 8x8 handwritten digits embedded in scikit-learn (no download).
- ``idx:PATH``: MNIST-format IDX files; PATH is a folder holding one
  ``*images-idx3-ubyte`` and one ``*labels-idx1-ubyte`` file (optionally ``.gz``),
  or ``IMAGES,LABELS`` naming the two files.
- ``cifar10:PATH``: CIFAR-10 *binary* batches (``data_batch_*.bin``/``test_batch.bin``,
  or one ``.bin`` file); never the pickled Python version.
- ``imagefolder:PATH``: ``PATH/<class>/*.png|jpg|jpeg|bmp``.
- ``npz:PATH`` or any path ending in ``.npz``: an ImageSet written by ouroboros.

A bare path is recognised by what it holds. ``LOADERS`` maps the names to functions.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path
from typing import Callable

import numpy as np

from ouroboros.data.imageset import ImageSet
from ouroboros.errors import UserError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def load_digits() -> ImageSet:
    """scikit-learn's embedded digits: 16 grey levels scaled to 0..255, 1 x 8 x 8."""
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    return ImageSet.create(images, d.target, [str(i) for i in range(10)], source="real:digits")


# -- MNIST-format IDX ---------------------------------------------------------------


def _read_idx(path: Path, expected_dims: int) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise UserError(f"cannot read IDX file {path}: {exc}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise UserError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    dims = data[3]
    if dims != expected_dims:
        raise UserError(f"{path} has {dims} dimensions; expected {expected_dims}")
    header = 4 + 4 * dims
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    body = np.frombuffer(data, dtype=np.uint8, offset=header)
    if body.size != int(np.prod(shape)):
        raise UserError(f"{path} is truncated: header says {shape}, found {body.size} bytes of data")
    return body.reshape(shape)


def load_idx(spec: str) -> ImageSet:
    if "," in spec:
        img_path, lbl_path = (Path(p) for p in spec.split(",", 1))
    else:
        folder = Path(spec)
        if not folder.is_dir():
            raise UserError(f"IDX folder not found: {folder}")
        imgs = sorted(folder.glob("*images*idx3-ubyte*"))
        lbls = sorted(folder.glob("*labels*idx1-ubyte*"))
        if len(imgs) != 1 or len(lbls) != 1:
            raise UserError(
                f"{folder} must hold exactly one '*images-idx3-ubyte' and one '*labels-idx1-ubyte' file; "
                f"found {len(imgs)} and {len(lbls)} (name the pair as idx:IMAGES,LABELS)"
            )
        img_path, lbl_path = imgs[0], lbls[0]
    images = _read_idx(img_path, 3)
    labels = _read_idx(lbl_path, 1).astype(np.int64)
    if len(images) != len(labels):
        raise UserError(f"{img_path} has {len(images)} images but {lbl_path} has {len(labels)} labels")
    num_classes = max(int(labels.max()) + 1, 2) if len(labels) else 2
    return ImageSet.create(images[:, None], labels, [str(i) for i in range(num_classes)], source=f"real:{img_path.stem}")


# -- CIFAR-10 binary ----------------------------------------------------------------


def load_cifar10(spec: str) -> ImageSet:
    path = Path(spec)
    if path.is_dir():
        files = sorted(path.glob("data_batch_*.bin")) + sorted(path.glob("test_batch.bin"))
        if not files:
            files = sorted(path.glob("*.bin"))
    elif path.is_file():
        files = [path]
    else:
        raise UserError(f"CIFAR-10 path not found: {path}")
    if not files:
        raise UserError(f"no CIFAR-10 binary batches (*.bin) in {path}; the pickled 'python' version is not read")
    record = 1 + 3 * 32 * 32
    chunks = []
    for f in files:
        raw = np.fromfile(f, dtype=np.uint8)
        if raw.size == 0 or raw.size % record:
            raise UserError(f"{f} is not a CIFAR-10 binary batch (size {raw.size} is not a multiple of {record})")
        chunks.append(raw.reshape(-1, record))
    rows = np.concatenate(chunks)
    labels = rows[:, 0].astype(np.int64)
    if labels.max() >= 10:
        raise UserError(f"{path}: label {labels.max()} out of range for CIFAR-10")
    names = CIFAR10_CLASSES
    meta = (path if path.is_dir() else path.parent) / "batches.meta.txt"
    if meta.is_file():
        listed = [line.strip() for line in meta.read_text().splitlines() if line.strip()]
        if len(listed) == 10:
            names = tuple(listed)
    images = rows[:, 1:].reshape(-1, 3, 32, 32)
    return ImageSet.create(images, labels, names, source="real:cifar10")


# -- ImageFolder --------------------------------------------------------------------


def load_imagefolder(spec: str, size: int | None = None, source: str | None = None) -> ImageSet:
    """``root/<class>/*.png|jpg``: classes are sub-folder names in sorted order.

    Images are converted to greyscale if every image is greyscale, else to RGB. All
    images must share one size unless `size` is given, which resizes (bilinear) to
    size x size.
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(spec)
    if not root.is_dir():
        raise UserError(f"ImageFolder root not found: {root}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise UserError(
            f"ImageFolder {root} has {len(classes)} class folder(s); it needs at least 2 (root/<class>/*.png)"
        )
    files: list[tuple[Path, int]] = []
    for c, name in enumerate(classes):
        found = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise UserError(f"class folder {root / name} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        files.extend((p, c) for p in found)

    pil_images = []
    for p, _ in files:
        try:
            with Image.open(p) as im:
                im.load()
                pil_images.append(im.copy())
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise UserError(f"cannot read image {p}: {exc.__class__.__name__}: {exc} (remove or replace the file)") from None
    grey = all(im.mode in ("L", "1", "I;16", "I") for im in pil_images)
    mode = "L" if grey else "RGB"
    arrays = []
    for (p, _), im in zip(files, pil_images):
        im = im.convert(mode)
        if size is not None and im.size != (size, size):
            im = im.resize((size, size), Image.BILINEAR)
        arrays.append(np.asarray(im, dtype=np.uint8))
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise UserError(f"images in {root} have different sizes {sorted(shapes)[:3]}...; set a size to resize them")
    images = np.stack(arrays)
    images = images[:, None] if grey else images.transpose(0, 3, 1, 2)
    labels = [c for _, c in files]
    return ImageSet.create(images, labels, classes, source=source or f"real:{root.name}")


# -- registry -----------------------------------------------------------------------

LOADERS: dict[str, Callable[[str], ImageSet]] = {
    "digits": lambda _: load_digits(),
    "idx": load_idx,
    "cifar10": load_cifar10,
    "imagefolder": load_imagefolder,
    "npz": ImageSet.load,
}


def _detect(path: Path) -> str:
    if path.suffix == ".npz":
        return "npz"
    if path.is_file() and path.suffix == ".bin":
        return "cifar10"
    if path.is_dir():
        names = [p.name for p in path.iterdir()]
        if any(re.search(r"idx3-ubyte", n) for n in names):
            return "idx"
        if any(n.endswith(".bin") and ("batch" in n) for n in names):
            return "cifar10"
        return "imagefolder"
    raise UserError(f"dataset not found: {path} (use 'digits', a .npz, or idx:/cifar10:/imagefolder: PATH)")


def load_dataset(spec: str) -> ImageSet:
    """Load a dataset named by `spec` (see the module docstring)."""
    if not isinstance(spec, str) or not spec:
        raise UserError(f"a dataset spec must be a non-empty string; got {spec!r}")
    name, sep, rest = spec.partition(":")
    if sep and name in LOADERS:
        return LOADERS[name](rest)
    if spec in LOADERS and spec == "digits":
        return load_digits()
    return LOADERS[_detect(Path(spec))](spec)
