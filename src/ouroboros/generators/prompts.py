"""Prompts for text-to-image contamination sets (Hataya et al. 2023, Sec. 3 and App. A.5).

A *group* is what one folder of the generated ImageFolder holds: an ImageNet class
(id = its WordNet id, names = its synonyms) or, for captions, one COCO image (id = its
image id, prompts = its captions). A work list has one `WorkItem` per image to make:
(group id, index within the group, prompt, seed).

Builders (`--prompts`):

- ``simple``: ``template.format(name=<first name of the class>)``, by default
  ``"A photo of {name}"``, the paper's wording (Sec. 3.2: "A photo of African elephant").
- ``complex``: the paper's script, Appendix A.5: a random synonym of the class, a random
  quality prefix (`QUALITY`, 11 with ''), a random medium (`MEDIUM`: photo, picture,
  realistic photo, image) and a random suffix (`SUFFIX`, 5 with ''), joined as
  ``"<quality> <medium> of <synonym> <suffix>"`` with empty parts and their spaces left
  out: 220 distinct prompts per synonym ("monochrome image of African elephant taken
  with iPhone").
- ``complex-released``: the variant in the authors' released generation script
  (github.com/moskomule/dataset-contamination, src/complex_sd_imagenet.py): the same, with
  "realistic drawing" in place of "image" (`MEDIUM_RELEASED`).
- ``simple-released``: the released script's simple prompts (src/sd_imagenet.py),
  ``"photo of {name}"``.
- captions: every caption of a group is a prompt; each makes `per_prompt` images.

`SOURCES` names where each kind comes from; `ouroboros generate text2image` records it
in the output's generate.json.

Every random choice is a function of (seed, group id, index) only, so any item can be
rebuilt alone, whatever the work list's order or split.
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ouroboros.data.imageset import printable
from ouroboros.errors import UserError
from ouroboros.io import read_bytes_bounded
from ouroboros.safepath import component, components

QUALITY = ("", "high quality", "low quality", "monochrome", "blured", "atmospheric", "rendered", "zoomed",
           "wide-angle", "hdr", "high resolution")
MEDIUM = ("photo", "picture", "realistic photo", "image")  # the paper's App. A.5
MEDIUM_RELEASED = ("photo", "picture", "realistic photo", "realistic drawing")  # the authors' released script
SUFFIX = ("", "taken with iPhone", "inside", "outside", "without background")
DEFAULT_TEMPLATE = "A photo of {name}"
RELEASED_TEMPLATE = "photo of {name}"
PROMPT_KINDS = ("simple", "complex", "simple-released", "complex-released")
SOURCES = {
    "simple": "Hataya et al. 2023, Sec. 3.2 ('A photo of African elephant'), or the --template given",
    "complex": "Hataya et al. 2023, Appendix A.5 (media: photo, picture, realistic photo, image)",
    "simple-released": "the authors' released script src/sd_imagenet.py ('photo of {name}')",
    "complex-released": "the authors' released script src/complex_sd_imagenet.py (media: photo, picture, "
                        "realistic photo, realistic drawing)",
    "captions": "the captions themselves (SD-COCO)",
}
MAX_GROUPS = 10_000_000
# The files `ouroboros generate text2image` writes beside the class folders (no class id may take their names).
MANIFEST = "manifest.jsonl"
SETTINGS = "generate.json"


@dataclass(frozen=True)
class Group:
    """One output folder: `id` names it; `names` are a class's synonyms (first = its
    name) or a caption group's captions."""

    id: str
    names: tuple[str, ...]


@dataclass(frozen=True)
class WorkItem:
    group: str
    index: int
    prompt: str
    seed: int

    @property
    def file(self) -> str:
        """The image's path relative to the output folder."""
        return f"{self.group}/{self.index}.png"


def derive(*parts) -> int:
    """A 31-bit integer determined by `parts` alone (SHA-256 of their JSON)."""
    from ouroboros.io import stable_hash

    return int(stable_hash(list(parts)), 16) % (2**31 - 1)


def image_seed(base_seed: int, group: str, index: int) -> int:
    """The seed of image `index` of `group`: its own torch.Generator starts from it."""
    return derive("text2image", base_seed, group, index)


# -- builders ---------------------------------------------------------------------------


def check_template(template: str) -> str:
    """A format string with exactly the field ``{name}``."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise UserError(f"prompt template {template!r} is not a valid format string ({exc}); "
                        "write it like 'A photo of {{name}}'") from None
    if fields != ["name"]:
        raise UserError(f"prompt template {template!r} must hold {{name}} exactly once and no other field; "
                        "e.g. 'A photo of {name}'")
    return template


def simple_prompt(names: tuple[str, ...], template: str = DEFAULT_TEMPLATE) -> str:
    return template.format(name=names[0])


def complex_prompt(names: tuple[str, ...], rng: np.random.Generator, media: tuple[str, ...] = MEDIUM) -> str:
    """One prompt of the complex scheme (the paper's media, or the released script's), drawn with `rng`."""
    name = names[rng.integers(len(names))]
    parts = (QUALITY[rng.integers(len(QUALITY))], media[rng.integers(len(media))], "of", name,
             SUFFIX[rng.integers(len(SUFFIX))])
    return " ".join(p for p in parts if p)


def complex_prompt_space(names: tuple[str, ...], media: tuple[str, ...] = MEDIUM) -> set[str]:
    """Every prompt the complex scheme can draw for a class with these names."""
    return {" ".join(p for p in (q, m, "of", n, s) if p)
            for q in QUALITY for m in media for n in names for s in SUFFIX}


def work_list(groups: list[Group], kind: str, per_group: int, seed: int,
              template: str = DEFAULT_TEMPLATE) -> list[WorkItem]:
    """Every image to make, group by group.

    kind ``simple``, ``complex``, ``simple-released`` or ``complex-released``:
    `per_group` images per class (`template` applies to ``simple``). kind ``captions``:
    `per_group` images per caption; caption k's images have indexes k * per_group + j.
    """
    if kind not in (*PROMPT_KINDS, "captions"):
        raise UserError(f"unknown prompt kind {kind!r}; use {', '.join(PROMPT_KINDS)} or captions")
    if kind == "simple":
        check_template(template)
    elif kind == "simple-released":
        template = RELEASED_TEMPLATE
    media = MEDIUM_RELEASED if kind == "complex-released" else MEDIUM
    items = []
    for g in groups:
        for k, caption in enumerate(g.names if kind == "captions" else [None]):
            for j in range(per_group):
                index = k * per_group + j
                if kind in ("simple", "simple-released"):
                    prompt = simple_prompt(g.names, template)
                elif kind in ("complex", "complex-released"):
                    prompt = complex_prompt(g.names, np.random.default_rng(derive("prompt", seed, g.id, index)), media)
                else:
                    prompt = caption
                items.append(WorkItem(g.id, index, prompt, image_seed(seed, g.id, index)))
    return items


# -- reading class lists and captions ---------------------------------------------------

_WNID = re.compile(r"^(n\d{8})\s+(.*)$")


def _read_text(path: Path, what: str) -> str:
    if not path.exists():
        raise UserError(f"{what} file not found: {printable(path)}")
    try:  # regular files only, size-checked; COCO's captions JSON is ~90 MB: the table limit
        return read_bytes_bounded(path, f"{what} file", "table" if what == "captions" else "text").decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"{what} file {printable(path)} is not UTF-8 text; save it as UTF-8") from None
    except OSError as exc:
        raise UserError(f"cannot read {what} file {printable(path)}: {exc.strerror}") from None


def check_group_id(gid: str, where: str) -> str:
    """Group ids name folders as they are (the folder name is the ImageFolder's class):
    one safe path component already (`safepath.component`: printable, no path
    separators, not '.' or '..', not hidden, at most 200 bytes), else UserError."""
    if not isinstance(gid, str) or not gid or component(gid, where, 200) != gid:
        raise UserError(f"{where}: class id {printable(gid)!r} cannot name a folder (it must be printable, "
                        "at most 200 bytes, without / or \\, not start with '.' nor end with '.' or ' ')")
    return gid


def check_group_ids(ids, where: str) -> None:
    """Every id names a folder of its own beside the tool's files (text2image's manifest
    and settings file): UserError for an id that cannot, or two ids that would share a
    folder on a case-insensitive file system."""
    for gid in ids:
        check_group_id(gid, where)
    components(ids, where, 200, reserved=(MANIFEST, SETTINGS))


def _check_groups(groups: list[Group], path: Path, what: str) -> list[Group]:
    if not groups:
        raise UserError(f"{what} file {printable(path)} lists no classes; give one a line")
    if len(groups) > MAX_GROUPS:
        raise UserError(f"{what} file {printable(path)} lists {len(groups)} groups; at most {MAX_GROUPS}")
    seen: dict[str, int] = {}
    for g in groups:
        check_group_id(g.id, f"{printable(path)}")
        if g.id in seen:
            raise UserError(f"{what} file {printable(path)} lists class id {printable(g.id)!r} twice; "
                            "each class id names one output folder: make them distinct")
        seen[g.id] = 1
        for n in g.names:
            if not n.isprintable():
                raise UserError(f"{printable(path)}: {printable(n)!r} holds control characters; "
                                "prompts must be printable text")
    check_group_ids(list(seen), f"{what} file {printable(path)}")
    return groups


def read_classes(path: str | Path) -> list[Group]:
    """A class list in one of the usual ImageNet formats:

    - ``ID<TAB>name, synonym, ...`` (``words.txt``-style, any id),
    - ``nXXXXXXXX name, synonym, ...`` (``LOC_synset_mapping.txt``: WordNet id, a space),
    - ``name, synonym, ...`` (one class a line; its id is its first name),
    - ``imagenet_class_index.json``: ``{"0": ["n01440764", "tench"], ...}`` (underscores
      in names read as spaces).

    Blank lines and lines starting with ``#`` are skipped.
    """
    path = Path(path)
    text = _read_text(path, "class")
    if path.suffix == ".json":
        return _check_groups(_classes_from_json(path, text), path, "class")
    groups = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip(" ")  # not tabs: 'ID<TAB>' with no name is an error, not a class named ID
        if not line.strip() or line.startswith("#"):
            continue
        if "\t" in line:
            gid, rest = (s.strip() for s in line.split("\t", 1))
        elif m := _WNID.match(line):
            gid, rest = m.group(1), m.group(2)
        else:
            gid, rest = None, line
        names = tuple(n.strip() for n in rest.split(",") if n.strip())
        if not names:
            raise UserError(f"{printable(path)} line {lineno}: class {printable(gid)!r} has no name; "
                            "write 'ID<TAB>name, synonym, ...'")
        groups.append(Group(gid if gid is not None else names[0], names))
    return _check_groups(groups, path, "class")


def _classes_from_json(path: Path, text: str) -> list[Group]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UserError(f"{printable(path)} is not valid JSON ({exc})") from None
    ok = isinstance(data, dict) and all(
        isinstance(v, list) and len(v) == 2 and all(isinstance(s, str) and s for s in v) for v in data.values())
    if not ok:
        raise UserError(f"{printable(path)} must map indexes to [id, name] pairs, as imagenet_class_index.json "
                        'does: {"0": ["n01440764", "tench"], ...}')
    try:
        order = sorted(data, key=int)
    except ValueError:
        raise UserError(f"{printable(path)}: its keys must be class indexes 0, 1, ...") from None
    return [Group(data[k][0], (data[k][1].replace("_", " "),)) for k in order]


def read_captions(path: str | Path) -> list[Group]:
    """Captions as prompts: a COCO captions JSON (``{"annotations": [{"image_id": ..,
    "caption": ..}, ...]}``; one group per image id, its captions in file order), or a
    text file with one caption a line (one group, ``captions``)."""
    path = Path(path)
    text = _read_text(path, "captions")
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise UserError(f"{printable(path)} is not valid JSON ({exc})") from None
        anns = data.get("annotations") if isinstance(data, dict) else None
        if not isinstance(anns, list) or not all(
                isinstance(a, dict) and isinstance(a.get("caption"), str) and isinstance(a.get("image_id"), (int, str))
                and not isinstance(a.get("image_id"), bool) for a in anns):
            raise UserError(f"{printable(path)} must be COCO captions JSON: "
                            '{"annotations": [{"image_id": 1, "caption": "..."}, ...]}')
        by_image: dict[str, list[str]] = {}
        for a in anns:
            caption = " ".join(a["caption"].split())
            if caption:
                by_image.setdefault(str(a["image_id"]), []).append(caption)
        groups = [Group(k, tuple(v)) for k, v in by_image.items()]
    else:
        captions = tuple(" ".join(line.split()) for line in text.splitlines() if line.strip())
        groups = [Group("captions", captions)] if captions else []
    if not groups:
        raise UserError(f"captions file {printable(path)} holds no captions")
    return _check_groups(groups, path, "captions")
