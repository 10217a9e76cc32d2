"""ouroboros: simulate generated images flowing back into training data, and measure the damage.

Bad input gives one `error:` line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import errno
import sys
import warnings

from ouroboros import commands as C
from ouroboros.errors import UserError


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
        p.add_argument("--log-mlflow", nargs="?", const="file:mlruns", metavar="URI",
                       help="when the run is done, log its config, every metric per generation and condition, "
                            "and its plots and report to MLflow (default URI: file:mlruns; extra [mlflow])")
        p.add_argument("--log-tensorboard", metavar="DIR",
                       help="when the run is done, write the same as TensorBoard event files under DIR "
                            "(extra [tensorboard])")

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
    p.set_defaults(func=C.cmd_demo)

    p = sub.add_parser("run", help="run or resume a study config")
    p.add_argument("config", help="a study config: a shipped name (see `ouroboros configs`) or a YAML file")
    p.add_argument("--out", help="the run folder to write or resume: results, plots, samples, report "
                                 "(default: runs/<the config's name>)")
    common(p)
    runs(p)
    p.set_defaults(func=C.cmd_run)

    p = sub.add_parser("configs", help="list the shipped study configs, or print one resolved")
    p.add_argument("action", nargs="?", choices=["show"], help="show: print config NAME resolved")
    p.add_argument("name", nargs="?", help="a shipped config's name")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value before printing it (repeatable)")
    p.set_defaults(func=C.cmd_configs)

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
    p.set_defaults(func=C.cmd_metrics)

    p = sub.add_parser("caption-metrics", help="BLEU-1..4, METEOR, ROUGE-L and CIDEr-D of captions, equal to "
                                               "pycocoevalcap's, printed as JSON keyed like it")
    p.add_argument("results", help="COCO results JSON: [{\"image_id\": 1, \"caption\": \"...\"}, ...], one per image")
    p.add_argument("annotations", help="COCO captions JSON: {\"annotations\": [{\"image_id\": 1, \"caption\": "
                                       "\"...\"}, ...], \"images\": [{\"id\": 1}, ...]}")
    p.add_argument("--meteor-jar", help="METEOR's meteor-1.5.jar (default: the one pycocoevalcap ships)")
    p.set_defaults(func=C.cmd_caption_metrics)

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
    p.set_defaults(func=C.cmd_mix)

    p = sub.add_parser("generate", help="make a generated dataset (text2image: prompts through a diffusers pipeline)")
    gen = p.add_subparsers(dest="generator", required=True, parser_class=_Parser)
    p = gen.add_parser("text2image", help="an ImageFolder of images from a local diffusers text-to-image pipeline, "
                                          "with a manifest of every image's prompt and seed")
    p.add_argument("--model", required=True, help="a diffusers pipeline folder (save_pretrained, safetensors)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--classes", help="class list: 'ID<TAB>name, synonym, ...', LOC_synset_mapping.txt, "
                                        "one name a line, or imagenet_class_index.json")
    what.add_argument("--captions", help="captions: COCO captions JSON or one caption a line")
    p.add_argument("--prompts", choices=["simple", "complex", "simple-released", "complex-released"],
                   help="simple: the template with the class name (default: 'A photo of {name}', the paper's Sec. "
                   "3.2); complex: Hataya et al.'s App. A.5 script (random synonym, quality, medium, suffix); "
                   "complex-released: the authors' released script ('realistic drawing' in place of 'image'); "
                   "simple-released: its simple prompts, 'photo of {name}'")
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
    p.set_defaults(func=C.cmd_generate_text2image)
    p = gen.add_parser("tiny-pipeline", help="save a randomly initialised tiny Stable Diffusion pipeline "
                                             "(tests, benchmarks; no download)")
    p.add_argument("--out", required=True, help="a new folder to save the pipeline in")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    p.add_argument("--real-size", action="store_true", help="Stable Diffusion 1.5's sizes (about 1B parameters)")
    p.set_defaults(func=C.cmd_generate_tiny)

    p = sub.add_parser("report", help="redraw plots and the self-contained report.html of run folders from their "
                                      "results.csv (several: compared on one page)")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders (the --out of study runs)")
    p.add_argument("--out", help="the .html file to write (default: RUN_DIR/report.html for one run folder, "
                                 "./report.html for several); its plots go to plots/ beside it")
    p.set_defaults(func=C.cmd_report)
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
