"""One shape for every study: a study is a plug-in (a toy study defined here alone runs
through `ouroboros run`, the Python API and `report`), the Python API from a plain
script and a notebook-like __main__, a generator family of one's own whose edits
recompute what it made, a folder that shows one config, and the CLI conventions."""

import ast
import json
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

import ouroboros
from conftest import REPO, TINY, assert_user_error, run_cli
from ouroboros import api, cli
from ouroboros.errors import UserError
from ouroboros.graph import Stage, stage_kind
from ouroboros.io import write_json_atomic
from ouroboros.report.page import Finding, Findings, Plot, Section, Text
from ouroboros.study import Study, get_study, register_study

SRC = REPO / "src" / "ouroboros"


# -- a toy study, defined here alone --------------------------------------------------------


@dataclass
class ToyConfig:
    draws: int = 4  # values drawn per seed
    scale: float = 1.0
    seeds: Optional[list[int]] = None

    def validate(self, where: str = "toy") -> None:
        if not 1 <= self.draws <= 100:
            raise UserError(f"{where}.draws must lie in [1, 100]; got {self.draws}")


@stage_kind("toy_draw", ".json", version=1)
def toy_draw(params: dict, deps: dict, out: Path) -> None:
    values = [params["scale"] * (params["seed"] + i) for i in range(params["draws"])]
    write_json_atomic(out, {"mean": sum(values) / len(values), "n": len(values)})


@dataclass
class ToyPlan:
    stages: dict

    def targets(self):
        return list(self.stages.values())


class ToyStudy(Study):
    name = "toy"
    section = "toy"
    section_type = ToyConfig

    def prepare(self, config):
        return config.toy.seeds or [0, 1, 2]

    def describe(self, config, seeds):
        return f"{config.name}: toy study, {len(seeds)} seeds"

    def plan(self, config, seeds, cache):
        return ToyPlan({s: Stage("toy_draw", {"seed": s, "draws": config.toy.draws, "scale": config.toy.scale},
                                 label=f"seed={s}") for s in seeds})

    def rows(self, config, plan, paths):
        rows = []
        for s, stage in plan.stages.items():
            values = json.loads(paths[stage.key].read_text())
            rows += [{"study": config.name, "cell": "toy", "seed": s, "generation": 0, "metric": m, "value": v,
                      "scale": config.toy.scale} for m, v in values.items()]
        return rows, ["scale"]

    def findings(self, rows, config):
        means = [float(r["value"]) for r in rows if r["metric"] == "mean"]
        return [Finding(f"toy mean over seeds: {sum(means) / len(means):g}")]

    def report_sections(self, runs):
        return [Section("findings", f"{run.label}: toy", [Findings(self.findings(run.rows, run.config))])
                for run in runs] + [Section("plots", "", [Text("toy plot"), Plot("toy-mean", "toy mean by seed",
                                                                                self._draw(runs[0]))])]

    def _draw(self, run):
        def draw(path):
            from matplotlib.figure import Figure

            fig = Figure()
            self.plot(run, "mean", fig.subplots())
            fig.savefig(path)

        return draw

    def plot(self, run, metric, ax):
        points = [(int(r["seed"]), float(r["value"])) for r in run.rows if r["metric"] == metric]
        ax.plot(*zip(*sorted(points)), marker="o")

    def summary(self, rows, config):
        return "TOY SUMMARY " + ", ".join(f.text for f in self.findings(rows, config))


register_study(ToyStudy())


def _toy_config(tmp_path, draws=4) -> Path:
    path = tmp_path / "toy.yaml"
    path.write_text(f"study: toy\nname: toy\ntoy: {{draws: {draws}, scale: 2.0}}\nexecutor: {{workers: 1}}\n")
    return path


def test_a_toy_study_runs_through_the_cli_the_api_and_the_report(tmp_path, capsys):
    config = _toy_config(tmp_path)
    assert cli.main(["run", str(config), "--out", str(tmp_path / "cli")]) == 0
    out = capsys.readouterr()
    assert "TOY SUMMARY toy mean over seeds: 5" in out.out  # 2 * mean(seed + 0..3) over seeds 0, 1, 2
    assert "toy study, 3 seeds" in out.err and "3 stages run" in out.err

    run = ouroboros.run(config, out=tmp_path / "api", progress=False)
    assert list(run.results["value"][run.results["metric"] == "mean"]) == [3.0, 5.0, 7.0]
    assert [f.text for f in run.findings] == ["toy mean over seeds: 5"]
    assert run.plot("mean").get_lines()[0].get_ydata().tolist() == [3.0, 5.0, 7.0]
    assert (tmp_path / "api" / "plots" / "toy-mean.png").is_file()
    page = (tmp_path / "api" / "report.html").read_text()
    assert "toy mean over seeds: 5" in page and "toy plot" in page

    assert cli.main(["report", str(tmp_path / "cli"), str(tmp_path / "api"), "--out", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert page.count("toy mean over seeds: 5") == 2 and "Runs compared" in page
    assert api.load_run(tmp_path / "api").results.equals(run.results)


def test_the_toy_studys_section_is_validated_before_anything_is_written(tmp_path, capsys):
    config = _toy_config(tmp_path, draws=0)
    assert cli.main(["run", str(config), "--out", str(tmp_path / "run")]) == 2
    assert "toy.draws must lie in [1, 100]" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_the_cli_runner_and_report_know_no_study_by_name():
    """No study's name or module in the command line, the runner, the executors or the
    report: they look studies up in the registry (mutation: put `if config.study ==
    "contamination"` back in cli.py and this fails)."""
    for path in [SRC / "cli.py", SRC / "commands.py", SRC / "runner.py", SRC / "graph.py", SRC / "api.py",
                 *(SRC / "executors").glob("*.py"), *(SRC / "report").glob("*.py")]:
        text = path.read_text()
        for name in ("contamination", "loop"):
            assert f'"{name}"' not in text and f"'{name}'" not in text, (path, name)
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                for n in names:
                    if path.parent.name == "report" or path.name in ("cli.py", "runner.py", "graph.py"):
                        assert not n.startswith("ouroboros.studies"), (path, n)


# -- import graph and file sizes --------------------------------------------------------------


def _import_graph() -> dict[str, set[str]]:
    """Module -> the ouroboros modules it imports, at module level or inside functions
    (importing a.b also runs package a's __init__)."""
    modules = {}
    for p in SRC.rglob("*.py"):
        name = ".".join(p.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = p

    def resolve(target):
        while target and target not in modules:
            target = target.rpartition(".")[0]
        return target

    graph = {m: set() for m in modules}
    for m, p in modules.items():
        for node in ast.walk(ast.parse(p.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for t in targets:
                r = resolve(t)
                if r and r != m and r.startswith("ouroboros"):
                    graph[m].add(r)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    assert _cycles(_import_graph()) == []


def test_the_cycle_finder_finds_a_circle():
    graph = _import_graph()
    graph["ouroboros.generators.base"].add("ouroboros.generators.diffusion")  # the old registry circle
    assert ["ouroboros.generators.base", "ouroboros.generators.diffusion"] in _cycles(graph)


def test_no_source_file_over_about_400_lines():
    sizes = {p.name: len(p.read_text().splitlines()) for p in SRC.rglob("*.py")}
    assert max(sizes.values()) <= 420, sorted(sizes.items(), key=lambda kv: -kv[1])[:3]


# -- the Python API from a plain script ---------------------------------------------------------


SCRIPT = """
import sys
sys.path.insert(0, {examples!r})
import ouroboros
import class_means  # a family of one's own, from a module

run = ouroboros.run("loop-digits-gaussian", out={out!r}, progress=False, overrides={overrides!r})
r = run.results
print("RESULT", type(r).__name__, r["seed"].dtype, r["generation"].dtype, int(r["reference"].sum()),
      sorted(set(r.loc[~r["reference"], "seed"].tolist())), type(run.plot("accuracy")).__name__)
"""

SMALL = ["loop.generators=[{family: class-means, settings: {noise: 0.3}}]", "loop.generations=2",
         "loop.seeds=[0,1]", "classifier.epochs=1", "executor.workers=2"]


def _script(tmp_path, body: str) -> subprocess.CompletedProcess:
    path = tmp_path / "script.py"
    path.write_text(body)
    return subprocess.run([sys.executable, str(path)], capture_output=True, text=True, cwd=tmp_path, timeout=600)


def test_a_plain_script_without_a_main_guard_runs_with_two_workers(tmp_path):
    """(mutation: drop `_main_script_hidden` from the local executor and each worker
    re-runs the script, which dies in the workers)"""
    proc = _script(tmp_path, SCRIPT.format(examples=str(REPO / "examples"), out=str(tmp_path / "run"),
                                           overrides=SMALL))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RESULT DataFrame Int64 Int64 " in proc.stdout and " [0, 1] Axes" in proc.stdout
    timings = json.loads((tmp_path / "run" / "timings.json").read_text())
    # per seed: its classifier and real yardstick, and per generation fit, sample, evaluate (the
    # example family has no held-out loss)
    assert len(timings) == 16


NOTEBOOK = """
import ouroboros

# The example family typed into a notebook cell: its classes live in __main__.
exec(open({example!r}).read().replace('"class-means"', '"typed"'))
run = ouroboros.run("loop-digits-gaussian", out={out!r}, progress=False, overrides={overrides!r})
print("RESULT", len(run.rows))
"""


def test_a_family_defined_in_main_runs_in_this_process(tmp_path):
    overrides = [o.replace("class-means", "typed") for o in SMALL]
    proc = _script(tmp_path, NOTEBOOK.format(example=str(REPO / "examples" / "class_means.py"),
                                             out=str(tmp_path / "run"), overrides=overrides))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RESULT " in proc.stdout


# -- a family of one's own ------------------------------------------------------------------


def _family_keys(module_dir: Path, noise_line: str) -> tuple[dict, str]:
    """The fit and sample stage keys of a plan with the class-means family, from a copy of
    the example module whose noise default line is `noise_line`."""
    source = (REPO / "examples" / "class_means.py").read_text()
    (module_dir / "class_means_copy.py").write_text(source.replace(
        "    noise: float = 0.1  # standard deviation", noise_line + "  # standard deviation"))
    code = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(module_dir)!r})
        source = open({str(REPO / "examples" / "class_means.py")!r}).read()
        import class_means_copy
        from ouroboros.api import resolve_config
        from ouroboros.study import get_study
        config = resolve_config("loop-digits-gaussian", ["loop.generators=[{{family: class-means}}]",
                                                         "loop.generations=2", "loop.seeds=[0]"])
        study = get_study("loop")
        plan = study.plan(config, study.prepare(config), None)
        keys = {{s.kind + str(g): s.key for g, (fit, sample, ev) in enumerate(next(iter(plan.chains.values())))
                for s in (fit, sample)}}
        keys["classifier"] = plan.classifier.key
        print(json.dumps(keys))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.splitlines()[-1])


def test_editing_a_family_recomputes_what_it_made_and_nothing_else(tmp_path):
    before = _family_keys(tmp_path, "    noise: float = 0.1")
    again = _family_keys(tmp_path, "    noise: float = 0.1")
    edited = _family_keys(tmp_path, "    noise: float = 0.1  # edited")  # a comment: the source changed
    assert before == again
    assert edited["classifier"] == before["classifier"]
    assert all(edited[k] != before[k] for k in before if k != "classifier")


def test_a_declared_version_keys_the_family_instead_of_its_source():
    from ouroboros.generators.base import GeneratorFamily
    from ouroboros.graph import code_identity

    class Local:
        pass

    assert code_identity(Local, 3) == "v:3" and code_identity(Local).startswith("src:")
    assert GeneratorFamily("x", dict, Local, Local, "f", "temperature", 1.0, version=2).code == "v:2"
    assert code_identity(api.run) == ""  # ouroboros' own code: the package version covers it
    made = []
    for body in ("return 1", "return 1", "return 2"):  # typed in twice, then edited
        ns = {"__name__": "__main__"}
        exec(f"class Typed:\n    def sample(self):\n        {body}\n", ns)
        made.append(code_identity(ns["Typed"]))
    assert made[0] == made[1] != made[2] and made[0].startswith("code:")


def test_force_recomputes_a_stage_kind_and_what_follows(tmp_path, capsys):
    config = _toy_config(tmp_path)
    assert cli.main(["run", str(config), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert cli.main(["run", str(config), "--out", str(tmp_path / "run")]) == 0
    assert "0 stages run" in capsys.readouterr().err
    assert cli.main(["run", str(config), "--out", str(tmp_path / "run"), "--force", "toy_draw"]) == 0
    assert "3 stages run" in capsys.readouterr().err
    assert cli.main(["run", str(config), "--out", str(tmp_path / "run"), "--force", "nope"]) == 2
    assert "--force nope: no such stage kind" in capsys.readouterr().err


# -- a folder shows one config -------------------------------------------------------------------


def test_a_rerun_with_another_config_shows_that_config_alone(tmp_path, capsys):
    out = tmp_path / "run"
    base = [*TINY, "loop.generations=1", "loop.seeds=[0]", "generator.train_steps=5", "generator.sample_steps=2"]
    assert cli.main(["demo", "--out", str(out), "--quiet", *sum((["--set", s] for s in base), [])]) == 0
    assert (out / "samples" / "guidance=0").is_dir()
    assert "warning:" not in capsys.readouterr().err
    assert cli.main(["demo", "--out", str(out), "--quiet",
                     *sum((["--set", s] for s in [*base, "loop.guidance=[1.0]"]), [])]) == 0
    err = capsys.readouterr().err
    assert len([line for line in err.splitlines() if line.startswith("warning:")]) == 1
    assert "held results of another config" in err
    assert not (out / "samples" / "guidance=0").exists()  # no stale grid of the earlier config
    assert {r["guidance"] for r in api.load_run(out).rows} == {"", "1.0"}
    assert "guidance=0" not in (out / "report.html").read_text()
    history = [json.loads(line) for line in (out / "config-history.jsonl").read_text().splitlines()]
    assert len(history) == 2 and history[0]["hash"] != history[1]["hash"] and all("time" in h for h in history)


# -- CLI conventions ----------------------------------------------------------------------------


def test_version_and_shipped_configs(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"ouroboros {ouroboros.__version__}"
    assert cli.main(["configs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = {p.stem for p in (SRC / "configs").glob("*.yaml")}
    assert {line.split()[0] for line in lines} == names and all(len(line.split()) > 3 for line in lines)
    assert cli.main(["configs", "show", "loop-digits", "--set", "loop.guidance=1"]) == 0
    assert "guidance:\n  - 1.0\n" in capsys.readouterr().out  # a scalar where a list goes: a list of one
    assert cli.main(["configs", "show", "nope"]) == 2
    assert "shipped config" in capsys.readouterr().err


def test_dry_run_counts_stages_and_writes_nothing(tmp_path, capsys):
    config = _toy_config(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    assert cli.main(["run", str(config), "--out", str(tmp_path / "run"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "study: toy" in out and "# 3 stages: 3 to run, 0 cached" in out
    assert sorted(tmp_path.rglob("*")) == before
    assert cli.main(["run", str(config), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert cli.main(["run", str(config), "--out", str(tmp_path / "run"), "--dry-run", "--set", "toy.draws=5"]) == 0
    assert "# 3 stages: 3 to run, 0 cached" in capsys.readouterr().out
    assert cli.main(["run", str(config), "--out", str(tmp_path / "run"), "--dry-run"]) == 0
    assert "# 3 stages: 0 to run, 3 cached" in capsys.readouterr().out


def test_every_argument_has_help():
    parser = cli.build_parser()
    seen = 0
    stack = [parser]
    while stack:
        p = stack.pop()
        for action in p._actions:
            if action.choices and isinstance(action.choices, dict):  # subcommands
                stack += list(action.choices.values())
            elif action.dest != "help":
                assert action.help, (p.prog, action.dest)
                seen += 1
            if action.dest == "out":
                assert "folder" in action.help or "file" in action.help, (p.prog, action.help)
    assert seen > 40


def test_unknown_study_is_one_error_line(tmp_path):
    (tmp_path / "c.yaml").write_text("study: nosuch\n")
    assert_user_error(run_cli("run", tmp_path / "c.yaml", "--out", tmp_path / "run"), "unknown study 'nosuch'")
    assert not (tmp_path / "run").exists()


def test_a_real_run_to_a_pipe_prints_plain_lines_and_english_counts(tmp_path):
    sets = [*TINY, "loop.generations=1", "loop.seeds=[0]", "loop.guidance=[1.0]", "generator.train_steps=5",
            "generator.sample_steps=2"]
    proc = run_cli("demo", "--out", tmp_path / "run", *sum((["--set", s] for s in sets), []))
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr and "\x1b[" not in proc.stderr
    assert "1 guidance value x 1 seed x 1 generation" in proc.stderr
    assert re.search(r"^\[\d+/\d+\] fit w=1 seed=0 gen=0: ", proc.stderr, re.M) and "stages run" in proc.stderr


def test_an_imageset_in_memory_is_a_dataset(tmp_path, digits):
    train, test = digits
    config = {"data": {"train": train, "test": test},
              "loop": {"generations": 1, "seeds": [0], "guidance": [0.0], "samples_per_generation": 40,
                       "generators": [{"family": "gaussian"}]},
              "classifier": {"epochs": 1}, "executor": {"workers": 1}}
    run = ouroboros.run(config,
                        out=tmp_path / "run", progress=False)
    spec = run.config.data.train
    assert spec == f"memory:{train.content_hash()}"
    assert set(run.results["generation"].dropna()) == {0}
    assert get_study("loop") is run.study
