import dataclasses

import pytest

from ouroboros.api import resolve_config
from ouroboros.config import StudyConfig, load_config
from ouroboros.errors import UserError

from conftest import REPO


def test_defaults_are_the_demo_and_the_documented_overrides_the_paper_setting():
    c = load_config()
    assert isinstance(c, StudyConfig)
    assert c.loop.generations == 5 and c.loop.guidance == [1.0, 0.0] and len(c.loop.seeds) == 5
    assert c.generator.label_dropout == 0.1
    # loop-digits.yaml's comment: the paper's Fig. 2 is two overrides away
    text = (REPO / "configs" / "loop-digits.yaml").read_text()
    assert "--set 'loop.guidance=[1.0, 0.1, 0.0]' --set loop.generations=9" in text
    paper = load_config(None, ["loop.guidance=[1.0, 0.1, 0.0]", "loop.generations=9"])
    assert paper.loop.generations == 9 and paper.loop.guidance == [1.0, 0.1, 0.0]


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


# -- configs built in Python skip from_dict's conversion: validate() checks them alone --


@pytest.mark.parametrize("section, where, bad, fragment", [
    ("generator", "generator.hidden", {"hidden": True}, "must be an integer"),  # bool is not an int
    ("generator", "generator.lr", {"lr": float("nan")}, "finite"),
    ("generator", "generator.hidden", {"hidden": 127}, "even"),  # timestep embedding needs hidden // 2 pairs
    ("generator", "generator.hidden", {"denoiser": "unet", "hidden": 40}, "multiple of 8, and of 32"),
    ("generator", "generator.sample_steps", {"sample_steps": 20, "num_train_timesteps": 10}, "cannot exceed"),
    ("generator", "generator.sampler", {"sampler": "euler"}, "must be one of"),
    ("classifier", "classifier.batch_size", {"batch_size": 1}, "[2, 65536]"),  # BatchNorm skips batches of one
    ("classifier", "classifier.weight_decay", {"weight_decay": float("inf")}, "finite"),
    ("data", "data.test", {"test": ""}, "must not be empty"),
    ("loop", "loop.seeds", {"seeds": [0, 0]}, "twice"),
    ("contamination", "contamination.seeds", {"seeds": [1, 1]}, "twice"),
])
def test_sections_validate_on_their_own(section, where, bad, fragment):
    value = dataclasses.replace(getattr(StudyConfig(), section), **bad)
    with pytest.raises(UserError) as info:
        value.validate()
    assert where in str(info.value) and fragment in str(info.value), str(info.value)
    with pytest.raises(UserError):  # and inside a study config
        dataclasses.replace(StudyConfig(), **{section: value}).validate()


def test_study_config_checks_types_of_python_values():
    config = StudyConfig()
    config.loop.guidance = (1.0, 0.5)  # a tuple where YAML gives a list
    with pytest.raises(UserError, match="loop.guidance must be a list"):
        config.validate()
    config = StudyConfig(study="loops")  # a study is a registered plug-in: looked up when the config runs
    with pytest.raises(UserError, match="unknown study 'loops'; use one of .*contamination, loop"):
        resolve_config(config)
    config = StudyConfig()
    config.executor.kind = "dask"
    with pytest.raises(UserError, match="executor.kind must be one of local, ray"):
        config.validate()
    config = StudyConfig(name="a\udcffb")  # undecodable bytes from argv
    with pytest.raises(UserError, match="name is not valid UTF-8"):
        config.validate()


def test_sampling_steps_beyond_the_schedule_span_sections():
    with pytest.raises(UserError, match="diverse_sample_steps has 50, more than generator.num_train_timesteps"):
        load_config("contamination-digits", ["generator.num_train_timesteps=40", "generator.sample_steps=10"])
    load_config("contamination-digits", ["generator.num_train_timesteps=50", "generator.sample_steps=10"])
    load_config(None, ["generator.num_train_timesteps=40", "generator.sample_steps=10"])  # a loop: no diverse steps


# -- preflight: the dry build before anything is written --------------------------------


def test_preflight_accepts_the_shipped_configs_and_leaves_the_global_rng_alone():
    import torch

    from ouroboros.preflight import check_components

    shipped = sorted((REPO / "configs").glob("*.yaml"))
    assert {"loop-digits.yaml", "contamination-digits.yaml", "scenarios-digits.yaml", "loop-mnist.yaml",
            "loop-mnist-unet.yaml",
            "loop-flowers.yaml", "loop-cub.yaml", "captioning-digits.yaml", "mad-digits.yaml",
            "stability-digits.yaml", "reward-digits.yaml", "tails-digits.yaml"} <= {p.name for p in shipped}
    # Each config on the shape of its own data (mnist5k; Flowers-102 and CUB resized to 64x64).
    shapes = {"loop-mnist.yaml": ((1, 28, 28), 10), "loop-mnist-unet.yaml": ((1, 28, 28), 10),
              "loop-flowers.yaml": ((3, 64, 64), 102),
              "loop-cub.yaml": ((3, 64, 64), 200)}
    for path in shipped:
        config = load_config(path)
        torch.manual_seed(0)
        check_components(config, *shapes.get(path.name, ((1, 8, 8), 10)))
        after = torch.rand(3)
        torch.manual_seed(0)
        assert torch.equal(after, torch.rand(3)), "the dry build must not move the seeded global generator"


@pytest.mark.parametrize("overrides, shape, classes, fragment", [
    (["generator.denoiser=unet", "generator.hidden=8", "generator.depth=3"], (1, 6, 6), 10,
     "sides are multiples of 4 (e.g. 4, 8, 12); the data's are 6x6"),
    (["classifier.shift=8"], (1, 8, 8), 10, "classifier.shift (8) must be smaller"),
    (["generator.device=meta"], (1, 8, 8), 10, "generator.device"),
    (["classifier.device=npu"], (1, 8, 8), 10, "classifier.device: unknown device"),
    ([], (1, 8, 8), 1, "at least 2"),
    (["classifier.shift=0"], (1, 1, 1), 10, "classifier (arch cnn"),  # a 1x1 image cannot be max-pooled
])
def test_preflight_names_what_cannot_be_built(overrides, shape, classes, fragment):
    from ouroboros.preflight import check_components

    with pytest.raises(UserError) as info:
        check_components(load_config(None, overrides), shape, classes)
    assert fragment in str(info.value), str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_preflight_cuda_without_a_gpu():
    from ouroboros.preflight import check_components

    with pytest.raises(UserError, match="generator.device: device 'cuda' requested but CUDA is not available"):
        check_components(load_config(None, ["generator.device=cuda"]), (1, 8, 8), 10)


def test_output_probe_creates_nothing(tmp_path):
    from ouroboros.preflight import check_output_dir

    check_output_dir(tmp_path / "a" / "b")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "run").mkdir()
    check_output_dir(tmp_path / "run")
    assert list((tmp_path / "run").iterdir()) == []


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA machine")
def test_preflight_cuda_device_index_beyond_the_gpus():
    import torch

    from ouroboros.preflight import check_components

    with pytest.raises(UserError, match="classifier.device: 'cuda:99' requested but this machine has"):
        check_components(load_config(None, ["classifier.device=cuda:99"]), (1, 8, 8), 10)
    check_components(load_config(None, ["generator.device=cuda", "classifier.device=cuda:0"]), (1, 8, 8), 10)
    assert torch.cuda.is_available()


def test_yaml_alias_bomb_is_refused_quickly_in_one_short_line(tmp_path):
    # Each level repeats the one below ten times: 10**7 strings if walked or printed in full.
    levels = ['&l0 ["x","x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 7):
        levels.append(f"&l{i} [{levels[-1]}" + f",*l{i - 1}" * 9 + "]")
    p = tmp_path / "bomb.yaml"
    p.write_text(f"name: {levels[-1]}\n")
    with pytest.raises(UserError, match="over 100,000 YAML values once aliases are expanded") as info:
        load_config(p)  # refused while parsing (ouroboros.safe_yaml), before any value is checked
    assert len(str(info.value)) < 200


def test_long_lists_are_refused_before_they_are_walked():
    seeds = "[" + ",".join(["x"] * 5000) + "]"  # junk items: refused on length, not on the first item
    with pytest.raises(UserError, match=r"loop.seeds has 5000 values; at most 1000"):
        load_config(None, [f"loop.seeds={seeds}"])
