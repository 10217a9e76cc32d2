"""Captioned datasets on disk -> `ImageSet` with `Captions`.

- COCO captions (`load_coco`): an annotations file
  (``{"images": [{"id": 391895, "file_name": "...jpg"}, ...], "annotations": [{"image_id":
  391895, "id": 1, "caption": "..."}, ...]}``, e.g. ``captions_val2014.json``) and the
  folder holding the images.
- Karpathy's split files (`load_karpathy`): ``dataset_coco.json``, ``dataset_flickr30k.json``
  (and ``dataset_flickr8k.json``): ``{"dataset": "coco", "images": [{"filepath": "val2014",
  "filename": "...jpg", "split": "train" | "val" | "test" | "restval", "cocoid": 391895,
  "sentences": [{"raw": "..."}, ...]}, ...]}`` and the image folder (COCO's images lie
  in ``<folder>/<filepath>/<filename>``, Flickr's in ``<folder>/<filename>``).
- The embedded default, digits captioned from their pixels: `ouroboros.data.digit_captions`.

Captioning data has no classes: every image has the one class ``image``, so mixtures
(replace, append, the control) work on the set as a whole. Image ids are strings: the
COCO image id, or for Flickr the file name's stem. Captions are kept as written, with
runs of white space made one space. Every image keeps all its captions, in file order.

Bad input is one `UserError` line: malformed JSON, captions whose image ids match no
image, an image without a caption, a file name that leaves the image folder, a missing
or unreadable image. `read_annotations` and `read_results` are also what
``ouroboros caption-metrics`` reads.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

import numpy as np

from ouroboros.data.captions import Captions
from ouroboros.data.imageset import ImageSet
from ouroboros.data.loaders import _read_image
from ouroboros.errors import UserError, printable
from ouroboros.io import read_bytes_bounded

CLASS = "image"
KARPATHY_SPLITS = ("train", "restval", "val", "test")


def _is_id(value) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def read_json(path: str | Path, what: str):
    """A JSON file (captions files can be large: the "table" size limit), or one UserError line."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{what} file not found: {printable(path)}")
    try:
        return json.loads(read_bytes_bounded(path, f"{what} file", "table").decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise UserError(f"{what} file {printable(path)} is not UTF-8 text; save it as UTF-8 JSON") from None
    except (ValueError, RecursionError) as exc:
        raise UserError(f"{what} file {printable(path)} is not valid JSON ({printable(exc)})") from None


def clean(caption: str) -> str:
    return " ".join(caption.split())


def read_annotations(path: str | Path) -> tuple[list, dict]:
    """A COCO captions file: (its image records, or [] when it lists none; captions by image
    id, as written, in file order). Every caption's image id must be a listed image and
    every image must have a caption that is not blank."""
    data = read_json(path, "annotations")
    anns = data.get("annotations") if isinstance(data, dict) else None
    shape = '{"annotations": [{"image_id": 1, "caption": "..."}, ...], "images": [{"id": 1, ...}, ...]}'
    if not isinstance(anns, list) or not all(isinstance(a, dict) and _is_id(a.get("image_id"))
                                             and isinstance(a.get("caption"), str) for a in anns):
        raise UserError(f"{printable(path)} is not a COCO captions file: it needs {shape}")
    images = data.get("images", [])
    if not isinstance(images, list) or not all(isinstance(im, dict) and _is_id(im.get("id")) for im in images):
        raise UserError(f"{printable(path)}: 'images' must be a list of image records with an 'id' each: {shape}")
    refs: dict = {im["id"]: [] for im in images}
    if len(refs) != len(images):
        raise UserError(f"{printable(path)} lists an image id twice in 'images'; each image once")
    for a in anns:
        if images and a["image_id"] not in refs:
            raise UserError(f"{printable(path)}: captions for image id {a['image_id']!r} match no image in its "
                            "'images' list; add the image or remove its captions")
        refs.setdefault(a["image_id"], []).append(a["caption"])
    bare = [k for k, v in refs.items() if not any(clean(c) for c in v)]
    if bare:
        raise UserError(f"{printable(path)}: {len(bare)} image(s) have no caption (image id {bare[0]!r} first); "
                        "every image needs at least one caption: add captions or remove the image")
    if not refs:
        raise UserError(f"{printable(path)} holds no captions")
    return images, refs


def read_results(path: str | Path, refs: dict) -> dict:
    """A COCO results file (``[{"image_id": 1, "caption": "..."}, ...]``): one caption per
    image, every image id one of the annotations'. Returns captions by image id."""
    data = read_json(path, "results")
    if not isinstance(data, list) or not all(isinstance(r, dict) and _is_id(r.get("image_id"))
                                             and isinstance(r.get("caption"), str) for r in data):
        raise UserError(f'{printable(path)} is not a COCO results file: it needs [{{"image_id": 1, "caption": '
                        '"..."}, ...]')
    if not data:
        raise UserError(f"{printable(path)} holds no results")
    out: dict = {}
    for r in data:
        if r["image_id"] not in refs:
            unknown = sorted({repr(x["image_id"]) for x in data if x["image_id"] not in refs})
            raise UserError(f"{printable(path)}: {len(unknown)} image id(s) are not in the annotations "
                            f"({', '.join(unknown[:3])}{', ...' if len(unknown) > 3 else ''}); results must "
                            "caption images of the annotations file")
        if r["image_id"] in out:
            raise UserError(f"{printable(path)}: image id {r['image_id']!r} has more than one result; "
                            "give one caption per image")
        out[r["image_id"]] = r["caption"]
    return out


def _image_path(folder: Path, *parts: str, where: str) -> Path:
    rel = PurePosixPath(*parts)
    if rel.is_absolute() or ".." in rel.parts or "\\" in str(rel) or not rel.parts:
        raise UserError(f"{where}: image file name {printable(str(rel))!r} leaves the image folder; "
                        "file names must be relative paths inside it")
    return folder / rel


def _read_images(paths: list[Path], size: int | None) -> np.ndarray:
    """N x C x H x W uint8: grey when every image is, else RGB; resized to size x size."""
    from PIL import Image

    for p in paths:
        if not p.is_file():
            raise UserError(f"image file not found: {printable(p)} (check the image folder)")
    arrays = [_read_image(p) for p in paths]
    if any(a.ndim == 3 for a in arrays):
        arrays = [np.repeat(a[:, :, None], 3, axis=2) if a.ndim == 2 else a for a in arrays]
    if size is not None:
        arrays = [a if a.shape[:2] == (size, size)
                  else np.asarray(Image.fromarray(a).resize((size, size), Image.BILINEAR)) for a in arrays]
    if len({a.shape for a in arrays}) > 1:
        raise UserError("the images have different sizes; give a size to resize them to size x size")
    images = np.stack(arrays)
    return images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)


def _check_size_and_limit(size, limit) -> None:
    for name, value in (("size", size), ("limit", limit)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise UserError(f"{name} must be a whole number >= 1; got {value!r}")


def _captioned(images: np.ndarray, texts, ids, source: str) -> ImageSet:
    return ImageSet.create(images, np.zeros(len(images), np.int64), [CLASS], source=source,
                           captions=Captions.create(texts, [str(i) for i in ids]))


def load_coco(annotations: str | Path, image_dir: str | Path, size: int | None = None,
              limit: int | None = None) -> ImageSet:
    """COCO captions: the images listed in `annotations` (the first `limit` of them), read
    from `image_dir` by their ``file_name`` and resized to `size` x `size`."""
    _check_size_and_limit(size, limit)
    images, refs = read_annotations(annotations)
    if not images:
        raise UserError(f"{printable(annotations)} lists no images; a dataset needs its 'images' list "
                        "(id and file_name of each)")
    images = images[:limit]
    for im in images:
        if not isinstance(im.get("file_name"), str):
            raise UserError(f"{printable(annotations)}: image {im['id']!r} has no 'file_name'")
    paths = [_image_path(Path(image_dir), im["file_name"], where=printable(annotations)) for im in images]
    texts = [[clean(c) for c in refs[im["id"]] if clean(c)] for im in images]
    return _captioned(_read_images(paths, size), texts, [im["id"] for im in images], "real:coco")


def load_karpathy(path: str | Path, image_dir: str | Path, splits: str | tuple[str, ...] = ("train", "restval"),
                  size: int | None = None, limit: int | None = None) -> ImageSet:
    """A Karpathy split file (``dataset_coco.json``, ``dataset_flickr30k.json``): the images
    of the given splits (default: train and restval, the usual training set; ``"test"``
    for the 5,000 test images), their ``raw`` sentences as captions."""
    _check_size_and_limit(size, limit)
    splits = (splits,) if isinstance(splits, str) else tuple(splits)
    if not splits or any(s not in KARPATHY_SPLITS for s in splits):
        raise UserError(f"Karpathy splits are {', '.join(KARPATHY_SPLITS)}; got {list(splits)}")
    data = read_json(path, "Karpathy split")
    records = data.get("images") if isinstance(data, dict) else None
    ok = isinstance(records, list) and all(
        isinstance(r, dict) and isinstance(r.get("filename"), str) and r.get("split") in KARPATHY_SPLITS
        and isinstance(r.get("filepath", ""), str) and isinstance(r.get("sentences"), list)
        and all(isinstance(s, dict) and isinstance(s.get("raw"), str) for s in r["sentences"]) for r in records)
    if not ok:
        raise UserError(f'{printable(path)} is not a Karpathy split file: it needs {{"images": [{{"filename": '
                        '"...jpg", "split": "train", "sentences": [{"raw": "..."}, ...]}, ...]}')
    chosen = [r for r in records if r["split"] in splits][:limit]
    if not chosen:
        raise UserError(f"{printable(path)} has no images in split(s) {', '.join(splits)}")
    texts = [[clean(s["raw"]) for s in r["sentences"] if clean(s["raw"])] for r in chosen]
    for r, t in zip(chosen, texts):
        if not t:
            raise UserError(f"{printable(path)}: image {printable(r['filename'])} has no caption; every image "
                            "needs at least one sentence")
    ids = [r["cocoid"] if _is_id(r.get("cocoid")) else PurePosixPath(r["filename"]).stem for r in chosen]
    paths = [_image_path(Path(image_dir), *([r["filepath"]] if r.get("filepath") else []), r["filename"],
                         where=printable(path)) for r in chosen]
    name = data.get("dataset")
    name = name if isinstance(name, str) and name.isidentifier() else "karpathy"
    return _captioned(_read_images(paths, size), texts, ids, f"real:{name}")
