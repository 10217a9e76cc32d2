"""ouroboros: simulate generated images flowing back into training data, and measure the damage.

Bad input gives one `error:` line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import errno
import sys
import time
import warnings
from pathlib import Path

from ouroboros.errors import UserError


def _run_study(config, out: Path, args) -> int:
    from ouroboros import api
    from ouroboros.preflight import check_log_file, check_output_dir
    from ouroboros.runner import JsonEventLog

    log_json = getattr(args, "log_json", None)
    force = _force_kinds(getattr(args, "force", None))
    out = check_output_dir(out)  # before loading data; the study checks again before writing
    if getattr(args, "dry_run", False):
        return _dry_run(config, out)
    if log_json is not None:
        check_log_file(log_json, out)  # /dev/full, the run folder, a folder: before anything is written
    start = time.perf_counter()
    log = JsonEventLog(Path(log_json)) if log_json is not None else None
    try:
        run = api.execute(config, out, progress=not args.quiet, force=force, on_event=log)
    finally:
        if log is not None:
            log.close()
    if not args.quiet:
        text = run.study.summary(run.rows, run.config)
        if text:
            print(text)
        ran = len(run.timings)
        print(f"done in {time.perf_counter() - start:.1f}s ({_count(ran, 'stage')} run, the rest cached): {out}/",
              file=sys.stderr)
    return 0


def _count(n: int, noun: str) -> str:
    """'1 stage', '2 stages'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _force_kinds(kinds: list[str] | None) -> tuple[str, ...]:
    if not kinds:
        return ()
    from ouroboros.graph import STAGE_KINDS
    import ouroboros.stages  # noqa: F401  (the built-in kinds)

    known = sorted(STAGE_KINDS)
    for kind in kinds:
        if kind != "all" and kind not in known:
            raise UserError(f"--force {kind}: no such stage kind; use all or one of {', '.join(known)}")
    return tuple(kinds)


def _dry_run(config, out: Path) -> int:
    import yaml

    from ouroboros import api

    counts = api.dry_run(config, out)
    print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
    print(f"# {_count(counts['stages'], 'stage')}: {counts['stages'] - counts['cached']} to run, "
          f"{counts['cached']} cached in {out}/cache")
    for kind, (total, cached) in sorted(counts["by_kind"].items()):
        print(f"#   {kind}: {total} ({cached} cached)")
    return 0


def _executor_options(config, args):
    """--executor and --ray-address over the config's executor section."""
    if args.executor is not None:
        config.executor.kind = args.executor
    if args.ray_address is not None:
        if config.executor.kind != "ray":
            raise UserError("--ray-address applies to the ray executor; add --executor ray")
        config.executor.address = args.ray_address
    config.validate()
    if config.executor.kind == "ray":  # a missing extra or a dead address: found before any data is loaded
        from ouroboros.executors.address import check_reachable
        from ouroboros.executors.ray import import_ray

        import_ray()
        if config.executor.address is not None:
            check_reachable(config.executor.address)
    return config


def cmd_demo(args) -> int:
    from ouroboros.api import resolve_config

    config = _executor_options(resolve_config(None, args.set, base={"name": "demo"}), args)
    return _run_study(config, Path(args.out), args)


def cmd_run(args) -> int:
    from ouroboros.api import resolve_config

    config = _executor_options(resolve_config(args.config, args.set), args)
    out = Path(args.out) if args.out else Path("runs") / config.name
    return _run_study(config, out, args)


def cmd_configs(args) -> int:
    from ouroboros.config import shipped_configs

    if args.action is None:
        if args.name is not None or args.set:
            raise UserError("give `configs show NAME` to print one config; `configs` alone lists them")
        shipped = shipped_configs()
        width = max(len(name) for name in shipped)
        for name, (_, line) in shipped.items():
            print(f"{name:<{width}}  {line}")
        return 0
    if args.name is None:
        raise UserError("configs show needs a NAME; `ouroboros configs` lists them")
    import yaml

    from ouroboros.api import resolve_config

    print(yaml.safe_dump(resolve_config(args.name, args.set).to_dict(), sort_keys=False), end="")
    return 0


def _load_features_or_images(path: str):
    """A .npy feature array (N x D), or anything a dataset loader reads."""
    from ouroboros.data.imageset import read_npy
    from ouroboros.data.loaders import load_dataset

    if path.endswith(".npy"):
        if not Path(path).is_file():
            raise UserError(f"feature file not found: {path}")
        return read_npy(path)  # checks the header first: a corrupt one cannot ask for terabytes
    return load_dataset(path)


def cmd_metrics(args) -> int:
    import json

    import numpy as np

    from ouroboros.data.imageset import ImageSet
    from ouroboros.features import default_features, get_extractor
    from ouroboros.metrics import fid, kid, prdc, precision_recall

    # Checked before loading anything: loading may train a classifier.
    if args.k is not None and not 1 <= args.k <= 1000:
        raise UserError(f"--k must lie in [1, 1000] (neighbours for precision/recall); got {args.k}")
    if not 1 <= args.kid_subsets <= 100_000:
        raise UserError(f"--kid-subsets must lie in [1, 100000]; got {args.kid_subsets}")
    real, fake = _load_features_or_images(args.real), _load_features_or_images(args.fake)
    if isinstance(real, ImageSet) != isinstance(fake, ImageSet):
        raise UserError("REAL and FAKE must both be datasets or both be .npy feature files")
    if isinstance(real, ImageSet):
        if real.shape != fake.shape:
            raise UserError(f"REAL images are {real.shape} but FAKE images are {fake.shape}; they must match")
        name = args.features or default_features(real)
        options = {}
        if name == "classifier":
            if real.class_names != fake.class_names:
                raise UserError(f"REAL classes {list(real.class_names)} differ from FAKE classes "
                                f"{list(fake.class_names)}; classifier features need the same classes")
            options = {"classifier_dir": args.classifier, "real": real}
        elif name == "inception":
            options = {"weights": args.inception_weights}
        extractor = get_extractor(name, **options)
        real_f, fake_f = extractor(real, progress=not args.json), extractor(fake, progress=not args.json)
    else:
        if args.features:
            raise UserError("--features applies to datasets, not to .npy feature files")
        name, real_f, fake_f = "given", real, fake
    k_pr = args.k if args.k is not None else 3
    k_prdc = args.k if args.k is not None else 5
    kid_mean, kid_std = kid(real_f, fake_f, subsets=args.kid_subsets)
    result = {
        "features": name,
        "n_real": int(len(real_f)),
        "n_fake": int(len(fake_f)),
        "fid": fid(real_f, fake_f),
        "kid": {"mean": kid_mean, "std": kid_std},
        "precision_recall": {"k": k_pr, **precision_recall(real_f, fake_f, k=k_pr)},
        "prdc": {"k": k_prdc, **prdc(real_f, fake_f, k=k_prdc)},
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"features: {name}  ({result['n_real']} real, {result['n_fake']} fake, d = {np.shape(real_f)[1]})")
    rows = [("FID", result["fid"]), ("KID", kid_mean), ("KID std", kid_std)]
    rows += [(f"{m} (Kynkaanniemi, k={k_pr})", result["precision_recall"][m]) for m in ("precision", "recall")]
    rows += [(f"{m} (Naeem, k={k_prdc})", result["prdc"][m]) for m in ("precision", "recall", "density", "coverage")]
    for label, value in rows:
        print(f"  {label:<32}{value:>12.5g}")
    return 0


def cmd_mix(args) -> int:
    from ouroboros.data.loaders import load_dataset
    from ouroboros.data.mixtures import check_ratio, mix

    check_ratio(args.ratio)
    if not args.out.endswith(".npz"):
        raise UserError(f"--out must name an .npz file; got {args.out}")
    real = load_dataset(args.real)
    other = load_dataset(args.generated) if args.generated else None
    mixed = mix(args.mode, real, other, args.ratio, seed=args.seed, allow_repeats=args.allow_repeats)
    mixed.save(args.out)
    gen = int((mixed.generation > 0).sum())
    print(f"{args.out}: {len(mixed)} images ({len(mixed) - gen} real, {gen} generated), "
          f"{mixed.num_classes} classes, hash {mixed.content_hash()}")
    return 0


def cmd_report(args) -> int:
    from ouroboros import api
    from ouroboros.report.html import report_path, run_labels

    report_path(args.run_dirs, args.out)  # the output and every folder checked before anything is written
    runs = [api.load_run(Path(p), label) for p, label in zip(args.run_dirs, run_labels(args.run_dirs))]
    for run in runs:  # what a run derives from its results (a contamination run's tables.md) is redrawn too
        run.study.redraw(run)
    print(api.write_report(runs, Path(args.out) if args.out else None))
    return 0


def cmd_generate_text2image(args) -> int:
    from ouroboros.generators import prompts, text2image

    settings = text2image.settings_from(args)
    settings.validate()
    if not 1 <= args.per_class <= 1_000_000:
        raise UserError(f"--per-class must lie in [1, 1000000]; got {args.per_class}")
    if not 0 <= args.seed <= 2**31 - 1:
        raise UserError(f"--seed must lie in [0, 2147483647]; got {args.seed}")
    if args.captions is not None:
        if args.prompts is not None or args.template is not None:
            raise UserError("--prompts and --template apply to --classes; with --captions the captions are the prompts")
        groups, kind = prompts.read_captions(args.captions), "captions"
    else:
        kind = args.prompts or "simple"
        if args.template is not None and kind != "simple":
            raise UserError("--template applies to --prompts simple")
        groups = prompts.read_classes(args.classes)
    template = args.template or prompts.DEFAULT_TEMPLATE
    from ouroboros.bounds import check_text2image  # classes x --per-class: before the work list is built

    check_text2image(groups, kind, args.per_class, settings.size, args.max_images, args.max_disk_gib)
    items = prompts.work_list(groups, kind, args.per_class, args.seed, template)
    meta = {"prompts": kind, "template": template if kind == "simple" else None, "seed": args.seed}
    summary = text2image.generate(items, settings, Path(args.out), workers=args.workers, device=args.device,
                                  batch_size=args.batch_size, executor=args.executor, ray_address=args.ray_address,
                                  progress=not args.quiet, meta=meta)
    if not args.quiet:
        print(f"{args.out}: {len(items)} images in {len(groups)} folders ({summary['made']} made, "
              f"{summary['skipped']} already there) in {summary['seconds']:.1f}s, "
              f"{summary['images_per_second']:.2f} images/s; manifest: {Path(args.out) / text2image.MANIFEST}")
    return 0


def cmd_generate_tiny(args) -> int:
    from ouroboros.generators.text2image import build_tiny_pipeline
    from ouroboros.preflight import check_output_dir

    out = check_output_dir(args.out)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{args.out} exists and is not empty; choose a new folder")
    print(build_tiny_pipeline(out, seed=args.seed, real_size=args.real_size))
    return 0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, like every other input error
        print(f"error: {message} (see ouroboros --help)", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    from ouroboros.version import __version__

    parser = _Parser(prog="ouroboros", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"ouroboros {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common(p):
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. --set loop.generations=3 (repeatable)")
        p.add_argument("--quiet", action="store_true", help="no progress bar, per-stage lines or summary")
        p.add_argument("--log-json", metavar="FILE",
                       help="write one JSON object per line to FILE for each stage cached, started, finished or "
                            "failed (kind, label, key, seconds)")
        p.add_argument("--executor", choices=["local", "ray"],
                       help="where stages run: local worker processes or Ray tasks (default: the config's "
                            "executor.kind, local)")
        p.add_argument("--ray-address", metavar="ADDR",
                       help="with --executor ray: auto (the cluster running here) or HOST:PORT of a head node "
                            "(default: start a local Ray instance)")

    def runs(p):
        p.add_argument("--dry-run", action="store_true",
                       help="print the resolved config and how many stages would run and how many are cached; "
                            "write nothing")
        p.add_argument("--force", action="append", metavar="KIND",
                       help="recompute the cached stages of this kind (fit, sample, evaluate, ...; all: every kind) "
                            "and everything made from them (repeatable)")

    p = sub.add_parser("demo", help="the feedback-loop study on the embedded digits (what `make demo` runs)")
    p.add_argument("--out", default="runs/demo",
                   help="the run folder to write or resume: results, plots, samples, report (default: runs/demo)")
    common(p)
    runs(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("run", help="run or resume a study config")
    p.add_argument("config", help="a study config: a shipped name (see `ouroboros configs`) or a YAML file")
    p.add_argument("--out", help="the run folder to write or resume: results, plots, samples, report "
                                 "(default: runs/<the config's name>)")
    common(p)
    runs(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("configs", help="list the shipped study configs, or print one resolved")
    p.add_argument("action", nargs="?", choices=["show"], help="show: print config NAME resolved")
    p.add_argument("name", nargs="?", help="a shipped config's name")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value before printing it (repeatable)")
    p.set_defaults(func=cmd_configs)

    p = sub.add_parser("metrics", help="FID, KID, precision/recall and PRDC between two image sets or feature files")
    p.add_argument("real", help="real dataset (digits, idx:DIR, imagefolder:DIR, FILE.npz, ...) or N x D .npy features")
    p.add_argument("fake", help="generated dataset or .npy features, the same kind as REAL")
    p.add_argument("--features", choices=["classifier", "inception", "pixels"],
                   help="feature extractor (default: classifier for images up to 32x32, else inception)")
    p.add_argument("--k", type=int, help="neighbourhood size for precision/recall and PRDC (default 3 and 5)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--classifier",
                   help="a saved classifier folder for classifier features (default: train one on REAL)")
    p.add_argument("--inception-weights",
                   help="path to the FID Inception weights file (pt_inception-2015-12-05-6726825d.pth)")
    p.add_argument("--kid-subsets", type=int, default=100, help="random subsets for KID (default 100)")
    p.set_defaults(func=cmd_metrics)

    p = sub.add_parser("mix", help="mix real and generated images per class (replace, append or subsample)")
    p.add_argument("--real", required=True, help="the real dataset")
    p.add_argument("--generated", help="the generated (or second real) dataset; not needed for subsample")
    p.add_argument("--ratio", required=True, type=float, help="fraction in [0, 1], e.g. 0.4")
    p.add_argument("--mode", choices=["replace", "append", "subsample"], default="replace",
                   help="replace: swap that share of each class for generated images (default); append: add "
                        "generated on top of all real; subsample: keep that share of real only")
    p.add_argument("--seed", type=int, default=0, help="seed of the per-class draws (default 0)")
    p.add_argument("--allow-repeats", action="store_true",
                   help="draw from --generated with replacement when it is short of a class (control mixtures)")
    p.add_argument("--out", required=True, help="the .npz file to write the mixed dataset to")
    p.set_defaults(func=cmd_mix)

    p = sub.add_parser("generate", help="make a generated dataset (text2image: prompts through a diffusers pipeline)")
    gen = p.add_subparsers(dest="generator", required=True, parser_class=_Parser)
    p = gen.add_parser("text2image", help="an ImageFolder of images from a local diffusers text-to-image pipeline, "
                                          "with a manifest of every image's prompt and seed")
    p.add_argument("--model", required=True, help="a diffusers pipeline folder (save_pretrained, safetensors)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--classes", help="class list: 'ID<TAB>name, synonym, ...', LOC_synset_mapping.txt, "
                                        "one name a line, or imagenet_class_index.json")
    what.add_argument("--captions", help="captions: COCO captions JSON or one caption a line")
    p.add_argument("--prompts", choices=["simple", "complex"], help="simple: the template with the class name "
                   "(default); complex: Hataya et al.'s random synonym, quality, medium and suffix")
    p.add_argument("--template", help="simple prompts' template (default: 'A photo of {name}')")
    p.add_argument("--per-class", type=int, default=1, help="images per class (with --captions: per caption)")
    p.add_argument("--out", required=True, help="output folder: OUT/<class id>/<index>.png and OUT/manifest.jsonl")
    p.add_argument("--seed", type=int, default=0, help="base seed; image seeds derive from (seed, class, index)")
    p.add_argument("--steps", type=int, default=50, help="inference steps (default 50, as the paper)")
    p.add_argument("--guidance-scale", type=float, default=7.5,
                   help="diffusers' classifier-free guidance scale s = 1 + w (default 7.5, as the paper)")
    p.add_argument("--size", type=int, default=512, help="image side in pixels (default 512)")
    p.add_argument("--scheduler", default="default", help="default (the pipeline's own), pndm, ddim, ddpm, euler, "
                   "euler-ancestral, lms, dpm-solver or unipc")
    p.add_argument("--batch-size", type=int, default=0,
                   help="images per pipeline call (default 0: 64 on CUDA, halved on out-of-memory; 4 on CPU)")
    p.add_argument("--workers", type=int, help="local worker processes (default: one per GPU, or 1)")
    p.add_argument("--device", default="auto", help="auto (every GPU, else CPU), cpu, cuda or cuda:N")
    p.add_argument("--dtype", default="auto", help="auto (fp16 on CUDA, fp32 on CPU), fp32, fp16 or bf16")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local processes, or one Ray task per shard (--out on storage every node sees)")
    p.add_argument("--ray-address", help="Ray cluster address (default: start or join a local one)")
    p.add_argument("--safety-checker", action="store_true", help="keep the pipeline's safety checker (off by default)")
    p.add_argument("--watermark", action="store_true", help="keep the pipeline's watermarker (off by default)")
    p.add_argument("--max-images", type=int, default=2_000_000,
                   help="refuse a run of more images than this (classes x --per-class; default 2000000)")
    p.add_argument("--max-disk-gib", type=float, default=1000.0,
                   help="refuse a run whose images may take more GiB than this (size x size x 3 bytes each, "
                        "default 1000)")
    p.add_argument("--quiet", action="store_true", help="no progress line or summary")
    p.set_defaults(func=cmd_generate_text2image)
    p = gen.add_parser("tiny-pipeline", help="save a randomly initialised tiny Stable Diffusion pipeline "
                                             "(tests, benchmarks; no download)")
    p.add_argument("--out", required=True, help="a new folder to save the pipeline in")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    p.add_argument("--real-size", action="store_true", help="Stable Diffusion 1.5's sizes (about 1B parameters)")
    p.set_defaults(func=cmd_generate_tiny)

    p = sub.add_parser("report", help="redraw plots and the self-contained report.html of run folders from their "
                                      "results.csv (several: compared on one page)")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders (the --out of study runs)")
    p.add_argument("--out", help="the .html file to write (default: RUN_DIR/report.html for one run folder, "
                                 "./report.html for several); its plots go to plots/ beside it")
    p.set_defaults(func=cmd_report)
    return parser


# OSErrors a user can fix (permissions, space, path names): one `error:` line, not a traceback.
_USER_OS_ERRORS = {
    errno.EACCES: "check its permissions or choose another path",
    errno.EPERM: "check its permissions or choose another path",
    errno.EROFS: "the file system is read-only; choose another path",
    errno.ENOSPC: "free some space and run again (finished stages are cached)",
    errno.EDQUOT: "free some space and run again (finished stages are cached)",
    errno.ENAMETOOLONG: "choose a shorter path",
    errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
    errno.EISDIR: "it is a folder, not a file; choose another path",
    errno.EEXIST: "a file is in the way of a folder; choose another path",
}


def _one_line(text: str) -> str:
    """Library messages can span lines; the contract is one line."""
    return " ".join(text.split())


def _os_error_message(exc: OSError) -> str:
    where = exc.filename if exc.filename is not None else "a file"
    verb = "write" if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS) else "access"
    return f"cannot {verb} {where}: {exc.strerror or exc}; {_USER_OS_ERRORS[exc.errno]}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Warnings are held back: after a failure the user sees only the one `error:` line;
    # after success each is shown on one line.
    with warnings.catch_warnings(record=True) as caught:
        try:
            code = args.func(args)
        except UserError as exc:
            print(f"error: {_one_line(str(exc))}", file=sys.stderr)
            return 2
        except OSError as exc:
            if exc.errno not in _USER_OS_ERRORS:
                _show_warnings(caught)
                raise
            print(f"error: {_one_line(_os_error_message(exc))}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted: finished stages are cached; run the same command again to resume", file=sys.stderr)
            return 130
        except BaseException:
            _show_warnings(caught)  # a bug: everything helps
            raise
    _show_warnings(caught)
    return code


def _show_warnings(caught: list) -> None:
    shown = set()
    for w in caught:
        line = f"warning: {w.category.__name__}: {_one_line(str(w.message))}"
        if line not in shown:
            shown.add(line)
            print(line, file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
