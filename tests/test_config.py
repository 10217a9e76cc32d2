import pytest

from ouroboros.config import StudyConfig, load_config
from ouroboros.errors import UserError


def test_defaults_are_the_paper_setting():
    c = load_config()
    assert isinstance(c, StudyConfig)
    assert c.loop.generations == 9 and c.loop.guidance == [1.0, 0.1, 0.0] and len(c.loop.seeds) >= 2
    assert c.generator.label_dropout == 0.1


def test_yaml_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: x\nloop:\n  generations: 4\n  guidance: [2, 0.5]\ngenerator:\n  train_steps: 10\n")
    c = load_config(p, ["loop.seeds=[3]", "generator.sampler=ddim"])
    assert c.name == "x" and c.loop.generations == 4 and c.loop.guidance == [2.0, 0.5]
    assert c.loop.seeds == [3] and c.generator.sampler == "ddim" and c.generator.train_steps == 10


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("loop:\n  generatoins: 3\n", "loop.generatoins"),
        ("bogus: 1\n", "'bogus'"),
        ("loop:\n  generations: three\n", "loop.generations must be an integer"),
        ("loop:\n  generations: 0\n", "loop.generations must lie in [1, 1000]"),
        ("loop:\n  guidance: [1.0, -0.1]\n", "guidance must be a finite number >= 0"),
        ("generator:\n  sampler: euler\n", "generator.sampler must be one of"),
        ("loop: [1, 2]\n", "loop must be a mapping"),
        ("loop:\n  generations: [\n", "not valid YAML"),
        ("generator:\n  label_dropout: 1.5\n", "label_dropout"),
    ],
)
def test_bad_configs_name_the_problem(tmp_path, text, fragment):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(UserError, match=None) as info:
        load_config(p)
    assert fragment in str(info.value)


def test_missing_file_and_bad_override(tmp_path):
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(UserError, match="key=value"):
        load_config(None, ["loop.generations"])
