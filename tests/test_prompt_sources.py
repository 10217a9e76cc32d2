"""`--prompts complex` follows the paper's Appendix A.5; `--prompts complex-released` and
`simple-released` follow the authors' released generation scripts; the help text, the
module docs and the output's generate.json say which."""

import json
import types

import pytest

from conftest import assert_user_error
from ouroboros import cli
from ouroboros.generators import prompts
from ouroboros.generators.prompts import Group, complex_prompt_space, work_list
from ouroboros.generators.tiny_pipeline import build_tiny_pipeline

ELEPHANT = Group("n02504458", ("African elephant", "Loxodonta africana"))


def test_complex_is_the_papers_appendix_and_complex_released_the_released_script():
    """A.5's media are photo, picture, realistic photo, image; the released
    src/complex_sd_imagenet.py has "realistic drawing" in place of "image", the rest alike.
    A long enough work list draws exactly its own scheme's 220 prompts per synonym."""
    assert prompts.MEDIUM == ("photo", "picture", "realistic photo", "image")
    assert prompts.MEDIUM_RELEASED == ("photo", "picture", "realistic photo", "realistic drawing")
    for kind, media in (("complex", prompts.MEDIUM), ("complex-released", prompts.MEDIUM_RELEASED)):
        drawn = {it.prompt for it in work_list([ELEPHANT], kind, 5000, seed=1)}
        assert drawn == complex_prompt_space(ELEPHANT.names, media) and len(drawn) == 440
    paper = {it.prompt for it in work_list([ELEPHANT], "complex", 3000, seed=1)}
    released = {it.prompt for it in work_list([ELEPHANT], "complex-released", 3000, seed=1)}
    assert any(" image of " in p for p in paper) and not any("realistic drawing" in p for p in paper)
    assert any("realistic drawing of" in p for p in released) and not any(" image of " in p for p in released)
    assert "hdr realistic drawing of Loxodonta africana outside" in released


def test_simple_is_the_papers_wording_and_simple_released_the_released_scripts():
    assert {it.prompt for it in work_list([ELEPHANT], "simple", 2, seed=0)} == {"A photo of African elephant"}
    assert {it.prompt for it in work_list([ELEPHANT], "simple-released", 2, seed=0)} == {"photo of African elephant"}
    # the same images' seeds whatever the wording: only the prompts differ
    assert [it.seed for it in work_list([ELEPHANT], "simple-released", 3, 7)] == \
        [it.seed for it in work_list([ELEPHANT], "complex-released", 3, 7)]


def test_every_kind_names_its_source():
    assert set(prompts.SOURCES) == {*prompts.PROMPT_KINDS, "captions"}
    assert "Appendix A.5" in prompts.SOURCES["complex"] and "realistic drawing" in prompts.SOURCES["complex-released"]
    assert "Appendix A.5" in prompts.__doc__ and "realistic drawing" in prompts.__doc__


def _main(capsys, *args):
    code = cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return types.SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)


def test_help_names_the_appendix_and_the_released_script(capsys):
    with pytest.raises(SystemExit):
        cli.main(["generate", "text2image", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "App. A.5" in text and "complex-released" in text and "realistic drawing" in text
    assert "photo of {name}" in text


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return build_tiny_pipeline(tmp_path_factory.mktemp("models") / "tiny-sd")


def test_generate_records_the_prompts_source_and_resumes_older_folders(tmp_path, capsys, model):
    """generate.json records the kind and where it comes from; a folder written before the
    source was recorded resumes, and another kind in the same folder is refused."""
    classes = tmp_path / "classes.txt"
    classes.write_text("n01\ttench, Tinca tinca\n")
    out = tmp_path / "sd"
    args = ["generate", "text2image", "--model", model, "--classes", classes, "--per-class", 2, "--out", out,
            "--steps", "2", "--size", "16", "--quiet"]
    proc = _main(capsys, *args, "--prompts", "complex-released")
    assert proc.returncode == 0, proc.stderr
    settings = json.loads((out / "generate.json").read_text())
    assert settings["prompts"] == "complex-released"
    assert settings["prompts_source"] == prompts.SOURCES["complex-released"]
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in lines] == [it.prompt for it in work_list(
        [Group("n01", ("tench", "Tinca tinca"))], "complex-released", 2, seed=0)]
    del settings["prompts_source"]  # as a folder from before it was recorded
    (out / "generate.json").write_text(json.dumps(settings))
    assert _main(capsys, *args, "--prompts", "complex-released").returncode == 0
    assert_user_error(_main(capsys, *args, "--prompts", "complex"), "prompts")
    assert_user_error(_main(capsys, *args, "--prompts", "simple-released", "--template", "x {name}"), "--template")
