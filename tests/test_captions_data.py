"""Captioned data: captions carried by an ImageSet, the COCO and Karpathy loaders on tiny
files written here, and the embedded digits captioned from their measured pixels."""

import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from ouroboros.data import mixtures
from ouroboros.data.caption_loaders import load_coco, load_karpathy, read_annotations
from ouroboros.data.captions import Captions
from ouroboros.data.digit_captions import NUMBER_WORDS, caption_digits, compose, describe, measure
from ouroboros.data.imageset import ImageSet
from ouroboros.errors import UserError


def _captioned(n=6, source="real:toy", tag="r"):
    rng = np.random.default_rng(len(tag))
    images = rng.integers(0, 256, size=(n, 1, 4, 4), dtype=np.uint8)
    caps = Captions.create([(f"{tag} image {i}", f"{tag} picture {i}")[: 1 + i % 2] for i in range(n)],
                           [f"{tag}{i}" for i in range(n)])
    return ImageSet.create(images, np.arange(n) % 2, ["a", "b"], source=source, captions=caps)


# -- captions travel with the images -------------------------------------------------------------

def test_captions_follow_subset_concat_mixture_and_save(tmp_path):
    real, gen = _captioned(), _captioned(source="gen:x", tag="g")
    sub = real.subset(np.array([4, 1]))
    assert sub.captions.texts == (("r image 4",), ("r image 1", "r picture 1")) and sub.captions.ids == ("r4", "r1")
    both = ImageSet.concat([real, gen])
    assert both.captions.ids == real.captions.ids + gen.captions.ids
    mixed = mixtures.replace(real, gen, 0.5, seed=3)
    for i in range(len(mixed)):  # each image keeps its own captions through the mixture
        tag = "g" if mixed.source[i] == "gen:x" else "r"
        src = gen if tag == "g" else real
        k = int(mixed.captions.ids[i][1:])
        np.testing.assert_array_equal(mixed.images[i], src.images[k])
        assert mixed.captions.texts[i] == src.captions.texts[k]
    back = ImageSet.load(mixed.save(tmp_path / "m.npz"))
    assert back.captions.texts == mixed.captions.texts and back.captions.ids == mixed.captions.ids
    assert back.content_hash() == mixed.content_hash()
    assert back.with_provenance(generation=2).captions is back.captions


def test_captions_enter_the_hash_and_a_set_without_them_keeps_its_own():
    real = _captioned()
    plain = ImageSet.create(real.images, real.labels, real.class_names, "real:toy")
    assert plain.captions is None and plain.content_hash() != real.content_hash()
    other = Captions.create([("changed",)] + list(real.captions.texts[1:]), real.captions.ids)
    assert ImageSet.create(real.images, real.labels, real.class_names, "real:toy",
                           captions=other).content_hash() != real.content_hash()
    again = Captions.create(real.captions.texts, real.captions.ids)
    assert ImageSet.create(real.images, real.labels, real.class_names, "real:toy",
                           captions=again).content_hash() == real.content_hash()


def test_captioned_and_uncaptioned_sets_do_not_mix():
    real = _captioned()
    plain = ImageSet.create(real.images, real.labels, real.class_names, "gen:x")
    with pytest.raises(UserError, match="without captions"):
        mixtures.replace(real, plain, 0.5)
    with pytest.raises(UserError, match="captions are given for 2 images of 6"):
        ImageSet.create(real.images, real.labels, real.class_names, "real:toy", captions=real.captions.subset(
            np.array([0, 1])))
    with pytest.raises(UserError, match="no caption"):
        Captions.create([("a",), ()])
    with pytest.raises(UserError, match="not valid UTF-8"):
        Captions.create([("a \ud800",)])


@pytest.mark.parametrize("damage", ["drop_ids", "counts", "zero_count"])
def test_damaged_caption_arrays_are_user_errors(tmp_path, damage):
    path = _captioned().save(tmp_path / "s.npz")
    with zipfile.ZipFile(path) as zf:
        members = {n: np.load(zf.open(n)) for n in zf.namelist()}
    if damage == "drop_ids":
        del members["caption_ids.npy"]
    elif damage == "counts":
        members["caption_counts.npy"] = members["caption_counts.npy"] + 1
    else:
        members["caption_counts.npy"][0] = 0
    np.savez(tmp_path / "bad.npz", **{n[:-4]: a for n, a in members.items()})
    with pytest.raises(UserError, match="caption"):
        ImageSet.load(tmp_path / "bad.npz")


# -- the digits' attributes, measured on images whose answer is known ---------------------------

def _bars():
    """Six 28 x 28 images: a thin and a thick upright bar, a '/' and a '\\' stroke, a small
    blob near the top left, a large one near the bottom."""
    x = np.zeros((6, 1, 28, 28), np.uint8)
    x[0, 0, 4:24, 13] = 255
    x[1, 0, 4:24, 12:15] = 255
    for r in range(4, 24):
        x[2, 0, r, 8 + (24 - r) // 2] = 255  # top leans right: '/'
        x[3, 0, r, 8 + (r - 4) // 2] = 255  # top leans left: '\'
    x[4, 0, 2:7, 2:7] = 255
    x[5, 0, 10:27, 4:24] = 255
    return x


def test_attributes_are_measured_right():
    a = measure(_bars())
    assert a["thickness"][0] == pytest.approx(1, abs=0.1) and a["thickness"][1] == pytest.approx(3, abs=0.5)
    assert a["slant"][2] > 0.3 and a["slant"][3] < -0.3 and abs(a["slant"][0]) < 1e-9
    assert a["size"][4] < 0.05 < 0.4 < a["size"][5]
    assert a["dy"][4] < -0.06 and a["dx"][4] < -0.06 and a["dy"][5] > 0.06 and abs(a["dx"][0]) < 0.03


def test_words_follow_the_attributes():
    """Thickness and size: the ends of the class in the set; slant and position: fixed thresholds."""
    bars = _bars()
    words = describe(measure(bars), np.zeros(6, np.int64))
    assert (words[2]["lean"], words[3]["lean"], words[0]["lean"]) == ("right", "left", None)
    assert words[4]["where"] == "near the top left" and words[5]["where"] == "near the bottom"
    assert words[0]["where"] is None
    thin_thick_block = describe(measure(bars[[0, 1, 5]]), np.zeros(3, np.int64))
    assert [w["thickness"] for w in thin_thick_block] == ["thin", None, "thick"]
    blob_bar_block = describe(measure(bars[[4, 1, 5]]), np.zeros(3, np.int64))
    assert [w["size"] for w in blob_bar_block] == ["small", None, "large"]
    # per class: beside strokes thinner still, the thin bar is its class's thickest
    per_class = describe(measure(bars[[0, 2, 3, 1, 4, 5]]), np.array([0, 0, 0, 1, 1, 1]))
    assert [w["thickness"] for w in per_class] == ["thick", "thin", None, None, "thin", "thick"]


def test_five_captions_per_digit_naming_its_class(digits):
    train, _ = digits
    captioned = caption_digits(train, "digits")
    assert all(len(t) == 5 and len(set(t)) == 5 for t in captioned.captions.texts)
    for texts, c in zip(captioned.captions.texts, captioned.labels):
        assert all({NUMBER_WORDS[c], str(c)} & set(t.replace(",", "").split(" ")) for t in texts), texts
    assert len({t for g in captioned.captions.texts for t in g}) > 200  # varied, not one template
    assert captioned.captions.ids[:2] == ("digits:0", "digits:1")
    assert caption_digits(train, "digits").content_hash() == captioned.content_hash()


def test_an_image_gets_its_templates_from_its_pixels(digits):
    """The same image with the same attributes: the same captions wherever it is; other
    images draw other templates."""
    images = digits[0].images
    words = {"thickness": "thick", "size": None, "lean": "right", "where": None}
    assert compose(images[3].copy(), "zero", "0", words) == compose(images[3], "zero", "0", words)
    assert len({compose(im, "zero", "0", words) for im in images[:40]}) > 10


# -- COCO and Karpathy files ----------------------------------------------------------------------

def _images(folder, names, size=(6, 5)):
    folder.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(names):
        Image.fromarray(np.full((size[1], size[0], 3), 40 * k, np.uint8)).save(folder / name)


def _write(path, obj):
    path.write_text(json.dumps(obj))
    return path


def test_coco_captions_load_with_their_images(tmp_path):
    _images(tmp_path / "img", ["a.png", "b.png"])
    ann = _write(tmp_path / "captions.json", {
        "images": [{"id": 7, "file_name": "b.png"}, {"id": 3, "file_name": "a.png"}],
        "annotations": [{"image_id": 3, "id": 1, "caption": "A  dog.\n"}, {"image_id": 7, "id": 2, "caption": "A cat."},
                        {"image_id": 3, "id": 5, "caption": "Another dog."}]})
    s = load_coco(ann, tmp_path / "img", size=4)
    assert s.shape == (3, 4, 4) and s.class_names == ("image",) and list(s.source) == ["real:coco"] * 2
    assert s.captions.ids == ("7", "3") and s.captions.texts == (("A cat.",), ("A dog.", "Another dog."))
    assert s.images[0].mean() > s.images[1].mean()  # b.png (brighter) first, as listed
    assert len(load_coco(ann, tmp_path / "img", limit=1)) == 1


def test_karpathy_files_of_coco_and_flickr(tmp_path):
    _images(tmp_path / "coco" / "val2014", ["c1.jpg", "c2.jpg"])
    sent = [{"raw": "A man on a horse.", "tokens": ["a", "man"]}, {"raw": "A rider."}]
    coco = _write(tmp_path / "dataset_coco.json", {"dataset": "coco", "images": [
        {"filepath": "val2014", "filename": "c1.jpg", "split": "test", "cocoid": 11, "sentences": sent},
        {"filepath": "val2014", "filename": "c2.jpg", "split": "restval", "cocoid": 12, "sentences": sent[:1]}]})
    train = load_karpathy(coco, tmp_path / "coco")
    assert train.captions.ids == ("12",) and train.captions.texts == (("A man on a horse.",),)
    assert load_karpathy(coco, tmp_path / "coco", splits="test").captions.texts == (("A man on a horse.", "A rider."),)
    _images(tmp_path / "flickr", ["1000092795.jpg", "10002456.jpg"], size=(8, 8))
    flickr = _write(tmp_path / "dataset_flickr30k.json", {"dataset": "flickr30k", "images": [
        {"filename": "1000092795.jpg", "split": "train", "sentences": sent},
        {"filename": "10002456.jpg", "split": "val", "sentences": sent}]})
    s = load_karpathy(flickr, tmp_path / "flickr", splits=("train", "val"))
    assert s.captions.ids == ("1000092795", "10002456") and list(s.source) == ["real:flickr30k"] * 2
    assert s.shape == (3, 8, 8)


@pytest.mark.parametrize("content, fragment", [
    ('{"annotations": [', "not valid JSON"),
    ({"images": [{"id": 1, "file_name": "a.png"}], "annotations": [{"image_id": 2, "caption": "x"}]},
     "match no image"),
    ({"images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}],
      "annotations": [{"image_id": 1, "caption": "x"}, {"image_id": 2, "caption": "  "}]}, "no caption"),
    ({"images": [{"id": 1, "file_name": "../a.png"}], "annotations": [{"image_id": 1, "caption": "x"}]},
     "leaves the image folder"),
    ({"images": [{"id": 1, "file_name": "gone.png"}], "annotations": [{"image_id": 1, "caption": "x"}]},
     "not found"),
    ({"annotations": [{"image_id": True, "caption": "x"}]}, "not a COCO captions file"),
])
def test_bad_coco_files_are_one_user_error(tmp_path, content, fragment):
    _images(tmp_path / "img", ["a.png", "b.png"])
    path = tmp_path / "captions.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(UserError, match=fragment) as err:
        load_coco(path, tmp_path / "img")
    assert "\n" not in str(err.value)


def test_bad_karpathy_files_are_user_errors(tmp_path):
    path = _write(tmp_path / "k.json", {"images": [{"filename": "a.jpg", "split": "train", "sentences": []}]})
    with pytest.raises(UserError, match="has no caption"):
        load_karpathy(path, tmp_path)
    with pytest.raises(UserError, match="no images in split"):
        load_karpathy(path, tmp_path, splits="test")
    with pytest.raises(UserError, match="Karpathy splits are"):
        load_karpathy(path, tmp_path, splits="dev")
    with pytest.raises(UserError, match="not a Karpathy split file"):
        load_karpathy(_write(tmp_path / "j.json", {"images": [{"filename": "a.jpg"}]}), tmp_path)


def test_annotations_without_an_images_list_give_captions_by_id(tmp_path):
    path = _write(tmp_path / "a.json", {"annotations": [{"image_id": "x", "caption": "one"},
                                                        {"image_id": 4, "caption": "two"},
                                                        {"image_id": "x", "caption": "three"}]})
    assert read_annotations(path) == ([], {"x": ["one", "three"], 4: ["two"]})
