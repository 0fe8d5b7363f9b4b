"""cProfile of ``build(scheme="uniform")`` over K top-20 members x N test videos (bench/README.md figure 8).

    python bench/profile_build.py [--members 16] [--videos 100000] [--data-dir /tmp/prof-build]

Writes the members once (bench/run.py's generator), builds once to warm the page cache, then profiles a
second build and prints the functions by internal and by cumulative time.
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench  # noqa: E402  (bench/run.py)

from ensembler.build import build  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=16)
    ap.add_argument("--videos", type=int, default=100_000)
    ap.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "prof-build")
    args = ap.parse_args()
    d = args.data_dir / f"k{args.members}-n{args.videos}"
    if not (d / "stores").exists():
        bench.write_split(d, "test", args.videos, args.members, 8)
    stores = sorted((d / "stores").glob("m*.test.full.h5"))
    with tempfile.TemporaryDirectory() as out:
        build(stores, scheme="uniform", out=Path(out) / "warm", progress=False)
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        build(stores, scheme="uniform", out=Path(out) / "profiled", progress=False)
        prof.disable()
    print(f"build uniform K={args.members} N={args.videos}: {time.perf_counter() - t0:.2f}s wall (profiled)")
    pstats.Stats(prof).sort_stats("tottime").print_stats(14)
    pstats.Stats(prof).sort_stats("cumulative").print_stats(30)


if __name__ == "__main__":
    main()
