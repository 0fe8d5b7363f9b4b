"""The ``ensemble`` command line: build, evaluate, submit, import, report, schemes.

Exit codes: 0 success, 1 bad input (one line on stderr, no traceback), 2 usage.
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

EPILOG_BUILD = """example:
  ensemble build --weights=caruana --members 'runs/demo/predictions/*.h5' \\
      --labels runs/demo/labels --out runs/demo/predictions --name ens-caruana
  (fits on the held-out split, prints a cross-fitted estimate, writes
   ens-caruana.<split>.full.h5 for every split plus ens-caruana.build.json)"""


def _param(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


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
    b.add_argument("--labels", nargs="+", help="labels files labels.<split>.h5 (files, dirs or globs)")
    b.add_argument("--out", required=True, help="output directory, or one .h5 file for a single-split build")
    b.add_argument("--name", help="ensemble name (default ens-<scheme>)")
    b.add_argument("--fit-split", default="heldout", help="split the scheme is fitted on (default heldout)")
    b.add_argument("--k", type=int, help="labels kept per video in the output (default: the members' largest k)")
    b.add_argument("--member-k", type=int, help="cut each member to its top K labels first")
    b.add_argument("--folds", type=int, default=5, help="folds of the cross-fitted estimate (default 5)")
    b.add_argument("--seed", type=int, default=0, help="random_state of the scheme and of the folds")
    b.add_argument("--chunk-rows", type=int,
                   help="videos per streamed chunk (default: about 4M member entries per chunk, bounding memory)")
    b.add_argument("--fold-crops", choices=("mean", "none"), default="mean",
                   help="fold each model's crops into one member by their mean (default), or keep each crop")
    b.add_argument("--require-same-ids", action="store_true", help="error unless all members have the same videos")
    b.add_argument("--allow-mixed-k", action="store_true", help="accept members with different top-k widths")
    b.add_argument("--scheduler", metavar="ADDRESS",
                   help="run the chunked work on a Dask cluster (tcp://host:port, or local[:N] for a LocalCluster)")
    b.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True,
                   help="check each store's checksum before using it (default; streaming, about the cost of "
                        "reading the store once more); --no-verify skips it")
    _csv_options(b)

    e = add("evaluate", "print GAP@20, MAP, Hit@1 and PERR of stores against labels",
            "example:\n  ensemble evaluate --members 'runs/demo/predictions/*.h5' --labels runs/demo/labels --split eval")
    e.add_argument("--members", nargs="+", required=True,
                   help="stores: files, directories or globs; Kaggle CSVs too (see build --help)")
    e.add_argument("--labels", nargs="+", required=True, help="labels files labels.<split>.h5")
    e.add_argument("--split", default="heldout", help="split to score (default heldout)")
    e.add_argument("--k", type=int, default=20, help="GAP@k (default 20)")
    e.add_argument("--chunk-rows", type=int, default=50000, help="videos per streamed chunk")
    e.add_argument("--fold-crops", choices=("mean", "none"), default="mean")
    e.add_argument("--scheduler", metavar="ADDRESS", help="read and score chunks on a Dask cluster")
    e.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True,
                   help="check each store's checksum before using it (default; streaming, about the cost of "
                        "reading the store once more); --no-verify skips it")
    _csv_options(e)

    s = add("submit", "write a Kaggle submission CSV from a store",
            "example:\n  ensemble submit runs/demo/predictions/ens-uniform.test.full.h5 --out submission.csv")
    s.add_argument("store", help="an ensemble's (or any member's) store for the test split")
    s.add_argument("--out", required=True, help="CSV to write (atomically)")
    s.add_argument("--top", type=int, default=20, help="label/score pairs per video (default 20)")
    s.add_argument("--precision", type=int, default=6, help="decimals of each score (default 6)")
    s.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True,
                   help="check each store's checksum before using it (default; streaming, about the cost of "
                        "reading the store once more); --no-verify skips it")

    i = add("import", "convert Kaggle CSVs (VideoId,LabelConfidencePairs or rank-only VideoId,Label) into stores",
            "examples:\n"
            "  ensemble import team_a.csv --model team_a --split test --classes 3862 --out preds/\n"
            "  ensemble import --members 'teams/*.csv' --out preds/   # one store per CSV, all or none\n"
            "a CSV's model and split come from its file name, MODEL.SPLIT.csv (SPLIT one of train, heldout,\n"
            "eval, test) or MODEL.csv (split test), unless --model/--split are given")
    i.add_argument("csv", nargs="*", help="CSV files: VideoId,LabelConfidencePairs or VideoId,Label (ranks)")
    i.add_argument("--members", nargs="+", default=[], metavar="CSV",
                   help="more CSVs: files or globs ('teams/*.csv'), as for build --members")
    i.add_argument("--model", help="member name to record (one CSV only; default from the file name)")
    i.add_argument("--split", help="split name to record (heldout, eval, test, ...; default from the file name, "
                                   "else test)")
    i.add_argument("--classes", type=int, default=3862, help="number of classes (default 3862)")
    i.add_argument("--out", required=True,
                   help="directory (writes <model>.<split>.full.h5 per CSV) or, for one CSV, a .h5 file")

    r = add("report", "write an HTML evaluation report (leaderboard, weights, diversity, per-class AP, plots)",
            "example:\n  ensemble report --members runs/demo/predictions --labels runs/demo/labels --split eval \\\n"
            "      --builds runs/demo/predictions --vocabulary runs/demo/data/vocabulary.csv --out runs/demo/report")
    r.add_argument("--members", nargs="+", required=True, help="stores (members and ensembles): files, dirs or globs")
    r.add_argument("--labels", nargs="+", required=True, help="labels files labels.<split>.h5")
    r.add_argument("--split", default="eval", help="split to report on (default eval)")
    r.add_argument("--builds", nargs="*", help="build records (*.build.json): files, dirs or globs")
    r.add_argument("--vocabulary", help="vocabulary CSV for label names and verticals")
    r.add_argument("--k", type=int, default=20, help="GAP@k (default 20)")
    r.add_argument("--title", help="report title")
    r.add_argument("--out", required=True, help="report directory to write (replaced atomically)")

    add("schemes", "list the ensembling schemes", "example:\n  ensemble schemes")
    return p


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
                    name=args.name, fit_split=args.fit_split, k=args.k, n_folds=args.folds, random_state=args.seed,
                    chunk_rows=args.chunk_rows, fold_crops=args.fold_crops, member_k=args.member_k,
                    require_same_ids=args.require_same_ids, allow_mixed_k=args.allow_mixed_k, verify=args.verify,
                    progress=not (args.quiet or args.json), command=shlex.join(["ensemble"] + sys.argv[1:]),
                    log=lambda t: _say(args, t), client=client, classes=args.classes, csv_cache=args.csv_cache)
    _say(args, _build_summary(rec))
    return {**rec.to_dict(), "record_path": rec.path}


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
    for split, sc in rec.scores.items():
        if split == rec.fit_split:
            continue
        rows = [{"name": f"{rec.name} (ensemble)", **sc["ensemble"]}] + sc.get("members", [])
        lines.append(f"  {split} split (no combiner saw these labels):\n" + format_table(rows))
    lines += [f"  wrote {p}" for p in rec.outputs.values()] + [f"  record {rec.path}"]
    return "\n".join(lines)


def _positive(option: str, value) -> None:
    from predictions.errors import InputError
    if value is not None and value < 1:
        raise InputError(f"{option} must be a positive integer, got {value}")


def _not_empty(out: str) -> None:
    from predictions.errors import InputError
    if not out.strip():  # Path("") is the current directory
        raise InputError("--out is empty: give a file name")


def _cmd_evaluate(args) -> list:
    from predictions.errors import InputError
    from predictions.labels import read_labels

    from .evaluate import check_labels_cover, evaluate_members, find_label_files, format_table
    from .members import discover, verify_members, with_csv_stores
    _positive("--k", args.k)
    _positive("--chunk-rows", args.chunk_rows)
    _positive("--classes", args.classes)
    files = find_label_files(args.labels)
    if args.split not in files:
        raise InputError(f"no labels.{args.split}.h5 among {', '.join(args.labels)}")
    truth = read_labels(files[args.split])
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
        rows = evaluate_members(members, truth, k=args.k, chunk_rows=args.chunk_rows, client=client)
    _say(args, f"{args.split} split, GAP@{args.k}:\n" + format_table(rows))
    return rows


def _cmd_submit(args) -> dict:
    from predictions.atomic import check_not_input, check_target
    from predictions.csvio import write_submission
    from predictions.errors import InputError
    from predictions.store import read_store
    _positive("--top", args.top)
    _not_empty(args.out)
    check_target(args.out, what="submission")
    check_not_input(args.out, [args.store], what="submission")
    pred = read_store(args.store, verify=args.verify)
    if len(pred) == 0:
        raise InputError("the store holds no video: a submission needs at least one row", args.store)
    write_submission(args.out, pred, top=args.top, precision=args.precision)
    _say(args, f"wrote {args.out}: {len(pred)} videos, top {args.top}")
    return {"out": args.out, "videos": len(pred), "top": args.top}


def _cmd_import(args) -> dict:
    """One store per CSV, written together (all or none): ``--out`` is a directory, or a .h5 file for one CSV."""
    from pathlib import Path

    from predictions.atomic import AtomicSet, check_not_input, check_target
    from predictions.csvimport import import_csv, member_of_csv
    from predictions.errors import InputError
    from predictions.store import MAX_CLASSES, check_input_file, check_name, expand_paths, store_name
    if not 1 <= args.classes <= MAX_CLASSES:
        raise InputError(f"--classes must be in [1, {MAX_CLASSES}], got {args.classes}")
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


def _cmd_report(args) -> dict:
    from reports import write_report
    index = write_report(args.out, members=args.members, labels=args.labels, split=args.split,
                         builds=args.builds or (), vocabulary=args.vocabulary, k=args.k, title=args.title,
                         progress=not (args.quiet or args.json))
    _say(args, f"wrote {index}")
    return {"index": str(index)}


def _cmd_schemes(args) -> list:
    from .base import combiner_class, list_combiners
    names = list_combiners()
    for n in names:
        cls = combiner_class(n)
        doc = (cls.__doc__ or "").strip().split("\n")[0]
        _say(args, f"{n:10s} {'learned' if cls.learned else 'fixed  '}  {doc}")
    return names


def main(argv=None) -> int:
    args = _parser().parse_args(argv)  # usage errors (and --help) exit here, before any heavy import
    from predictions.errors import InputError

    warnings.simplefilter("default")
    warnings.formatwarning = lambda msg, cat, *a, **k: f"ensemble: warning: {msg}\n"
    if args.quiet or args.json:
        warnings.simplefilter("ignore")
    handler = {"build": _cmd_build, "evaluate": _cmd_evaluate, "submit": _cmd_submit,
               "import": _cmd_import, "report": _cmd_report, "schemes": _cmd_schemes}[args.command]
    try:
        result = handler(args)
    except InputError as err:
        print(f"ensemble: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # a last net: any file-system error not already turned into an InputError
        where = f"{err.filename}: " if err.filename else ""
        print(f"ensemble: error: {where}{err.strerror or err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ensemble: interrupted", file=sys.stderr)
        return 130
    if args.json:
        from .record import json_default
        print(json.dumps(result, indent=2, default=json_default))
    return 0


if __name__ == "__main__":
    sys.exit(main())
