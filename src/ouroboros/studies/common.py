"""What every study shares: derived seeds, data stages, the generator's fit/sample
parameters, and the runner of a run folder."""

from __future__ import annotations

from pathlib import Path

from ouroboros.config import StudyConfig
from ouroboros.data.imageset import ImageSet
from ouroboros.io import stable_hash
from ouroboros.graph import Stage, settings_params, write_record
from ouroboros.runner import Runner

# Generator settings that only sampling reads: fit keys leave them out, so changing the
# sampler reuses the fitted models.
SAMPLING_FIELDS = ("sampler", "sample_steps", "sample_batch_size")


def derived_seed(*parts) -> int:
    """A 31-bit seed determined by `parts` (chain seed, generation, purpose)."""
    return int(stable_hash(list(parts)), 16) % (2**31 - 1)


def data_stage(imageset: ImageSet, role: str, cache: Path | None) -> Stage:
    """A stage whose artifact is a loaded dataset, written now if absent (not when `cache`
    is None: a dry run plans without writing)."""
    stage = Stage("data", {"content_hash": imageset.content_hash(), "role": role}, label=role)
    if cache is None:
        return stage
    path = stage.artifact(cache)
    if not path.exists():
        imageset.save(path)
        write_record(stage.record(cache), "cpu")
    return stage


def family_params(family) -> dict:
    """What fit and sample stages record of the family they use: its name (absent for
    diffusion, the stages' default, so plans made before families existed keep their
    keys) and, for a plug-in family, its code identity and module (a worker process
    imports the module to find the family)."""
    params = {} if family.name == "diffusion" else {"family": family.name}
    if family.code:
        params.update(code=family.code, module=family.module)
    return params


def generator_params(config: StudyConfig) -> tuple[dict, dict]:
    """(fit config, sampling settings) of the study's generator, as stage parameters."""
    gen = settings_params(config.generator)
    return ({k: v for k, v in gen.items() if k not in SAMPLING_FIELDS}, {k: gen[k] for k in SAMPLING_FIELDS})


def make_runner(config: StudyConfig, run_dir: Path, progress: bool, on_event=None) -> Runner:
    """The runner of a study's run folder, with the executor `config.executor` asks for
    (not started yet: `ouroboros.api.execute` starts it); `on_event` as in `Runner`."""
    from ouroboros.executors import make_executor

    return Runner(run_dir, progress=progress, on_event=on_event, executor=make_executor(config.executor))
