"""``produce``: generate data, train producer models and write their prediction stores.

Exit codes: 0 success, 1 bad input (one line ``produce: error: ...`` on
stderr), 2 command-line usage error, 130 interrupted.
"""
from __future__ import annotations

import argparse
import json
import sys

# Nothing heavy at import time: ``produce --help`` must not load numpy, h5py or torch. The commands
# import what they use; InputError is imported in main, after the arguments parsed.

_EPILOG = {
    "generate": "example:\n  produce generate data/ --videos 4000 --test-videos 1000 --classes 3862 --level video",
    "train": "example:\n  produce train jobs/moe.toml            # resumes from checkpoints if any\n"
             "  produce train jobs/moe.toml --restart  # start over\n"
             "  produce train jobs/moe-oof.toml --fold 3  # [train] folds = 5: one fold model per batch job",
    "predict": "example:\n  produce predict jobs/moe.toml          # -> <run_dir>/predictions/moe.<split>.full.h5\n"
               "  produce predict jobs/lstm.toml --crops 3",
    "distill": "example:\n  produce distill jobs/mlp-student.toml  # [distill] teacher = ensemble stores of the train split\n"
               "  produce predict jobs/mlp-student.toml  # the student predicts like any producer",
    "search": "example:\n  produce search jobs/mlp.toml           # trials of its [search] table, chosen on dev GAP\n"
              "  produce predict jobs/mlp.toml          # then predicts with the best trial",
    "models": "example:\n  produce models --level video",
}


class _Version(argparse.Action):
    """``--version``: prints ``predictions.__version__`` (imported only when asked)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"produce {_version()}")
        parser.exit()


def _version() -> str:
    import predictions

    version = getattr(predictions, "__version__", None)
    if version is None:  # pragma: no cover - until predictions defines it: the installed distribution's
        from importlib.metadata import PackageNotFoundError, version as dist_version

        try:
            version = dist_version("yt8m-ensembler")
        except PackageNotFoundError:
            version = "unknown"
    return version


#: Bounds of ``produce generate`` (checked before anything is written): a generated set is a test or demo
#: data set; the real YouTube-8M has 6.1M videos and 3,862 (2018) or 4,716 (2017) classes.
GENERATE_BOUNDS = {"--videos": (1, 10_000_000), "--test-videos": (0, 10_000_000), "--classes": (1, 100_000),
                   "--shards": (1, 10_000), "--seed": (0, 2**32 - 1)}


def _check_generate(args) -> None:
    from predictions.params import check_number

    for flag, (lo, hi) in GENERATE_BOUNDS.items():
        check_number(flag, getattr(args, flag[2:].replace("-", "_")), lo=lo, hi=hi, integer=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="produce", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train YouTube-8M producer models and save their predictions as stores.",
        epilog="example:\n  produce generate data/ && produce train job.toml && produce predict job.toml\n"
               "A job is one TOML file; see producers/config.py for every option.")
    p.add_argument("--version", action=_Version, help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name, help_):
        sp = sub.add_parser(name, help=help_, description=help_, epilog=_EPILOG[name],
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        sp.add_argument("--json", action="store_true", help="print the result as JSON on stdout (implies --quiet)")
        return sp

    g = add("generate", "write a generated YouTube-8M-shaped data set (TFRecord shards + test truth)")
    g.add_argument("out_dir", metavar="OUT_DIR")
    g.add_argument("--videos", type=int, default=4000, help="labelled videos (default 4000)")
    g.add_argument("--test-videos", type=int, default=1000, help="unlabelled test videos (default 1000)")
    g.add_argument("--classes", type=int, default=3862, help="number of classes (default 3862)")
    g.add_argument("--level", choices=("video", "frame", "both"), default="video")
    g.add_argument("--shards", type=int, default=8, help="files per split (default 8)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--quiet", action="store_true", help="print nothing but errors")

    t = add("train", "train the model of a job config, with checkpoints (resumes by default)")
    t.add_argument("config", metavar="CONFIG", help="job TOML file")
    t.add_argument("--restart", action="store_true", help="discard existing checkpoints and start over")
    t.add_argument("--fold", default=None, metavar="K",
                   help="with [train] folds: train only fold K (0-based) or 'refit', e.g. one batch job per fold")
    t.add_argument("--quiet", action="store_true", help="print nothing but errors")

    r = add("predict", "write prediction stores (and labels files) from a job's best checkpoint")
    r.add_argument("config", metavar="CONFIG", help="job TOML file")
    r.add_argument("--crops", type=int, default=None, help="inference crops, frame-level models (1..5)")
    r.add_argument("--quiet", action="store_true", help="print nothing but errors")

    d = add("distill", "train a student on a teacher's soft predictions of the training videos (resumable)")
    d.add_argument("config", metavar="CONFIG", help="job TOML file with a [distill] section")
    d.add_argument("--restart", action="store_true", help="discard existing checkpoints and start over")
    d.add_argument("--quiet", action="store_true", help="print nothing but errors")

    s = add("search", "train the trials of a job's [search] table; keep the best on dev GAP@20 (resumable)")
    s.add_argument("config", metavar="CONFIG", help="job TOML file with a [search] table")
    s.add_argument("--quiet", action="store_true", help="print nothing but errors")

    m = add("models", "list the registered model architectures")
    m.add_argument("--level", choices=("video", "frame"), default=None)
    m.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    return p


def _run(args) -> tuple[str, object]:
    """Run one command; returns (text for humans, result for --json)."""
    from . import distributed, jobs
    from .config import load_config

    if args.json:
        args.quiet = True
    if args.command == "generate":
        _check_generate(args)
        info = jobs.generate_job(args.out_dir, videos=args.videos, test_videos=args.test_videos,
                                 classes=args.classes, level=args.level, seed=args.seed, shards=args.shards,
                                 progress=not args.quiet)
        text = (f"wrote {info.get('n_train', args.videos)} labelled + {info.get('n_test', args.test_videos)} test "
                f"videos under {args.out_dir}")
        return text, {k: v for k, v in info.items() if k != "shards"}
    if args.command in ("train", "distill"):
        cfg = load_config(args.config)
        h = jobs.train_job(cfg, restart=args.restart, quiet=args.quiet, distill=args.command == "distill",
                           fold=getattr(args, "fold", None))
        if not distributed.is_main_process():
            return "", None
        if isinstance(h, dict):  # [train] folds: one History per fold model
            text = "\n".join(f"{cfg.output.name} {label}: best epoch {f.best_epoch}, dev GAP@20 {f.best_gap:.4f}"
                              for label, f in h.items())
            return text, {"name": cfg.output.name, "folds": {label: {"best_epoch": f.best_epoch,
                                                                     "dev_gap": f.best_gap}
                                                             for label, f in h.items()}}
        text = (f"{cfg.output.name}: best epoch {h.best_epoch}, dev GAP@20 {h.best_gap:.4f}; "
                f"checkpoints in {cfg.job_dir / 'checkpoints'}")
        return text, {"name": cfg.output.name, "best_epoch": h.best_epoch, "dev_gap": h.best_gap,
                      "checkpoints": str(cfg.job_dir / "checkpoints")}
    if args.command == "search":
        from .search import search_job

        res = search_job(load_config(args.config), quiet=args.quiet)
        b = res["best"]
        text = "\n".join(f"{r['trial']}  dev GAP@20 {r['dev_gap']:.4f}  {r['overrides']}" for r in res["trials"])
        return text + f"\nbest: {b['trial']} (dev GAP@20 {b['dev_gap']:.4f})", res
    if args.command == "predict":
        cfg = load_config(args.config)
        paths = [str(p) for p in jobs.predict_job(cfg, crops=args.crops, quiet=args.quiet)]
        return "\n".join(paths), {"stores": paths}
    return _models_listing(args.level)


def _models_listing(level: str | None) -> tuple[str, list[dict]]:
    """``produce models``: one line per registered model, its paper and the paper's own score for it.

    Columns: name, level, input (the frames its paper used: crop / all /
    sample; "-" at video level), then ``paper | paper's score | description``
    ("-" where the paper reports no score for the model alone, or the model
    follows no paper).
    """
    from .models.registry import get_entry, list_models

    entries = [get_entry(n) for n in list_models(level)]
    width = max(len(e.name) for e in entries)
    text = "\n".join(f"{e.name:<{width}}  {e.level:<5}  {e.frames or '-':<6}  {e.paper or '-'} | "
                     f"{e.headline or '-'} | {e.doc}" for e in entries)
    return text, [{"name": e.name, "level": e.level, "frames": e.frames, "paper": e.paper,
                   "headline": e.headline, "doc": e.doc} for e in entries]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``produce`` console script; returns the exit code."""
    args = _parser().parse_args(argv)  # usage errors (and --help): exit here, before any heavy import
    from predictions.errors import InputError

    try:
        _require_extras(args.command)
        text, result = _run(args)
    except (InputError, FloatingPointError) as err:
        sys.stdout.flush()
        print(f"produce: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("produce: interrupted", file=sys.stderr)
        return 130
    try:
        if args.json and result is not None:
            print(json.dumps(result, indent=2, default=str))
        elif text and not args.quiet:
            print(text)
        sys.stdout.flush()
    except BrokenPipeError:  # `produce models | head`: the reader left; exit quietly
        _silence_stdout()
    return 0


#: Commands that train or run models, and the modules they need from the ``producers`` extra.
_NEEDS_TORCH = ("generate", "train", "predict", "distill", "search", "models")


def _require_extras(command: str) -> None:
    """One line naming the extra to install when torch (or the TFRecord reader) is missing."""
    from predictions.extras import require

    if command in _NEEDS_TORCH:
        require("torch", "producers", what=f"produce {command}")
    if command in ("generate", "train", "predict", "distill", "search"):  # the TFRecord reader and writer
        for module in ("crc32c", "tfrecord", "google.protobuf"):
            require(module, "producers", what=f"produce {command}")


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that Python's exit-time flush does not raise again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # pragma: no cover - stdout without a file descriptor
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
