import io
import json
import re
import zipfile

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
    other = ImageSet.create(toy_set.images, toy_set.labels, toy_set.class_names, "real:toy", generation=1)
    assert other.content_hash() != h
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
    # class names end up in JSON, CSV and metric names: printable UTF-8, distinct, at least one
    for names, fragment in ((["a", "a"], "distinct"), ([], "at least one class"), (["a", "b\tc"], "control"),
                            (["a", "\udcff"], "not UTF-8"), (["a", ""], "non-empty")):
        with pytest.raises(UserError, match=fragment):
            ImageSet.create(np.zeros((2, 1, 4, 4), np.uint8), [0, 0], names, "real:x")


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


# -- hostile or corrupt .npz files: one UserError each, never a crash --------------------------

def _valid_arrays(n=4):
    meta = {"format": "ouroboros.ImageSet", "version": 1, "class_names": ["a", "b"]}
    return {
        "images": np.arange(n * 9, dtype=np.uint8).reshape(n, 1, 3, 3),
        "labels": np.arange(n, dtype=np.int64) % 2,
        "source": np.array(["real:x"] * n),
        "generation": np.zeros(n, np.int64),
        "seed": np.full(n, -1, np.int64),
        "condition": np.array([""] * n),
        "metadata": np.array(json.dumps(meta)),
    }


def _write(path, **overrides):
    """Write an .npz with the valid arrays, some replaced (or dropped when None)."""
    arrays = {**_valid_arrays(), **overrides}
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def _meta(**fields):
    return np.array(json.dumps({"format": "ouroboros.ImageSet", "version": 1, "class_names": ["a", "b"], **fields}))


BAD_NPZ = {
    "metadata not JSON": ({"metadata": np.array("{not json")}, "not valid JSON"),
    "metadata deeply nested": ({"metadata": np.array("[" * 100000)}, "not valid JSON"),
    "metadata a JSON list": ({"metadata": np.array("[1, 2]")}, "not an ouroboros ImageSet file"),
    "metadata not a string": ({"metadata": np.zeros(3)}, "one JSON string"),
    "no class_names": ({"metadata": np.array(json.dumps({"format": "ouroboros.ImageSet", "version": 1}))},
                       "class_names"),
    "class_names not a list": ({"metadata": _meta(class_names="ab")}, "class_names"),
    "class name not a string": ({"metadata": _meta(class_names=["a", 3])}, "non-empty strings"),
    "class name a lone surrogate": ({"metadata": _meta(class_names=["a", "\udcff"])}, "not UTF-8"),
    "class name with a newline": ({"metadata": _meta(class_names=["a", "b\nc"])}, "control characters"),
    "duplicate class names": ({"metadata": _meta(class_names=["a", "a"])}, "distinct"),
    "future version": ({"metadata": _meta(version=99)}, "version 99"),
    "labels missing": ({"labels": None}, "['labels'] are missing"),
    "images float": ({"images": np.zeros((4, 1, 3, 3), np.float32)}, "'images' must be a uint8"),
    "images 3-D": ({"images": np.zeros((4, 3, 3), np.uint8)}, "'images' must be a uint8"),
    "images 0x0": ({"images": np.zeros((4, 1, 0, 0), np.uint8)}, "at least one pixel"),
    "labels float": ({"labels": np.zeros(4, np.float64)}, "'labels' must hold one integer"),
    "labels 2-D": ({"labels": np.zeros((4, 1), np.int64)}, "'labels' must hold one integer"),
    "labels short": ({"labels": np.zeros(3, np.int64)}, "'labels' must hold one integer per image (4)"),
    "labels out of range": ({"labels": np.array([0, 1, 2, 0])}, "labels must lie in [0, 1]"),
    "labels uint64 that wrap": ({"labels": np.array([0, 1, 2**64 - 1, 0], np.uint64)}, "labels must lie"),
    "source not strings": ({"source": np.zeros(4)}, "'source' must hold one string"),
    "source a lone surrogate": ({"source": np.array(["real:\udcff"] * 4)}, "not valid UTF-8"),
    "seed too long": ({"seed": np.zeros(5, np.int64)}, "'seed' must hold one integer per image"),
}


@pytest.mark.parametrize("case", list(BAD_NPZ))
def test_corrupt_npz_fields_are_user_errors(tmp_path, case):
    overrides, fragment = BAD_NPZ[case]
    path = _write(tmp_path / "bad.npz", **overrides)
    with pytest.raises(UserError, match=re.escape(fragment)):
        ImageSet.load(path)


def test_valid_npz_written_by_hand_loads(tmp_path):
    # The reference for the table above: the same arrays, unbroken, load.
    s = ImageSet.load(_write(tmp_path / "ok.npz"))
    assert len(s) == 4 and s.class_names == ("a", "b")


def test_object_arrays_are_never_unpickled(tmp_path):
    marker = tmp_path / "unpickled"

    class Evil:
        def __reduce__(self):  # unpickling this would create the marker file
            return (marker.touch, ())

    evil = np.empty(4, dtype=object)
    evil[:] = [Evil()] * 4
    for field in ("labels", "source", "metadata"):
        path = _write(tmp_path / f"evil-{field}.npz", **{field: evil})
        with pytest.raises(UserError, match="never unpickled"):
            ImageSet.load(path)
    assert not marker.exists()


def _zip_with_member(path, name, npy_bytes):
    arrays = _valid_arrays()
    with zipfile.ZipFile(path, "w") as zf:
        for k, v in arrays.items():
            buf = io.BytesIO()
            np.save(buf, v)
            zf.writestr(f"{k}.npy", npy_bytes if k == name else buf.getvalue())
    return path


def _npy_header(shape, descr="|u1", version=(1, 0)):
    buf = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    (np.lib.format.write_array_header_1_0 if version == (1, 0) else np.lib.format.write_array_header_2_0)(buf, header)
    return buf.getvalue()


@pytest.mark.parametrize("version", [(1, 0), (2, 0)])
def test_npy_header_declaring_a_huge_shape_is_refused_before_allocating(tmp_path, version):
    # 10^6 images of 3 x 1000 x 1000: 3 TB declared by a member of a few hundred bytes.
    path = _zip_with_member(tmp_path / "huge.npz", "images", _npy_header((10**6, 3, 1000, 1000), version=version)
                            + b"\0" * 64)
    with pytest.raises(UserError, match=r"declares shape \(1000000, 3, 1000, 1000\)"):
        ImageSet.load(path)


def test_npy_header_with_unsupported_version_is_refused(tmp_path):
    raw = bytearray(_npy_header((4,), "<i8"))
    raw[6] = 7  # version 7.0
    path = _zip_with_member(tmp_path / "v7.npz", "labels", bytes(raw) + bytes(32))
    with pytest.raises(UserError, match="format version"):
        ImageSet.load(path)


def test_member_that_is_not_npy_is_refused(tmp_path):
    path = _zip_with_member(tmp_path / "raw.npz", "images", b"just some bytes")
    with pytest.raises(UserError, match="not a readable"):
        ImageSet.load(path)


def test_declared_size_beyond_this_machines_memory_is_refused(tmp_path, monkeypatch, toy_set):
    path = toy_set.save(tmp_path / "set.npz")
    assert len(ImageSet.load(path)) == 30
    monkeypatch.setattr("os.sysconf", lambda name: 16)  # a machine with 16 x 16 bytes of memory
    with pytest.raises(UserError, match="more than this machine's memory"):
        ImageSet.load(path)


def test_truncated_or_damaged_npz_is_a_user_error(tmp_path, toy_set):
    raw = toy_set.save(tmp_path / "set.npz").read_bytes()
    for cut in (0, 10, 100, len(raw) // 2, len(raw) - 30, len(raw) - 1):
        (tmp_path / "cut.npz").write_bytes(raw[:cut])
        with pytest.raises(UserError, match="not a readable"):
            ImageSet.load(tmp_path / "cut.npz")
    # one flipped bit inside the stored pixel data: only the zip's CRC can tell
    offset = raw.index(toy_set.images.tobytes()[:32]) + 100
    flipped = bytearray(raw)
    flipped[offset] ^= 0x10
    (tmp_path / "flip.npz").write_bytes(bytes(flipped))
    with pytest.raises(UserError, match="CRC"):
        ImageSet.load(tmp_path / "flip.npz")


def test_empty_set_still_round_trips(tmp_path, toy_set):
    # Mixtures can be empty on the way; a saved empty set must load again.
    empty = toy_set.subset([])
    assert len(ImageSet.load(empty.save(tmp_path / "empty.npz"))) == 0


def test_read_npy_checks_the_header_first(tmp_path, capsys):
    from ouroboros import cli
    from ouroboros.data.imageset import read_npy

    good = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.save(tmp_path / "ok.npy", good)
    np.testing.assert_array_equal(read_npy(tmp_path / "ok.npy"), good)
    (tmp_path / "huge.npy").write_bytes(_npy_header((10**6, 10**6), "<f4") + bytes(100))
    with pytest.raises(UserError, match=r"declares shape \(1000000, 1000000\)"):
        read_npy(tmp_path / "huge.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(UserError, match="never unpickled"):
        read_npy(tmp_path / "obj.npy")
    (tmp_path / "cut.npy").write_bytes((tmp_path / "ok.npy").read_bytes()[:30])
    with pytest.raises(UserError, match="cannot read"):
        read_npy(tmp_path / "cut.npy")
    # through `ouroboros metrics`, which reads .npy feature files with it
    assert cli.main(["metrics", str(tmp_path / "huge.npy"), str(tmp_path / "ok.npy")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
