"""What every study shares: derived seeds, data stages, the generator's fit/sample
parameters, and opening and closing a run folder."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ouroboros.config import StudyConfig
from ouroboros.data.imageset import ImageSet
from ouroboros.io import stable_hash, write_json_atomic, write_text_atomic
from ouroboros.runner import Runner, Stage, write_record

# Generator settings that only sampling reads: fit keys leave them out, so changing the
# sampler reuses the fitted models.
SAMPLING_FIELDS = ("sampler", "sample_steps", "sample_batch_size")


def derived_seed(*parts) -> int:
    """A 31-bit seed determined by `parts` (chain seed, generation, purpose)."""
    return int(stable_hash(list(parts)), 16) % (2**31 - 1)


def data_stage(imageset: ImageSet, role: str, cache: Path) -> Stage:
    """A stage whose artifact is a loaded dataset, written now if absent."""
    stage = Stage("data", {"content_hash": imageset.content_hash(), "role": role}, label=role)
    path = stage.artifact(cache)
    if not path.exists():
        imageset.save(path)
        write_record(stage.record(cache), "cpu")
    return stage


def generator_params(config: StudyConfig) -> tuple[dict, dict]:
    """(fit config, sampling settings) of the study's generator, as stage parameters."""
    gen = dataclasses.asdict(config.generator)
    return ({k: v for k, v in gen.items() if k not in SAMPLING_FIELDS}, {k: gen[k] for k in SAMPLING_FIELDS})


def start_runner(config: StudyConfig, run_dir: Path, progress: bool, runner: Runner | None = None) -> Runner:
    """The study's runner with its executor started: a cluster that does not answer, or a
    node that cannot see the run folder, stops the run here, before anything is written."""
    if runner is None:
        runner = make_runner(config, run_dir, progress)
    runner.executor.start(run_dir)
    return runner


def open_run(config: StudyConfig, run_dir: Path, progress: bool, runner: Runner | None = None) -> Runner:
    """Create the run folder, write the resolved config.yaml, and return its runner
    (started by `start_runner` unless given one already started)."""
    import yaml

    runner = start_runner(config, run_dir, progress, runner)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    return runner


def make_runner(config: StudyConfig, run_dir: Path, progress: bool, on_event=None) -> Runner:
    """The runner of a study's run folder, with the executor `config.executor` asks for
    (not started yet: `start_runner` does that); `on_event` as in `Runner`."""
    from ouroboros.executors import make_executor

    return Runner(run_dir, progress=progress, on_event=on_event, executor=make_executor(config.executor))


def write_timings(run_dir: Path, runner: Runner) -> None:
    """timings.json: the stages run this time, with their wall time and the node each ran on
    (the host name locally; the Ray node's name under Ray)."""
    write_json_atomic(run_dir / "timings.json",
                      [{"kind": k, "stage": label, "seconds": round(sec, 3), "node": node}
                       for (k, label, sec), node in zip(runner.timings, runner.nodes)])
