"""Prompt builders and class/caption lists for text-to-image contamination sets."""

import json

import pytest

from ouroboros.errors import UserError
from ouroboros.generators import prompts
from ouroboros.generators.prompts import Group, complex_prompt_space, read_captions, read_classes, work_list

ELEPHANT = Group("n02504458", ("African elephant", "Loxodonta africana"))


def test_complex_vocabulary_is_the_papers():
    """Hataya et al., App. A.5: 11 quality prefixes, 4 media, 5 suffixes, '' included."""
    assert prompts.QUALITY == ("", "high quality", "low quality", "monochrome", "blured", "atmospheric", "rendered",
                               "zoomed", "wide-angle", "hdr", "high resolution")
    assert prompts.MEDIUM == ("photo", "picture", "realistic photo", "image")
    assert prompts.SUFFIX == ("", "taken with iPhone", "inside", "outside", "without background")


@pytest.mark.parametrize("synonyms", [1, 2, 6])
def test_distinct_complex_prompts_per_class(synonyms):
    """220 distinct prompts per synonym (the paper's 200 to 1,300 per class); a long
    enough work list draws every one of them and nothing else."""
    names = tuple(f"name{i}" for i in range(synonyms))
    space = complex_prompt_space(names)
    assert len(space) == 220 * synonyms
    drawn = {it.prompt for it in work_list([Group("c", names)], "complex", 2500 * synonyms, seed=3)}
    assert drawn == space


def test_complex_prompt_reads_like_the_papers_examples():
    space = complex_prompt_space(ELEPHANT.names)
    assert "monochrome image of African elephant taken with iPhone" in space
    assert "hdr picture of Loxodonta africana outside" in space
    assert "photo of African elephant" in space  # empty prefix and suffix leave no stray spaces
    assert all(p == " ".join(p.split()) for p in space)


def test_simple_prompts_use_the_first_name_and_the_template():
    items = work_list([ELEPHANT], "simple", 3, seed=0)
    assert [it.prompt for it in items] == ["A photo of African elephant"] * 3
    assert [it.index for it in items] == [0, 1, 2]
    assert work_list([ELEPHANT], "simple", 1, 0, template="a painting of {name}")[0].prompt == \
        "a painting of African elephant"
    for bad in ("no field", "{name} and {other}", "{name", "{0}"):
        with pytest.raises(UserError, match="template"):
            work_list([ELEPHANT], "simple", 1, 0, template=bad)


def test_each_item_depends_only_on_seed_group_and_index():
    """Items are a function of (seed, group, index): the same whatever else is in the
    work list or how many per class; seeds differ between images and between base seeds."""
    other = Group("n01440764", ("tench", "Tinca tinca"))
    a = work_list([ELEPHANT, other], "complex", 4, seed=7)
    b = work_list([other], "complex", 9, seed=7)
    assert [it for it in a if it.group == other.id] == b[:4]
    assert a == work_list([ELEPHANT, other], "complex", 4, seed=7)
    assert len({it.seed for it in a}) == len(a)
    c = work_list([ELEPHANT, other], "complex", 4, seed=8)
    assert all(x.seed != y.seed for x, y in zip(a, c))
    assert [it.prompt for it in a] != [it.prompt for it in c]
    assert a[0].file == "n02504458/0.png"


def test_class_list_formats(tmp_path):
    tab = tmp_path / "words.txt"
    tab.write_text("# ImageNet\nn02504458\tAfrican elephant, Loxodonta africana\n\nn01440764\ttench\n")
    loc = tmp_path / "LOC_synset_mapping.txt"
    loc.write_text("n02504458 African elephant, Loxodonta africana\nn01440764 tench\n")
    plain = tmp_path / "names.txt"
    plain.write_text("zero, nought\none\n")
    index = tmp_path / "imagenet_class_index.json"
    index.write_text(json.dumps({"1": ["n01440764", "tench"], "0": ["n02504458", "African_elephant"]}))
    expected = [ELEPHANT, Group("n01440764", ("tench",))]
    assert read_classes(tab) == expected
    assert read_classes(loc) == expected
    assert read_classes(plain) == [Group("zero", ("zero", "nought")), Group("one", ("one",))]
    assert read_classes(index) == [Group("n02504458", ("African elephant",)), Group("n01440764", ("tench",))]


@pytest.mark.parametrize("text, fragment", [
    ("", "lists no classes"),
    ("# only a comment\n\n", "lists no classes"),
    ("a\tx\na\ty\n", "class id 'a' twice"),
    ("a\t\n", "has no name"),
    ("../up\tx\n", "cannot name a folder"),
    (".hidden\tx\n", "cannot name a folder"),
])
def test_bad_class_lists(tmp_path, text, fragment):
    path = tmp_path / "classes.txt"
    path.write_text(text)
    with pytest.raises(UserError, match=fragment):
        read_classes(path)


def test_class_list_not_utf8_or_missing(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_bytes(b"n1\tcaf\xe9\n")
    with pytest.raises(UserError, match="not UTF-8"):
        read_classes(path)
    with pytest.raises(UserError, match="not found"):
        read_classes(tmp_path / "nope.txt")


def test_captions_coco_json_and_text(tmp_path):
    coco = tmp_path / "captions_train2017.json"
    coco.write_text(json.dumps({"images": [], "annotations": [
        {"image_id": 9, "id": 1, "caption": "A cat  on a mat.\n"},
        {"image_id": 5, "id": 2, "caption": "A dog."},
        {"image_id": 9, "id": 3, "caption": "A sleeping cat."}]}))
    groups = read_captions(coco)
    assert groups == [Group("9", ("A cat on a mat.", "A sleeping cat.")), Group("5", ("A dog.",))]
    items = work_list(groups, "captions", 2, seed=0)
    assert [(it.group, it.index, it.prompt) for it in items] == [
        ("9", 0, "A cat on a mat."), ("9", 1, "A cat on a mat."), ("9", 2, "A sleeping cat."),
        ("9", 3, "A sleeping cat."), ("5", 0, "A dog."), ("5", 1, "A dog.")]
    text = tmp_path / "captions.txt"
    text.write_text("first caption\n\nsecond caption\n")
    assert read_captions(text) == [Group("captions", ("first caption", "second caption"))]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"annotations": [{"caption": "no image id"}]}))
    with pytest.raises(UserError, match="COCO captions JSON"):
        read_captions(bad)
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(UserError, match="holds no captions"):
        read_captions(tmp_path / "empty.txt")
