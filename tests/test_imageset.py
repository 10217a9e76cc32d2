import numpy as np
import pytest

from ouroboros.data.imageset import ImageSet, quantize, stratified_split
from ouroboros.errors import UserError


def test_save_load_roundtrip_keeps_provenance(tmp_path, toy_set):
    gen = toy_set.subset(np.arange(10))
    gen = ImageSet.create(gen.images, gen.labels, gen.class_names, source="gen:diffusion", generation=3, seed=7,
                          condition=[f"class={c}" for c in gen.labels])
    both = ImageSet.concat([toy_set, gen])
    path = both.save(tmp_path / "set.npz")
    back = ImageSet.load(path)
    assert back.content_hash() == both.content_hash()
    np.testing.assert_array_equal(back.images, both.images)
    assert back.class_names == ("a", "b", "c")
    assert list(back.source[-10:]) == ["gen:diffusion"] * 10
    assert back.generation.tolist() == [0] * 30 + [3] * 10
    assert back.seed.tolist() == [-1] * 30 + [7] * 10
    assert back.condition[-1].startswith("class=")


def test_hash_sees_pixels_labels_and_provenance(toy_set):
    h = toy_set.content_hash()
    img = toy_set.images.copy()
    img[0, 0, 0, 0] ^= 1
    assert ImageSet.create(img, toy_set.labels, toy_set.class_names, "real:toy").content_hash() != h
    assert ImageSet.create(toy_set.images, toy_set.labels, toy_set.class_names, "real:other").content_hash() != h
    assert ImageSet.create(toy_set.images, toy_set.labels, toy_set.class_names, "real:toy", generation=1).content_hash() != h
    assert ImageSet.create(toy_set.images, toy_set.labels, toy_set.class_names, "real:toy").content_hash() == h
    # Every field that identifies a training set: labels, seed, condition, class names.
    labels = toy_set.labels.copy()
    labels[[0, 1]] = labels[[1, 0]]
    assert ImageSet.create(toy_set.images, labels, toy_set.class_names, "real:toy").content_hash() != h
    assert ImageSet.create(toy_set.images, toy_set.labels, toy_set.class_names, "real:toy", seed=0).content_hash() != h
    assert ImageSet.create(toy_set.images, toy_set.labels, toy_set.class_names, "real:toy",
                           condition="c").content_hash() != h
    assert ImageSet.create(toy_set.images, toy_set.labels, ["a", "b", "d"], "real:toy").content_hash() != h


def test_load_never_unpickles(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, images=np.array([object()], dtype=object), metadata=np.array("{}"))
    with pytest.raises(UserError):
        ImageSet.load(path)


def test_load_rejects_non_npz(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a readable"):
        ImageSet.load(path)


def test_invalid_sets_are_rejected():
    with pytest.raises(UserError, match="uint8"):
        ImageSet.create(np.zeros((2, 1, 4, 4), np.float32), [0, 1], ["a", "b"], "real:x")
    with pytest.raises(UserError, match="labels must lie"):
        ImageSet.create(np.zeros((2, 1, 4, 4), np.uint8), [0, 2], ["a", "b"], "real:x")


def test_concat_refuses_mismatched_classes(toy_set):
    other = ImageSet.create(toy_set.images, toy_set.labels, ["x", "y", "z"], "real:o")
    with pytest.raises(UserError, match="class names differ"):
        ImageSet.concat([toy_set, other])


def test_quantize_is_uint8_and_clips():
    x = np.array([-2.0, -1.0, 0.0, 0.999, 1.0, 3.0])
    assert quantize(x).tolist() == [0, 0, 128, 255, 255, 255]
    assert quantize(x).dtype == np.uint8


def test_stratified_split_is_disjoint_balanced_and_reproducible(toy_set):
    parts = stratified_split(toy_set, {"train": 0.6, "test": 0.4}, seed=3)
    assert len(parts["train"]) == 18 and len(parts["test"]) == 12
    assert parts["train"].class_counts().tolist() == [6, 6, 6]
    a = {bytes(im) for im in parts["train"].images}
    b = {bytes(im) for im in parts["test"].images}
    assert not a & b
    again = stratified_split(toy_set, {"train": 0.6, "test": 0.4}, seed=3)
    assert again["test"].content_hash() == parts["test"].content_hash()
    with pytest.raises(UserError):
        stratified_split(toy_set, {"a": 0.8, "b": 0.4})
