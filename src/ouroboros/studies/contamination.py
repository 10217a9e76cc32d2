"""The contamination study (Hataya, Bao and Arai 2023) on disjoint real splits.

`data.train` is cut, per class, into disjoint splits: the downstream training set,
the generator's own training data, a real control source and the test split. The
generated pool comes from a class-conditional diffusion model fitted on the generator
split and sampled by class (or from an external folder, `contamination.generated`).
Every mixture trains each architecture from scratch with a fixed recipe, for every
seed, scored on the clean test split and on shifted copies of it.

Tables written to ``tables.md`` (mean ± std over seeds of test accuracy, %):

- Table 1: generated vs. real control replacing 0/20/40/80/100% of the training set.
- Table 5: simple conditioning (one guidance) vs. diverse (guidance and sampling
  steps drawn per image), replacing the same shares.
- Table 6: accuracy on shifted test sets, per share of generated data.
- Table 7: a small real set alone vs. filled up to full size with generated or real.
- Table 8: all real data plus appended generated data.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from ouroboros.config import StudyConfig
from ouroboros.data.imageset import ImageSet, stratified_split
from ouroboros.data.loaders import load_dataset
from ouroboros.errors import UserError
from ouroboros.preflight import check_run
from ouroboros.runner import Stage
from ouroboros.studies.common import data_stage, derived_seed, generator_params, open_run, write_timings

PARAM_COLUMNS = ["table", "source", "ratio", "arch", "test"]


def load_splits(config: StudyConfig) -> dict[str, ImageSet]:
    c = config.contamination
    full = load_dataset(config.data.train)
    fractions = {"train": c.split_train}
    if c.generated is None:
        fractions["generator"] = c.split_generator
    if c.control is None:
        fractions["control"] = c.split_control
    if config.data.test is None:
        fractions["test"] = c.split_test
    fractions = {k: v for k, v in fractions.items() if v > 0}
    missing = {"train", "generator", "control", "test"} - set(fractions)
    missing -= {k for k, ext in (("generator", c.generated), ("control", c.control), ("test", config.data.test)) if ext}
    if missing:
        raise UserError(f"contamination: split fractions for {sorted(missing)} must be positive")
    counts = full.class_counts()
    if (counts < len(fractions)).any():
        raise UserError(f"every class needs at least {len(fractions)} images to make {len(fractions)} splits; "
                        f"counts {counts.tolist()}")
    splits = stratified_split(full, fractions, seed=config.data.split_seed)
    for role, spec in (("generated", c.generated), ("control", c.control), ("test", config.data.test)):
        if spec is not None:
            external = load_dataset(spec)
            if external.class_names != full.class_names:
                raise UserError(f"{role} set {spec} has classes {list(external.class_names)[:5]}..., "
                                f"the training data {list(full.class_names)[:5]}...: they must match")
            if external.shape != full.shape:
                raise UserError(f"{role} set {spec} has images {external.shape}, the training data {full.shape}")
            if role == "generated":  # images from disk load as real; these are not
                external = external.with_provenance(source=f"gen:{Path(spec.split(':', 1)[-1]).name}",
                                                    generation=np.maximum(external.generation, 1))
            splits[role] = external
    return splits


@dataclasses.dataclass
class Cell:
    table: str
    source: str
    ratio: float
    mixture: Stage


def plan(config: StudyConfig, cache: Path, splits: dict[str, ImageSet]) -> tuple[list[Cell], dict]:
    c = config.contamination
    stages = {role: data_stage(s, role, cache) for role, s in splits.items()}
    train = splits["train"]
    n_pool = train.num_classes * int(train.class_counts().max())  # enough of every class for 100%
    if "generated" in stages:
        simple = diverse = stages["generated"]
    else:
        fit_config, sampling = generator_params(config)
        fit = Stage("fit", {"config": fit_config, "seed": derived_seed("pool", "fit"), "name": "diffusion"},
                    {"train": stages["generator"]}, label="pool generator")
        simple = Stage("sample", {"n": n_pool, "guidance": float(c.guidance), "seed": derived_seed("pool", "simple"),
                                  **sampling}, {"model": fit}, label="simple pool")
        diverse = Stage("sample_diverse", {"n": n_pool, "guidance": [float(w) for w in c.diverse_guidance],
                                           "sample_steps": list(c.diverse_sample_steps),
                                           "seed": derived_seed("pool", "diverse")},
                        {"model": fit}, label="diverse pool")

    def mixture(mode, other, ratio, repeats=False, label=""):
        if mode == "replace" and ratio == 0.0:
            return stages["train"]  # the clean training set itself
        deps = {"real": stages["train"]} | ({"other": other} if other is not None else {})
        return Stage("mix", {"mode": mode, "ratio": float(ratio), "seed": derived_seed("mix", mode, ratio),
                             "allow_repeats": repeats}, deps, label=label)

    cells = []
    for r in c.ratios:
        cells.append(Cell("1", "generated", r, mixture("replace", simple, r, label=f"generated {r:g}")))
        cells.append(Cell("1", "real control", r, mixture("replace", stages["control"], r, True, f"control {r:g}")))
        cells.append(Cell("5", "simple", r, cells[-2].mixture))
        cells.append(Cell("5", "diverse", r, mixture("replace", diverse, r, label=f"diverse {r:g}")))
    small = c.small_fraction
    cells.append(Cell("7", f"{small:.0%} real", small, mixture("subsample", None, small, label="small real")))
    cells.append(Cell("7", "+ generated", small, mixture("replace", simple, 1 - small, label="filled generated")))
    cells.append(Cell("7", "+ real", small, mixture("replace", stages["control"], 1 - small, True, "filled real")))
    for r in c.append_ratios:
        cells.append(Cell("8", "real + generated", r, mixture("append", simple, r, label=f"append {r:g}")))

    analysis = _analysis_stages(config, stages, cells, simple, diverse, len(train))

    runs = {}  # (mixture key, arch, seed) -> classify stage
    for cell in cells:
        for arch in c.archs:
            for seed in c.seeds:
                key = (cell.mixture.key, arch, seed)
                if key not in runs:
                    cfg = dataclasses.asdict(config.classifier) | {"arch": arch}
                    runs[key] = Stage("classify", {"config": cfg, "seed": seed, "shifts": list(c.shifts)},
                                      {"train": cell.mixture, "test": stages["test"]},
                                      label=f"{cell.mixture.label or 'real'} {arch} seed={seed}")
    return cells, runs, analysis


def _analysis_stages(config, stages, cells, simple, diverse, n_samples: int) -> dict:
    """Tables 3 and 4 and the detection probe, keyed by (table, source, ratio or probe set)."""
    feat_cfg = dataclasses.asdict(config.classifier) | {"arch": "cnn"}
    features = Stage("classifier", {"config": feat_cfg, "seed": 0}, {"train": stages["train"]},
                     label="feature classifier")
    fit_config, sampling = generator_params(config)
    out = {}
    for cell in cells:
        if cell.table != "1":
            continue
        out[("4", cell.source, cell.ratio)] = Stage(
            "score_set", {"k": 5}, {"images": cell.mixture, "reference": stages["test"], "classifier": features},
            label=f"table 4 {cell.source} {cell.ratio:g}")
        if cell.source == "generated":  # Table 3: a generative model trained on the mixture
            fit = Stage("fit", {"config": fit_config, "seed": derived_seed("table3", cell.ratio), "name": "diffusion"},
                        {"train": cell.mixture}, label=f"table 3 fit {cell.ratio:g}")
            sample = Stage("sample", {"n": n_samples, "guidance": float(config.contamination.guidance),
                                      "seed": derived_seed("table3", "sample", cell.ratio), **sampling},
                           {"model": fit}, label=f"table 3 sample {cell.ratio:g}")
            out[("3", cell.source, cell.ratio)] = Stage(
                "score_set", {"k": 5}, {"images": sample, "reference": stages["test"], "classifier": features},
                label=f"table 3 score {cell.ratio:g}")
        if cell.source == "generated":  # Table 11: self-supervised pre-training + linear probe
            for seed in config.contamination.seeds:
                out[("11", f"seed{seed}", cell.ratio)] = Stage(
                    "ssl", {"config": feat_cfg, "seed": seed, "epochs": config.classifier.epochs},
                    {"train": cell.mixture, "test": stages["test"]}, label=f"ssl {cell.ratio:g} seed={seed}")
    for name, pool in (("simple", simple), ("diverse", diverse)):
        out[("detection", name, "")] = Stage("detect", {"seed": 0}, {"real": stages["test"], "generated": pool,
                                                                      "classifier": features},
                                             label=f"detect {name}")
    return out


def _rows(config: StudyConfig, cells: list[Cell], runs: dict, analysis: dict, paths: dict) -> list[dict]:
    rows = []
    for (table, source, ratio), stage in analysis.items():
        seed, arch = 0, ""
        if table == "11":  # keyed by seed: ("11", "seed<N>", ratio)
            seed, source, arch = int(source[len("seed"):]), "generated", "dae + linear probe"
        for metric, value in sorted(json.loads(paths[stage.key].read_text()).items()):
            if table == "detection":  # one value per probe
                arch, metric = metric, "accuracy"
            rows.append({"study": config.name, "cell": f"table{table}:{source}:{ratio}", "seed": seed,
                         "generation": "", "metric": metric, "value": value, "table": table, "source": source,
                         "ratio": ratio, "arch": arch, "test": "held-out real" if table == "detection" else "test"})
    for cell in cells:
        for arch in config.contamination.archs:
            for seed in config.contamination.seeds:
                scores = json.loads(paths[runs[(cell.mixture.key, arch, seed)].key].read_text())["scores"]
                for name, value in sorted(scores.items()):
                    test, metric = name.split("/")
                    rows.append({"study": config.name, "cell": f"table{cell.table}:{cell.source}:{cell.ratio:g}",
                                 "seed": seed, "generation": "", "metric": metric, "value": value,
                                 "table": cell.table, "source": cell.source, "ratio": cell.ratio, "arch": arch,
                                 "test": test})
    return rows


def _stat(rows, **where) -> str:
    v = [100 * float(r["value"]) for r in rows if r["metric"] == "accuracy" and all(
        str(r[k]) == str(val) for k, val in where.items())]
    return f"{np.mean(v):.1f} ± {np.std(v):.1f}" if v else "-"


def tables_markdown(rows: list[dict], config: StudyConfig) -> str:
    c = config.contamination
    pct = lambda r: f"{float(r):.0%}"  # noqa: E731
    out = [f"# {config.name}: contamination tables",
           "", f"Test accuracy (%), mean ± std over seeds {c.seeds}; clean test split unless named.", ""]

    def table(title, header, body):
        out.extend([f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)])
        out.extend("| " + " | ".join(r) + " |" for r in body)
        out.append("")

    table("Table 1: replacing real training data", ["arch", "source"] + [pct(r) for r in c.ratios],
          [[a, s] + [_stat(rows, table="1", source=s, ratio=r, arch=a, test="clean") for r in c.ratios]
           for a in c.archs for s in ("generated", "real control")])
    table("Table 5: simple vs. diverse conditioning", ["arch", "conditioning"] + [pct(r) for r in c.ratios],
          [[a, s] + [_stat(rows, table="5", source=s, ratio=r, arch=a, test="clean") for r in c.ratios]
           for a in c.archs for s in ("simple", "diverse")])
    tests = ["clean"] + list(c.shifts)
    table("Table 6: shifted test sets (generated replacing real)", ["arch", "generated"] + tests,
          [[a, pct(r)] + [_stat(rows, table="1", source="generated", ratio=r, arch=a, test=t) for t in tests]
           for a in c.archs for r in c.ratios])
    sources = [f"{c.small_fraction:.0%} real", "+ generated", "+ real"]
    table(f"Table 7: {c.small_fraction:.0%} real data, alone or filled up to full size", ["arch"] + sources,
          [[a] + [_stat(rows, table="7", source=s, arch=a, test="clean") for s in sources] for a in c.archs])
    table("Table 8: all real data plus appended generated data", ["arch", "+0%"] + [f"+{pct(r)}" for r in c.append_ratios],
          [[a, _stat(rows, table="1", source="generated", ratio=0.0, arch=a, test="clean")]
           + [_stat(rows, table="8", ratio=r, arch=a, test="clean") for r in c.append_ratios] for a in c.archs])
    def value(table_, source, ratio, metric):
        v = [float(r["value"]) for r in rows if r["table"] == table_ and r["source"] == source
             and str(r["ratio"]) == str(ratio) and r["metric"] == metric]
        return f"{v[0]:.3f}" if v else "-"

    table("Table 3: a generative model trained on each mixture, scored against the test split "
          "(FID; precision@5, recall@5 in classifier features)", ["generated share", "FID", "precision", "recall"],
          [[pct(r)] + [value("3", "generated", r, m) for m in ("fid", "precision", "recall")] for r in c.ratios])
    table("Table 4: the training sets themselves against the test split (precision@5, recall@5)",
          ["source", "share"] + ["precision", "recall", "FID"],
          [[s_, pct(r)] + [value("4", s_, r, m) for m in ("precision", "recall", "fid")]
           for s_ in ("generated", "real control") for r in c.ratios])
    table("Table 11: self-supervised pre-training (masked denoising autoencoder) + linear probe, "
          "vs. supervised training (cnn)", ["generated share", "supervised", "DAE + linear probe"],
          [[pct(r), _stat(rows, table="1", source="generated", ratio=r, arch="cnn", test="clean"),
            _stat(rows, table="11", ratio=r)] for r in c.ratios])
    table("Detection (Sec. 6.1): real (held-out test split) vs. generated, probes on frozen classifier features; "
          "test accuracy on disjoint halves (chance 0.5)", ["generated pool", "logistic regression", "2-layer MLP"],
          [[name] + [f"{float(r['value']):.3f}" for probe in ("logistic", "mlp") for r in rows
                     if r["table"] == "detection" and r["source"] == name and r["arch"] == probe]
           for name in ("simple", "diverse")])
    return "\n".join(out) + "\n"


def group_confusion(m: np.ndarray, class_names, groups) -> tuple[np.ndarray, list[str]]:
    """Sum a class confusion matrix over superclasses (Fig. 3); classes in no group are dropped."""
    if not groups:
        return m, list(class_names)
    index = {name: i for i, name in enumerate(class_names)}
    unknown = sorted({c for g in groups for c in g} - set(index))
    if unknown:
        raise UserError(f"contamination.class_groups names unknown classes: {unknown[:5]}")
    member = np.zeros((len(groups), len(class_names)))
    for gi, g in enumerate(groups):
        member[gi, [index[c] for c in g]] = 1
    return member @ m @ member.T, ["/".join(g) if len(g) <= 4 else f"{g[0]}.. ({len(g)})" for g in groups]


def _figures(config, run_dir, splits, cells, runs, analysis, paths) -> None:
    """Fig. 6 (power spectra of real vs generated) and Fig. 3 (confusion matrices of a
    classifier trained on clean vs fully generated data)."""
    from ouroboros.metrics.spectra import radial_power_spectra
    from ouroboros.report.plots import plot_confusions, plot_spectra

    c = config.contamination
    spectra = {"real (training split)": radial_power_spectra(splits["train"].images)}
    for name in ("simple", "diverse"):
        pool = analysis[("detection", name, "")].deps["generated"]
        spectra[f"generated ({name})"] = radial_power_spectra(ImageSet.load(paths[pool.key]).images)
    plot_spectra(spectra, run_dir / "plots" / "spectra.png")

    arch, seed = c.archs[0], c.seeds[0]
    matrices, labels = {}, None
    for cell in cells:
        if cell.table == "1" and cell.source == "generated" and cell.ratio in (0.0, 1.0):
            m = np.asarray(json.loads(paths[runs[(cell.mixture.key, arch, seed)].key].read_text())["confusion"])
            m, labels = group_confusion(m, splits["train"].class_names, c.class_groups)
            matrices[f"{arch}, trained on {cell.ratio:.0%} generated"] = m
    if matrices:
        plot_confusions(matrices, labels, run_dir / "plots" / "confusion.png")


def report(run_dir: Path, config: StudyConfig, rows: list[dict] | None = None) -> Path:
    """(Re)write tables.md from results.csv."""
    from ouroboros.io import write_text_atomic
    from ouroboros.report.results import read_results

    run_dir = Path(run_dir)
    rows = rows if rows is not None else read_results(run_dir / "results.csv")
    write_text_atomic(run_dir / "tables.md", tables_markdown(rows, config))
    return run_dir / "tables.md"


def run(config: StudyConfig, run_dir: Path, progress: bool = True, runner=None) -> dict:
    from ouroboros.report.grids import save_grid
    from ouroboros.report.results import write_results

    splits = load_splits(config)  # bad data fails here, before anything is written
    check_run(config, run_dir, splits["train"].shape, splits["train"].num_classes)  # and a bad --out or component
    k = splits["train"].num_classes
    group_confusion(np.zeros((k, k)), splits["train"].class_names, config.contamination.class_groups)
    if progress:
        c = config.contamination
        print(f"ouroboros: {config.name}: contamination study, {len(c.archs)} archs x {len(c.seeds)} seeds, "
              f"{len(splits['train'])} real training images -> {run_dir}", file=sys.stderr)
    run_dir = Path(run_dir)
    runner = open_run(config, run_dir, progress, runner)
    cells, runs, analysis = plan(config, runner.cache, splits)
    paths = runner.run(list(runs.values()) + list(analysis.values()))
    rows = _rows(config, cells, runs, analysis, paths)
    write_results(run_dir / "results.csv", rows, PARAM_COLUMNS)
    write_timings(run_dir, runner)
    report(run_dir, config, rows)
    _figures(config, run_dir, splits, cells, runs, analysis, paths)
    for cell in cells:
        if cell.table == "1" and cell.ratio == 1.0 and cell.mixture.key in paths:
            name = "generated" if cell.source == "generated" else "control"
            save_grid(ImageSet.load(paths[cell.mixture.key]), run_dir / "samples" / f"{name}.png",
                      config.output.grid_per_class, config.output.grid_scale)
    save_grid(splits["train"], run_dir / "samples" / "real.png", config.output.grid_per_class, config.output.grid_scale)
    return {"run_dir": str(run_dir), "timings": runner.timings}
