"""The ``ensemble`` command line: build, apply, evaluate, submit, import, report, schemes.

Exit codes: 0 success, 1 bad input (one line on stderr, no traceback), 2 usage; a closed
output pipe (``ensemble ... | head``) ends the command quietly, as ``cat`` does.

Commands from other packages plug in through the entry-point group
``yt8m_ensembler.commands`` (``NAME = module``, the module having
``add_arguments(parser)`` and ``run(args) -> dict``): that is how ``ensemble
report`` comes from :mod:`reports.cli` without the ensembler importing the
reports, which stand above it.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import sys
import warnings

# Nothing heavy at import time (``ensemble --help`` stays fast): each command imports what it uses,
# and InputError (whose package loads numpy and h5py) is imported where it is raised or caught.

EPILOG_BUILD = """examples:
  ensemble build --weights=caruana --members 'runs/demo/predictions/*.h5' \\
      --labels runs/demo/labels --out runs/demo/predictions --name ens-caruana
  (fits on the held-out split, prints a cross-fitted estimate, writes
   ens-caruana.<split>.full.h5 for every split, ens-caruana.model.npz and ens-caruana.build.json)

  ensemble build --weights=caruana --members 'csv/*.csv' --labels csv/truth.heldout.csv \\
      --out blend/ --submit submission.csv
  (Kaggle CSVs MODEL.heldout.csv + MODEL.csv (test) and the official truth CSV in, the submission out)"""

#: Where other packages' subcommands are found (see the module docstring).
COMMANDS_GROUP = "yt8m_ensembler.commands"


def _param(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _add_build(add) -> None:
    b = add("build", "fit an ensembling scheme on the held-out split and write ensemble stores", EPILOG_BUILD)
    b.add_argument("--weights", "--scheme", dest="scheme", default="uniform",
                   help="the weighting scheme: see 'ensemble schemes' (default uniform); 'auto' tries every "
                        "scheme (or --param schemes=lr,caruana,...), keeps the best cross-fitted one and "
                        "reports a nested estimate of that choice")
    b.add_argument("--param", action="append", type=_param, default=[], metavar="KEY=VALUE",
                   help="scheme parameter, repeatable (e.g. --param n_iterations=100)")
    b.add_argument("--members", nargs="+", required=True,
                   help="stores: files, directories or globs; Kaggle CSVs too (files or globs ending in .csv, "
                        "named MODEL.SPLIT.csv or MODEL.csv for the test split), imported once into the CSV cache")
    _labels_option(b, required=False)
    b.add_argument("--out", required=True, help="output directory, or one .h5 file for a single-split build")
    b.add_argument("--name", help="ensemble name (default ens-<scheme>)")
    b.add_argument("--fit-split", default="heldout", help="split the scheme is fitted on (default heldout)")
    b.add_argument("--top", "--k", dest="top", type=int,
                   help="labels kept per video in the output stores (default: the members' largest k; "
                        "--k is the old name)")
    _missing_option(b)
    b.add_argument("--submit", metavar="CSV",
                   help="also write the test split's Kaggle submission CSV (checked: every test video, "
                        "written with the other outputs, all or none)")
    b.add_argument("--submit-top", type=int, default=20, help="label/score pairs per video in --submit (default 20)")
    b.add_argument("--precision", type=int, default=6, help="decimals of each score in --submit (default 6)")
    b.add_argument("--member-k", type=int, help="cut each member to its top K labels first")
    b.add_argument("--folds", type=int, default=5, help="folds of the cross-fitted estimate (default 5)")
    b.add_argument("--seed", type=int, default=0,
                   help="random_state of the scheme and of the folds, 0 .. 4294967295 (the range numpy, "
                        "scikit-learn, xgboost and torch all accept)")
    b.add_argument("--chunk-rows", type=int,
                   help="videos per streamed chunk (default: about 4M member entries per chunk, bounding memory)")
    b.add_argument("--fold-crops", choices=("mean", "none"), default="mean",
                   help="fold each model's crops into one member by their mean (default), or keep each crop")
    b.add_argument("--require-same-ids", action="store_true", help="error unless all members have the same videos")
    b.add_argument("--allow-mixed-k", action="store_true", help="accept members with different top-k widths")
    b.add_argument("--scheduler", metavar="ADDRESS",
                   help="run the chunked work on a Dask cluster (tcp://host:port, or local[:N] for a LocalCluster)")
    _verify_option(b)
    _csv_options(b)


def _add_apply(add) -> None:
    a = add("apply", "apply a fitted ensemble (a build's record and model) to new prediction files",
            "example:\n  ensemble apply runs/demo/predictions/ens-caruana.build.json \\\n"
            "      --members 'new/*.test.full.h5' --out new/\n"
            "(the same members by name, any splits; writes <name>.<split>.full.h5 as the build did)")
    a.add_argument("record", help="the build record, <name>.build.json (its <name>.model.npz beside it)")
    a.add_argument("--members", nargs="+", required=True, help="stores or Kaggle CSVs of the same members")
    a.add_argument("--out", required=True, help="output directory")
    _labels_option(a, required=False)
    _missing_option(a)
    _verify_option(a)
    a.add_argument("--submit", metavar="CSV", help="also write the test split's submission CSV")
    _csv_options(a)


def _add_evaluate(add) -> None:
    e = add("evaluate", "print GAP@20, MAP, Hit@1 and PERR of stores against labels",
            "example:\n  ensemble evaluate --members 'runs/demo/predictions/*.h5' --labels runs/demo/labels --split eval")
    e.add_argument("--members", nargs="+", required=True,
                   help="stores: files, directories or globs; Kaggle CSVs too (see build --help)")
    _labels_option(e, required=True)
    e.add_argument("--split", default="heldout", help="split to score (default heldout)")
    e.add_argument("--gap-k", "--k", dest="gap_k", type=int, default=20,
                   help="the cut-off of GAP@K (default 20; not an output width: evaluate writes nothing)")
    e.add_argument("--chunk-rows", type=int, default=50000, help="videos per streamed chunk")
    e.add_argument("--fold-crops", choices=("mean", "none"), default="mean")
    e.add_argument("--scheduler", metavar="ADDRESS", help="read and score chunks on a Dask cluster")
    _verify_option(e)
    _csv_options(e)


def _add_submit(add) -> None:
    s = add("submit", "write a Kaggle submission CSV from a store",
            "example:\n  ensemble submit runs/demo/predictions/ens-uniform.test.full.h5 --out submission.csv")
    s.add_argument("store", help="an ensemble's (or any member's) store for the test split")
    s.add_argument("--out", required=True, help="CSV to write (atomically)")
    s.add_argument("--top", "--k", dest="top", type=int, default=20,
                   help="label/score pairs per video (default 20)")
    s.add_argument("--precision", type=int, default=6, help="decimals of each score (default 6)")
    s.add_argument("--any-split", action="store_true",
                   help="write it even if the store is not of the test split (by default an error)")
    s.add_argument("--expect", metavar="CSV",
                   help="a sample submission or truth CSV: refuse a submission that lacks any of its videos "
                        "or adds one")
    _verify_option(s)


def _add_import(add) -> None:
    i = add("import", "convert Kaggle CSVs (VideoId,LabelConfidencePairs or rank-only VideoId,Label) into stores",
            "examples:\n"
            "  ensemble import team_a.csv --model team_a --split test --classes 3862 --out preds/\n"
            "  ensemble import --members 'teams/*.csv' --out preds/   # one store per CSV, all or none\n"
            "  ensemble import --labels truth.csv --split heldout --out labels/   # labels.heldout.h5\n"
            "a CSV's model and split come from its file name, MODEL.SPLIT.csv (SPLIT one of train, heldout,\n"
            "eval, test) or MODEL.csv (split test), unless --model/--split are given")
    i.add_argument("csv", nargs="*", help="CSV files: VideoId,LabelConfidencePairs or VideoId,Label (ranks)")
    i.add_argument("--members", nargs="+", default=[], metavar="CSV",
                   help="more CSVs: files or globs ('teams/*.csv'), as for build --members")
    i.add_argument("--model", help="member name to record (one CSV only; default from the file name)")
    i.add_argument("--split", help="split name to record (heldout, eval, test, ...; default from the file name, "
                                   "else test)")
    i.add_argument("--labels", metavar="TRUTH_CSV",
                   help="import a truth CSV (VideoId,Labels) as the labels store labels.<split>.h5 (needs --split "
                        "unless named NAME.SPLIT.csv)")
    i.add_argument("--classes", type=int, default=3862, help="number of classes (default 3862)")
    i.add_argument("--out", required=True,
                   help="directory (writes <model>.<split>.full.h5 per CSV) or, for one CSV, a .h5 file")


def _add_schemes(add) -> None:
    sc = add("schemes", "list the ensembling schemes, or one scheme's parameters",
             "examples:\n  ensemble schemes\n  ensemble schemes caruana")
    sc.add_argument("scheme", nargs="?", help="show this scheme's parameters, their rules and defaults")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ensemble", description="Combine saved predictions of multi-label classifiers.",
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="run 'ensemble COMMAND --help' for each command's options and an example")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name, help, epilog):
        sp = sub.add_parser(name, help=help, description=help, epilog=epilog,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        sp.add_argument("--quiet", action="store_true", help="print nothing but errors")
        sp.add_argument("--json", action="store_true", help="print the result as JSON (for scripts)")
        return sp

    for add_command in (_add_build, _add_apply, _add_evaluate, _add_submit, _add_import):
        add_command(add)
    for name, module in _plugin_commands().items():
        plugin = add(name, getattr(module, "HELP", f"the {name} command"), getattr(module, "EPILOG", None))
        module.add_arguments(plugin)
    _add_schemes(add)
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    return p


def _verify_option(parser) -> None:
    parser.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True,
                        help="check each store's checksum before using it (default; streaming, about the cost of "
                             "reading the store once more); --no-verify skips it")


def _version() -> str:
    from importlib import metadata
    try:
        return metadata.version("yt8m-ensembler")
    except metadata.PackageNotFoundError:
        return "unknown"


def _plugin_commands() -> dict:
    """``{name: module}`` of the subcommands other packages register (entry points, loaded lazily)."""
    from importlib import metadata
    out = {}
    for ep in metadata.entry_points(group=COMMANDS_GROUP):
        try:
            out[ep.name] = ep.load()
        except ImportError:
            continue  # the package providing it is not importable here (an extra not installed)
    return out


def _labels_option(p, required: bool) -> None:
    p.add_argument("--labels", nargs="+", required=required,
                   help="truth: labels stores labels.<split>.h5 (files, dirs or globs) and official truth CSVs "
                        "(VideoId,Labels) named NAME.<split>.csv or given as SPLIT=PATH")


def _missing_option(p) -> None:
    p.add_argument("--missing", choices=("error", "zero", "drop"), default="error",
                   help="a split (other than the fit split) where the members cover different videos: error "
                        "(default: names each member and how many videos it lacks), zero (keep every video; a "
                        "member that lacks one scores 0 for it) or drop (keep only the shared videos)")


def _csv_options(p) -> None:
    p.add_argument("--classes", type=int,
                   help="class count of CSV members (default: that of the stores or labels given, else 3862)")
    p.add_argument("--csv-cache", metavar="DIR",
                   help="where CSV members are imported, once (default $ENSEMBLE_CSV_CACHE, else "
                        "~/.cache/yt8m-ensembler/csv; delete it to clear it)")


def _say(args, text: str) -> None:
    if not args.quiet and not args.json:
        print(text)


@contextlib.contextmanager
def _client(address):
    """A Dask client for ``--scheduler`` (closed afterwards), or None."""
    if not address:
        yield None
        return
    from .distributed import connect
    client = connect(address)
    try:
        yield client
    finally:
        client.close()


def _cmd_build(args) -> dict:
    from .build import build
    with _client(args.scheduler) as client:
        rec = build(args.members, scheme=args.scheme, params=dict(args.param), labels=args.labels, out=args.out,
                    name=args.name, fit_split=args.fit_split, k=args.top, n_folds=args.folds, random_state=args.seed,
                    chunk_rows=args.chunk_rows, fold_crops=args.fold_crops, member_k=args.member_k,
                    require_same_ids=args.require_same_ids, allow_mixed_k=args.allow_mixed_k, verify=args.verify,
                    progress=not (args.quiet or args.json), command=shlex.join(["ensemble"] + sys.argv[1:]),
                    log=lambda t: _say(args, t), client=client, classes=args.classes, csv_cache=args.csv_cache,
                    missing=args.missing, submit=args.submit, submit_top=args.submit_top,
                    submit_precision=args.precision)
    _say(args, _build_summary(rec))
    return {**rec.to_dict(), "record_path": rec.path}


def _cmd_apply(args) -> dict:
    from .apply import load_build
    fitted = load_build(args.record)
    if args.submit:
        from .submission import check_submission_target
        check_submission_target(args.submit, 20, 6)
    outputs = fitted.apply(args.members, out=args.out, labels=args.labels, missing=args.missing, verify=args.verify,
                           classes=args.classes, csv_cache=args.csv_cache, progress=not (args.quiet or args.json),
                           log=lambda t: _say(args, t))
    for split, path in outputs.items():
        _say(args, f"wrote {path}")
    result = {"record": args.record, "outputs": outputs}
    if args.submit:
        from .submission import write_checked_submission
        from predictions.errors import InputError
        if "test" not in outputs:
            raise InputError(f"--submit needs the test split; the members given are of {', '.join(outputs)}")
        info = write_checked_submission(outputs["test"], args.submit, verify=False)
        _say(args, f"wrote {args.submit}: {info['videos']} videos, top {info['top']}")
        result["submission"] = {"path": args.submit, **info}
    return result


def _build_summary(rec) -> str:
    """The human summary of a BuildRecord: estimates with their fold standard errors."""
    from .evaluate import format_table

    def pm(value, se):
        return f"{value:.4f}" + ("" if se is None else f" ± {se:.4f}")

    lines = [f"ensemble {rec.name} ({rec.scheme}) over {len(rec.members)} members, "
             f"fitted on {rec.n_fit_videos} {rec.fit_split} videos"]
    if rec.crossfit is not None:
        best_name, best = rec.best_single
        cv = rec.crossfit
        lines.append(f"  {rec.fit_split} GAP@20: best single member {best_name} {best:.4f} | uniform "
                     f"{rec.uniform_gap:.4f} | {rec.scheme} cross-fitted ({cv.n_folds} folds) "
                     f"{pm(cv.estimate, cv.std_error)} [folds {' '.join(f'{s:.4f}' for s in cv.fold_scores)}]"
                     + ("  (± fold standard error)" if cv.std_error is not None else ""))
    elif rec.estimate is not None:
        best_name, best = rec.best_single
        lines.append(f"  {rec.fit_split} GAP@20: best single member {best_name} {best:.4f} | {rec.scheme} "
                     f"{pm(rec.estimate, rec.std_error)} (a fixed scheme: it sees no labels, so no cross-fitting "
                     f"is needed)")
    candidates = rec.candidate_estimates
    if candidates:
        fitted = rec.fitted
        lines.append(f"  auto tried {len(candidates)} schemes, cross-fitted on all {rec.fit_split} videos "
                     f"({fitted.get('n_folds', '?')} folds, the same for every scheme):")
        width = max(len(s) for s in candidates)
        for scheme, c in sorted(candidates.items(), key=lambda kv: -kv[1]["estimate"]):
            mark = "  <- chosen" if scheme == rec.chosen_scheme else ""
            lines.append(f"    {scheme:{width}s} {pm(c['estimate'], c['std_error'])}{mark}")
        corr = fitted.get("selection_correction")
        if isinstance(corr, (int, float)) and rec.crossfit is not None:
            lines.append(f"  the choice itself: nested estimate {pm(rec.crossfit.estimate, rec.crossfit.std_error)} "
                         f"(the selection redone in every outer fold); the winner's own estimate is optimistic "
                         f"by about {corr:.4f} (fold correction)")
    bagged = rec.fitted.get("bagged_models") or (rec.fitted.get("chosen_fitted") or {}).get("bagged_models")
    if isinstance(bagged, int):
        lines.append(f"  final model: the average of the {bagged} fold models the estimate measured")
    if rec.weights:
        lines.append("  weights: " + ", ".join(f"{m} {w:.3f}" for m, w in rec.weights.items()))
    if rec.importance:
        shown = sorted(rec.importance.items(), key=lambda kv: -kv[1])
        lines.append("  member importance (the stacker's, summed over each member's features): "
                     + ", ".join(f"{m} {v:.3g}" for m, v in shown))
    from .coverage import describe_coverage
    for split, cov in rec.coverage.items():
        line = describe_coverage(split, cov)
        if line:
            lines.append(line)
    for split, sc in rec.scores.items():
        if split == rec.fit_split:
            continue
        rows = [{"name": f"{rec.name} (ensemble)", **sc["ensemble"]}] + sc.get("members", [])
        lines.append(f"  {split} split (no combiner saw these labels):\n" + format_table(rows))
    lines += [f"  wrote {p}" for p in rec.outputs.values()]
    extra = rec.extra_outputs or {}
    if extra.get("model"):
        lines.append(f"  model {extra['model']} (ensemble apply reuses it)")
    if extra.get("submission"):
        sub = extra["submission"]
        lines.append(f"  submission {sub['path']}: {sub['videos']} test videos, top {sub['top']}")
    lines.append(f"  record {rec.path}")
    return "\n".join(lines)


def _positive(option: str, value) -> None:
    from predictions.params import Num
    if value is not None:
        Num(lo=1, integer=True).check(option, value)


def _not_empty(out: str) -> None:
    from predictions.errors import InputError
    if not out.strip():  # Path("") is the current directory
        raise InputError("--out is empty: give a file name")


def _cmd_evaluate(args) -> list:
    from predictions.errors import InputError
    from predictions.labels import read_labels

    from .evaluate import check_labels_cover, evaluate_members, format_table
    from .members import discover, verify_members, with_csv_stores
    from .truth import find_truth, read_truth
    _positive("--gap-k", args.gap_k)
    _positive("--chunk-rows", args.chunk_rows)
    _positive("--classes", args.classes)
    files = find_truth(args.labels)
    if args.split not in files:
        raise InputError(f"no labels of split {args.split!r} among {', '.join(args.labels)} (labels.{args.split}.h5, "
                         f"NAME.{args.split}.csv or {args.split}=truth.csv)")
    truth = read_truth({args.split: files[args.split]}, args.classes or 3862)[args.split]
    members = with_csv_stores(args.members, classes=args.classes or truth.num_classes, csv_cache=args.csv_cache,
                              progress=not (args.quiet or args.json), log=lambda t: _say(args, t))
    by_split = discover(members, fold_crops=args.fold_crops)
    if args.split not in by_split:
        raise InputError(f"no store of split {args.split!r} among {', '.join(args.members)}; splits found: "
                         f"{', '.join(sorted(by_split)) or 'none'}")
    members = by_split[args.split]
    for m in members:
        for r in m.readers:
            if len(r) == 0:
                raise InputError("the store holds no video: nothing to evaluate", r.path)
            if r.num_classes != truth.num_classes:
                raise InputError(f"{r.num_classes} classes, but {files[args.split]} has {truth.num_classes}",
                                 r.path)
    if args.verify:
        verify_members(members, progress=not (args.quiet or args.json))
    for m in members:
        for r in m.readers:
            check_labels_cover(truth, r.ids, files[args.split], r.path)
    with _client(args.scheduler) as client:
        rows = evaluate_members(members, truth, k=args.gap_k, chunk_rows=args.chunk_rows, client=client)
    _say(args, f"{args.split} split, GAP@{args.gap_k}:\n" + format_table(rows))
    return rows


def _cmd_submit(args) -> dict:
    from predictions.atomic import check_not_input

    from .submission import check_submission_target, write_checked_submission
    _not_empty(args.out)
    check_not_input(args.out, [args.store] + ([args.expect] if args.expect else []), what="submission")
    check_submission_target(args.out, args.top, args.precision)
    info = write_checked_submission(args.store, args.out, top=args.top, precision=args.precision,
                                    split_ok=args.any_split, expect=args.expect, verify=args.verify)
    _say(args, f"wrote {args.out}: {info['videos']} videos, top {args.top}")
    return {"out": args.out, **info}


def _import_labels(args) -> dict:
    """``ensemble import --labels truth.csv --split S --out DIR``: the truth CSV as ``labels.S.h5``."""
    from pathlib import Path

    from predictions.atomic import check_not_input, check_target
    from predictions.errors import InputError
    from predictions.labels import write_labels

    from .truth import find_truth, read_truth
    if args.csv or args.members or args.model:
        raise InputError("--labels imports one truth CSV: give it without prediction CSVs or --model")
    files = find_truth([f"{args.split}={args.labels}" if args.split else args.labels])
    (split, path), = files.items()
    labels = read_truth(files, args.classes)[split]
    out = Path(args.out)
    target = out if out.suffix == ".h5" and not out.is_dir() else out / f"labels.{split}.h5"
    check_target(target, what="labels file")
    check_not_input(target, [path], what="labels file")
    target.parent.mkdir(parents=True, exist_ok=True)
    write_labels(target, labels, split=split, source=str(path))
    _say(args, f"wrote {target}: {len(labels)} videos, split {split}")
    return {"out": str(target), "videos": len(labels), "split": split}


def _cmd_import(args) -> dict:
    """One store per CSV, written together (all or none): ``--out`` is a directory, or a .h5 file for one CSV."""
    from pathlib import Path

    from predictions.atomic import AtomicSet, check_not_input, check_target
    from predictions.csvimport import import_csv, member_of_csv
    from predictions.errors import InputError
    from predictions.store import MAX_CLASSES, check_input_file, check_name, expand_paths, store_name
    if not 1 <= args.classes <= MAX_CLASSES:
        raise InputError(f"--classes must be in [1, {MAX_CLASSES}], got {args.classes}")
    if args.labels:
        return _import_labels(args)
    if args.model is not None:
        check_name("--model", args.model)
    if args.split is not None:
        check_name("--split", args.split)
    _not_empty(args.out)
    csvs = [Path(p) for p in args.csv] + (expand_paths(args.members, suffix=".csv") if args.members else [])
    if not csvs:
        raise InputError("no CSV to import: give CSV files, or --members 'DIR/*.csv'")
    if args.model is not None and len(csvs) > 1:
        raise InputError(f"--model names one member, but {len(csvs)} CSVs were given: leave it out (each "
                         f"CSV's model then comes from its file name, MODEL.SPLIT.csv or MODEL.csv)")
    out = Path(args.out)
    single = out.suffix == ".h5" and not out.is_dir()
    if single and len(csvs) > 1:
        raise InputError(f"--out names one store, but {len(csvs)} CSVs were given: give a directory", out)
    plan, target_of = [], {}
    for csv in csvs:
        check_input_file(csv, "a CSV file")  # a FIFO would block, a directory is no CSV
        model, split = (args.model, args.split) if args.model and args.split else member_of_csv(csv)
        model, split = args.model or model, args.split or split
        target = out if single else out / store_name(model, split)
        if target in target_of:
            raise InputError(f"{target_of[target]} and {csv} are both model {model!r}, split {split!r} (from "
                             f"their file names): rename one, MODEL.SPLIT.csv", csv)
        target_of[target] = csv
        check_target(target)
        check_not_input(target, csvs, what="store")
        plan.append((csv, model, split, target))
    bar = None
    if len(plan) > 1 and not (args.quiet or args.json):
        from tqdm.auto import tqdm
        bar = tqdm(total=len(plan), unit="csv", desc="importing")
    done = []
    made = None if single or out.exists() else out  # removed again (when empty) if the import fails
    try:
        with AtomicSet(what="store") as staging:
            for csv, model, split, target in plan:
                info = import_csv(csv, target, model=model, split=split, num_classes=args.classes, staging=staging)
                done.append({"csv": str(csv), "model": model, "split": split, **info})
                if bar is not None:
                    bar.update(1)
    except BaseException:
        if made is not None:
            with contextlib.suppress(OSError):
                made.rmdir()
        raise
    finally:
        if bar is not None:
            bar.close()
    for d in done:
        _say(args, f"wrote {d['out']}: {d['videos']} videos, k={d['k']}")
    return done[0] if len(done) == 1 else {"stores": done}


def _cmd_schemes(args) -> list | dict:
    from .base import combiner_class, list_combiners
    if args.scheme:
        return _scheme_details(args, combiner_class(args.scheme))
    names = list_combiners()
    for n in names:
        cls = combiner_class(n)
        _say(args, f"{n:10s} {'learned' if cls.learned else 'fixed  '}  {_plain(_first_line(cls))}")
    _say(args, "\n'ensemble schemes NAME' shows a scheme's parameters, their rules and defaults")
    return names


def _first_line(cls) -> str:
    return (cls.__doc__ or "").strip().split("\n")[0]


def _plain(text: str) -> str:
    """reStructuredText roles and backticks out: ``x`` and :class:`y` read as x and y."""
    import re
    text = re.sub(r":[a-z]+:`~?([^`]+)`", lambda m: m.group(1).split(".")[-1], text)
    return text.replace("``", "").replace("`", "")


def _scheme_details(args, cls) -> dict:
    import inspect
    rules = cls.parameter_rules()
    params = []
    for p in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        default = None if p.default is inspect.Parameter.empty else p.default
        kind = type(default).__name__ if default is not None else "-"
        rule = rules.get(p.name)
        params.append({"name": p.name, "default": default, "type": kind,
                       "rule": rule.describe() if rule is not None else ""})
    _say(args, f"{cls.name} ({'learned: fitted on labels, cross-fitted' if cls.learned else 'fixed: sees no labels'})"
               f"\n  {_plain(_first_line(cls))}\nparameters (--param NAME=VALUE, VALUE as JSON):")
    width = max([len(p["name"]) for p in params] + [4])
    for p in params:
        _say(args, f"  {p['name']:{width}s}  default {p['default']!r:12s} {p['rule']}")
    return {"scheme": cls.name, "learned": cls.learned, "parameters": params}


def main(argv=None) -> int:
    args = _parser().parse_args(argv)  # usage errors (and --help) exit here, before any heavy import
    from predictions.errors import InputError

    warnings.simplefilter("default")
    warnings.formatwarning = lambda msg, cat, *a, **k: f"ensemble: warning: {msg}\n"
    if args.quiet or args.json:
        warnings.simplefilter("ignore")
    handlers = {"build": _cmd_build, "apply": _cmd_apply, "evaluate": _cmd_evaluate, "submit": _cmd_submit,
                "import": _cmd_import, "schemes": _cmd_schemes}
    try:
        if args.command not in handlers:   # a plugin command (ensemble report): it prints its own result
            return _quiet_on_closed_pipe(lambda: _plugin_commands()[args.command].run(args))
        handler_result = handlers[args.command](args)
    except InputError as err:
        print(f"ensemble: error: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return _closed_pipe()
    except OSError as err:  # a last net: any file-system error not already turned into an InputError
        where = f"{err.filename}: " if err.filename else ""
        print(f"ensemble: error: {where}{err.strerror or err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ensemble: interrupted", file=sys.stderr)
        return 130
    if args.json:
        from .record import json_default
        return _quiet_on_closed_pipe(lambda: print(json.dumps(handler_result, indent=2, default=json_default)) or 0)
    return _quiet_on_closed_pipe(lambda: 0)


def _closed_pipe() -> int:
    """The reader of our output went away (``| head``): stop quietly, as ``cat`` does."""
    import os
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second BrokenPipeError when Python flushes at exit
    return 0


def _quiet_on_closed_pipe(fn) -> int:
    try:
        code = fn()
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        return _closed_pipe()


if __name__ == "__main__":
    sys.exit(main())
