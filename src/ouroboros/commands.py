"""What each `ouroboros` command does, once its arguments are parsed (`ouroboros.cli`).
Bad input raises `UserError`; the command line prints it as one `error:` line."""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path

from ouroboros.errors import UserError
from ouroboros.study import count


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
    exports = {"mlflow": getattr(args, "log_mlflow", None), "tensorboard": getattr(args, "log_tensorboard", None)}
    if any(v is not None for v in exports.values()):
        from ouroboros import exporters

        exporters.check(**exports)  # installed, and a usable target: before anything is written
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
        print(f"done in {time.perf_counter() - start:.1f}s ({count(ran, 'stage')} run, the rest cached): {out}/",
              file=sys.stderr)
    if any(v is not None for v in exports.values()):
        exporters.export(run, **exports, quiet=args.quiet)
    return 0


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
    print(f"# {count(counts['stages'], 'stage')}: {counts['stages'] - counts['cached']} to run, "
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
            print(f"{name:<{width}}  {textwrap.shorten(line, 100, placeholder=' ...')}")
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


def cmd_caption_metrics(args) -> int:
    """Scores the results' images against their references (in the annotations' order),
    as pycocoevalcap's COCOEvalCap does with params['image_id'] = the results' image ids."""
    import json

    from ouroboros.data.caption_loaders import read_annotations, read_results
    from ouroboros.metrics.captions import caption_metrics, not_computed

    _, refs = read_annotations(args.annotations)
    results = read_results(args.results, refs)
    if args.meteor_jar is not None and not Path(args.meteor_jar).is_file():
        raise UserError(f"--meteor-jar {args.meteor_jar} is not a file; give the path of meteor-1.5.jar")
    scores = caption_metrics(results, {i: refs[i] for i in refs if i in results}, jar=args.meteor_jar)
    for reason in not_computed(args.meteor_jar).values():
        print(f"note: {reason}", file=sys.stderr)
    print(json.dumps(scores, indent=2))
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

    print(api.report(args.run_dirs, args.out))
    return 0


def cmd_generate_text2image(args) -> int:
    from ouroboros.generators import prompts, text2image, text2image_run

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
    meta = {"prompts": kind, "template": template if kind == "simple" else None, "seed": args.seed,
            "prompts_source": prompts.SOURCES[kind]}
    summary = text2image_run.generate(items, settings, Path(args.out), workers=args.workers, device=args.device,
                                  batch_size=args.batch_size, executor=args.executor, ray_address=args.ray_address,
                                  progress=not args.quiet, meta=meta)
    if not args.quiet:
        print(f"{args.out}: {len(items)} images in {len(groups)} folders ({summary['made']} made, "
              f"{summary['skipped']} already there) in {summary['seconds']:.1f}s, "
              f"{summary['images_per_second']:.2f} images/s; manifest: {Path(args.out) / text2image.MANIFEST}")
    return 0


def cmd_generate_tiny(args) -> int:
    from ouroboros.generators.tiny_pipeline import build_tiny_pipeline
    from ouroboros.preflight import check_output_dir

    out = check_output_dir(args.out)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{args.out} exists and is not empty; choose a new folder")
    print(build_tiny_pipeline(out, seed=args.seed, real_size=args.real_size))
    return 0
