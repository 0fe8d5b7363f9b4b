"""PNG figures of the report (matplotlib, no pyplot: safe in any process, no display needed).

Every function takes plain arrays, draws one figure and saves it to ``path``
as a PNG. None of them reads files or computes metrics.

matplotlib is an optional dependency (the ``[report]`` extra): it is imported
inside the functions, and :func:`require` turns its absence into a one-line
InputError saying what to install.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from predictions.errors import InputError

DPI = 110
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
           "#7f7f7f", "#bcbd22")
BEST = "#d62728"
BASE = "#4c78a8"
ENSEMBLE = "#f58518"
_RC = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8}


INSTALL = ('the HTML report draws its figures with matplotlib, which is not installed: '
           'pip install "yt8m-ensembler[report]"')


def require():
    """The ``matplotlib`` module; a one-line InputError saying what to install when it is missing."""
    try:
        import matplotlib
        import matplotlib.figure  # noqa: F401  (the Agg canvas comes with it)
    except ImportError:
        raise InputError(INSTALL) from None
    return matplotlib


def _themed(func):
    """Draw under the report's rc settings without touching the caller's global matplotlib state."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with require().rc_context(_RC):
            return func(*args, **kwargs)
    return wrapper


def _figure(width: float, height: float):
    from matplotlib.figure import Figure
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _ticker():
    import matplotlib.ticker
    return matplotlib.ticker


def _style(ax) -> None:
    ax.grid(True, color="#e5e5e5", linewidth=0.7)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _save(fig: Figure, path) -> Path:
    path = Path(path)
    fig.savefig(path, format="png", dpi=DPI, facecolor="white", metadata={"Software": None})
    return path


def _short(name: str, width: int = 28) -> str:
    return name if len(name) <= width else name[:width - 1] + "\u2026"


def distinct_labels(names, width: int = 28) -> list[str]:
    """Axis labels for ``names``: at most ``width`` characters where that keeps every label distinct.

    Long names are shortened in the middle (``head...tail``), keeping the end
    where names of one family differ (``Frame_level_Pooling_audio`` and
    ``..._rgb``); if two names still collide, the full names are used.
    """
    names = [str(n) for n in names]

    def middle(n: str) -> str:
        if len(n) <= width:
            return n
        tail = (width - 1) // 2
        return n[:width - 1 - tail] + "\u2026" + n[len(n) - tail:]

    for out in ([_short(n, width) for n in names], [middle(n) for n in names]):
        if len(set(out)) == len(set(names)):
            return out
    return names


@_themed
def leaderboard(path, names, gaps, is_ensemble, estimates=None, std_errors=None) -> Path:
    """Horizontal bars of GAP per model (best on top); ensembles coloured apart; ``estimates`` as ticks,
    with +-2 ``std_errors`` whiskers where given."""
    names, gaps = list(names), np.asarray(gaps, float)
    order = np.argsort(-gaps, kind="stable")[::-1]
    fig = _figure(7.0, 0.8 + 0.28 * len(names))
    ax = fig.add_subplot()
    y = np.arange(len(names))
    colors = [ENSEMBLE if is_ensemble[i] else BASE for i in order]
    ax.barh(y, gaps[order], color=colors, height=0.65)
    for yi, i in zip(y, order):
        ax.text(gaps[i], yi, f"{gaps[i]:.4f} ", va="center", ha="right", fontsize=8, color="white")
    if estimates is not None:
        est = np.asarray([np.nan if e is None else e for e in estimates], float)[order]
        ok = ~np.isnan(est)
        if ok.any():
            ax.plot(est[ok], y[ok], "k|", markersize=14, markeredgewidth=2, label="estimate (fit split)")
            if std_errors is not None:
                se = np.asarray([np.nan if e is None else e for e in std_errors], float)[order]
                has = ok & ~np.isnan(se)
                if has.any():
                    ax.errorbar(est[has], y[has], xerr=2 * se[has], fmt="none", ecolor="k", elinewidth=1,
                                capsize=3, label="\u00b12 fold s.e.")
            ax.legend(loc="lower right")
    labels = distinct_labels(names)
    ax.set_yticks(y, [labels[i] for i in order])
    shown = np.r_[gaps, [e for e in (estimates or []) if e is not None]]
    lo = float(np.nanmin(shown)) if len(shown) else 0.0
    hi = float(np.nanmax(shown)) if len(shown) else 1.0
    ax.set_xlim(max(0.0, lo - 0.15 * (hi - lo + 1e-3) - 0.02), min(1.0, hi + 0.12 * (hi - lo + 1e-3) + 0.02))
    ax.set_xlabel("GAP@k")
    _style(ax)
    ax.grid(axis="y", visible=False)
    return _save(fig, path)


@_themed
def weights(path, members, by_build: dict) -> Path:
    """Grouped bars: weight of each member (x) in each build (one colour per build)."""
    members = list(members)
    builds = list(by_build)
    fig = _figure(max(5.0, 1.2 + 0.55 * len(members) * max(1, len(builds)) ** 0.5), 3.6)
    ax = fig.add_subplot()
    x = np.arange(len(members))
    width = 0.8 / max(1, len(builds))
    for b, name in enumerate(builds):
        w = np.array([float(by_build[name].get(m, 0.0)) for m in members])
        bars = ax.bar(x - 0.4 + width * (b + 0.5), w, width * 0.9, label=name, color=PALETTE[b % len(PALETTE)])
        if len(members) * len(builds) <= 24:
            ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
    ax.axhline(0, color="#333", linewidth=0.8)
    ax.set_xticks(x, distinct_labels(members, 24), rotation=30 if len(members) > 4 else 0, ha="right"
                  if len(members) > 4 else "center")
    ax.set_ylabel("weight")
    if len(builds) > 1:
        ax.legend(title="build", loc="best")
    elif builds:
        ax.set_title(f"weights of {builds[0]}")
    ax.margins(y=0.12)
    _style(ax)
    return _save(fig, path)


MIN_SPAN = 0.01   # GAP: the least y range of the GAP-vs-step plots, so 1e-5 steps do not look like a climb


def _floor_span(ax, values: np.ndarray, span: float) -> None:
    """Set the y range to the values' range, widened (about its middle) to at least ``span``, plus 10 %."""
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    if not len(values):
        return
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < span:
        mid = (lo + hi) / 2
        lo, hi = mid - span / 2, mid + span / 2
    pad = 0.1 * (hi - lo)
    ax.set_ylim(lo - pad, hi + pad)


@_themed
def trajectory(path, curves: dict, noise: dict | None = None) -> Path:
    """Score vs step of greedy selections; ``curves``: {build: (scores, step_labels or None)}.

    ``noise``: {build: fold s.e. of its estimate}; drawn as a +-1 s.e. band around
    the best step. The y axis spans at least ``max(MIN_SPAN, 4 s.e.)``, so steps
    far below the noise stay flat on the plot.
    """
    noise = {n: se for n, se in (noise or {}).items() if se is not None and np.isfinite(se)}
    fig = _figure(7.0, 3.4)
    ax = fig.add_subplot()
    every = []
    for b, (name, (scores, labels)) in enumerate(curves.items()):
        scores = np.asarray(scores, float)
        every.append(scores[np.isfinite(scores)])
        steps = np.arange(1, len(scores) + 1)
        color = PALETTE[b % len(PALETTE)]
        change = scores[-1] - scores[0] if len(scores) else 0.0
        ax.plot(steps, scores, "-o", markersize=3, color=color,
                label=f"{name} (step 1 to {len(scores)}: {change:+.5f})")
        best = int(np.nanargmax(scores)) if np.isfinite(scores).any() else None
        if best is not None:
            ax.plot(steps[best], scores[best], "*", color=color, markersize=11)
            if name in noise:
                ax.axhspan(scores[best] - noise[name], scores[best] + noise[name], color=color, alpha=0.12,
                           linewidth=0, label=f"\u00b11 s.e. of {name}'s estimate ({noise[name]:.4f})")
        if labels is not None and len(steps) <= 25:
            for s, v, lab in zip(steps, scores, labels):
                ax.annotate(_short(str(lab), 14), (s, v), textcoords="offset points", xytext=(0, 6),
                            fontsize=7, ha="center", color="#555")
    _floor_span(ax, np.concatenate(every) if every else np.zeros(0),
                max(MIN_SPAN, 4 * max(noise.values(), default=0.0)))
    ticker = _ticker()
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%.3f"))
    ax.set_xlabel("step")
    ax.set_ylabel("GAP (fit split)")
    ax.legend(loc="lower right")
    _style(ax)
    return _save(fig, path)


def corr_text(value: float) -> str:
    """A correlation as printed in a heat map cell: 3 decimals, more where 3 would round to 1."""
    if not np.isfinite(value):
        return "n/a"
    if value == 1.0:
        return "1"
    for digits in (3, 4):
        text = f"{value:.{digits}f}"
        if abs(float(text)) < 1.0:
            return text
    return ">0.9999" if value > 0 else "<-0.9999"


@_themed
def correlation(path, names, matrix) -> Path:
    """Heat map of the (M, M) correlation matrix, values printed in the cells."""
    names = list(names)
    m = np.asarray(matrix, float)
    size = min(9.0, 2.4 + 0.45 * len(names))
    fig = _figure(size + 1.0, size)
    ax = fig.add_subplot()
    off = m[~np.eye(len(m), dtype=bool)]
    lo = float(np.nanmin(off)) if off.size and np.isfinite(off).any() else 0.0
    im = ax.imshow(m, cmap="viridis", vmin=min(lo, 0.99), vmax=1.0)
    fig.colorbar(im, ax=ax, shrink=0.8, label="Pearson correlation")
    ticks = distinct_labels(names, 26)
    ax.set_xticks(np.arange(len(names)), ticks, rotation=40, ha="right")
    ax.set_yticks(np.arange(len(names)), ticks)
    if len(names) <= 12:
        mid = (min(lo, 0.99) + 1.0) / 2
        for i in range(len(names)):
            for j in range(len(names)):
                ax.text(j, i, corr_text(m[i, j]), ha="center", va="center", fontsize=7,
                        color="black" if m[i, j] > mid else "white")
    return _save(fig, path)


@_themed
def leave_one_out(path, names, deltas) -> Path:
    """Bars of GAP(uniform average without member) - GAP(with all); negative = member helps."""
    names, d = list(names), np.asarray(deltas, float)
    order = np.argsort(d, kind="stable")
    fig = _figure(7.0, 0.9 + 0.3 * len(names))
    ax = fig.add_subplot()
    y = np.arange(len(names))
    ax.barh(y, d[order], color=[BASE if v < 0 else BEST for v in d[order]], height=0.6)
    ax.axvline(0, color="#333", linewidth=0.8)
    for yi, v in zip(y, d[order]):
        ax.text(v, yi, f" {v:+.4f} ", va="center", ha="left" if v >= 0 else "right", fontsize=8)
    span = float(np.max(np.abs(d))) if len(d) else 1.0
    span = span if span > 0 else 1e-3
    ax.set_xlim(-1.45 * span, 1.45 * span)
    labels = distinct_labels(names)
    ax.set_yticks(y, [labels[i] for i in order])
    ax.set_xlabel("GAP change when the member is left out of the uniform average")
    _style(ax)
    ax.grid(axis="y", visible=False)
    return _save(fig, path)


@_themed
def per_class(path, frequency, curves: dict) -> Path:
    """Per-class AP vs number of positives (log x), one panel per model; ``curves``: {name: (C,) AP}."""
    freq = np.asarray(frequency, float)
    fig = _figure(3.6 * max(1, len(curves)) + 0.4, 3.4)
    axes = fig.subplots(1, max(1, len(curves)), sharex=True, sharey=True, squeeze=False)[0]
    has = freq > 0
    shown = dict(zip(curves, distinct_labels(curves, 34)))
    for b, (ax, (name, ap)) in enumerate(zip(axes, curves.items())):
        ap = np.asarray(ap, float)
        ok = has & ~np.isnan(ap)
        jitter = freq[ok] * np.exp(np.random.default_rng(0).uniform(-0.08, 0.08, ok.sum()))
        small = ok.sum() < 500
        ax.scatter(jitter, ap[ok], s=14 if small else 5, alpha=0.7 if small else 0.35,
                   color=PALETTE[b % len(PALETTE)], linewidths=0)
        _binned_mean(ax, freq[ok], ap[ok])
        ax.set_xscale("log")
        span = freq[ok].max() / freq[ok].min() if ok.any() else 10.0
        ticker = _ticker()
        ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0,) if span > 1e3 else (1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(f"{shown[name]}  (MAP {np.nanmean(ap[ok]) if ok.any() else 0:.3f})")
        ax.set_xlabel("positives of the class in the split")
        _style(ax)
    axes[0].set_ylabel("AP@k of the class")
    axes[0].legend(loc="lower right")
    return _save(fig, path)


def _binned_mean(ax, freq: np.ndarray, ap: np.ndarray) -> None:
    if len(freq) < 5:
        return
    edges = np.unique(np.geomspace(freq.min(), freq.max() * 1.0001, 12))
    if len(edges) < 2:
        return
    b = np.clip(np.searchsorted(edges, freq, side="right") - 1, 0, len(edges) - 2)
    cnt = np.bincount(b, minlength=len(edges) - 1)
    mean = np.bincount(b, weights=ap, minlength=len(edges) - 1) / np.maximum(cnt, 1)
    mid = np.sqrt(edges[:-1] * edges[1:])
    ok = cnt > 0
    ax.plot(mid[ok], mean[ok], "-", color="black", linewidth=1.5, label="mean per bin")


@_themed
def precision_recall(path, curves: dict, max_points: int = 4000) -> Path:
    """Precision vs recall along the pooled GAP list; ``curves``: {name: (precision, recall, gap)}."""
    fig = _figure(5.6, 4.0)
    ax = fig.add_subplot()
    shown = dict(zip(curves, distinct_labels(curves, 30)))
    for b, (name, (prec, rec, gap)) in enumerate(curves.items()):
        prec, rec = np.asarray(prec), np.asarray(rec)
        if len(prec) > max_points:
            keep = np.unique(np.r_[np.linspace(0, len(prec) - 1, max_points).astype(np.int64), len(prec) - 1])
            prec, rec = prec[keep], rec[keep]
        ax.plot(rec, prec, color=PALETTE[b % len(PALETTE)], linewidth=1.4,
                label=f"{shown[name]} (GAP {gap:.4f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall (of all positive labels)")
    ax.set_ylabel("precision")
    ax.legend(loc="upper right")
    _style(ax)
    return _save(fig, path)


@_themed
def reliability(path, curves: dict) -> Path:
    """Reliability diagram; ``curves``: {name: dict(mean_pred, observed, count, ece)} per bin."""
    fig = _figure(5.6, 5.0)
    ax, hist = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], "--", color="#888", linewidth=1, label="perfectly calibrated")
    shown = dict(zip(curves, distinct_labels(curves, 30)))
    for b, (name, c) in enumerate(curves.items()):
        ok = np.asarray(c["count"]) > 0
        color = PALETTE[b % len(PALETTE)]
        ax.plot(np.asarray(c["mean_pred"])[ok], np.asarray(c["observed"])[ok], "-o", markersize=3,
                color=color, label=f"{shown[name]} (ECE {c['ece']:.3f})")
        edges = np.asarray(c["edges"])
        hist.stairs(np.asarray(c["count"]) / max(1, int(np.sum(c["count"]))), edges, color=color,
                    linewidth=1.2)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("observed positive rate")
    ax.legend(loc="upper left")
    hist.set_xlabel("predicted score (pooled top-k entries)")
    hist.set_ylabel("share")
    hist.yaxis.set_major_formatter(_ticker().PercentFormatter(1.0, decimals=0))
    _style(ax)
    _style(hist)
    return _save(fig, path)


@_themed
def greedy(path, names, gaps, references: dict) -> Path:
    """GAP of the uniform average of the first i members in greedy order; ``references``: {label: GAP}."""
    names, gaps = list(names), np.asarray(gaps, float)
    fig = _figure(max(5.5, 1.5 + 0.5 * len(names)), 3.6)
    ax = fig.add_subplot()
    x = np.arange(1, len(names) + 1)
    ax.plot(x, gaps, "-o", color=BASE, markersize=4, label="uniform average of the first i")
    if len(gaps):
        i = int(np.argmax(gaps))
        ax.plot(x[i], gaps[i], "*", color=BEST, markersize=12, label=f"best size {x[i]}: {gaps[i]:.4f}")
    for b, (label, value) in enumerate(references.items()):
        ax.axhline(value, linestyle=":", color=PALETTE[(b + 2) % len(PALETTE)], linewidth=1.2,
                   label=f"{label}: {value:.4f}")
    ax.set_xticks(x, [f"+{n}" for n in distinct_labels(names, 16)], rotation=30 if len(names) > 3 else 0,
                  ha="right" if len(names) > 3 else "center")
    ax.set_xlabel("member added at each step (greedy forward order)")
    ax.set_ylabel("GAP@k")
    _floor_span(ax, np.r_[gaps, list(references.values())], MIN_SPAN)
    ax.legend(loc="best")
    _style(ax)
    return _save(fig, path)


@_themed
def importance(path, names, values, title: str, xlabel: str) -> Path:
    """Horizontal bars of one value per name (largest magnitude on top): feature or member importances."""
    names, v = list(names), np.asarray(values, float)
    order = np.argsort(-np.abs(v), kind="stable")[::-1]
    fig = _figure(7.0, 0.9 + 0.26 * len(names))
    ax = fig.add_subplot()
    y = np.arange(len(names))
    ax.barh(y, v[order], color=[BASE if x >= 0 else BEST for x in v[order]], height=0.6)
    ax.axvline(0, color="#333", linewidth=0.8)
    labels = distinct_labels(names, 32)
    ax.set_yticks(y, [labels[i] for i in order])
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.margins(x=0.08)
    _style(ax)
    ax.grid(axis="y", visible=False)
    return _save(fig, path)
