"""Render the report's summary (the dict written to summary.json) as HTML and Markdown.

Pure functions of that dict: :func:`page` gives a self-contained ``index.html``
(inline CSS, no script, no external resource; figures by relative file name),
:func:`markdown` a short ``summary.md``. All text from the inputs is escaped.
"""
from __future__ import annotations

import re
from html import escape

__all__ = ["page", "markdown"]

CSS = """
:root { --fg:#1d2330; --muted:#5b6475; --line:#dde1e8; --accent:#1f5fbf; --best:#fff3cf; }
* { box-sizing: border-box; }
body { margin:0; background:#f4f5f7; color:var(--fg);
  font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans","Liberation Sans",Arial,sans-serif; }
header { background:#1d2330; color:#fff; padding:18px 32px 14px; }
header h1 { margin:0 0 4px; font-size:22px; font-weight:600; }
header .meta { color:#c5ccd9; font-size:13px; }
nav { position:sticky; top:0; z-index:1; background:#fff; border-bottom:1px solid var(--line);
  padding:8px 32px; white-space:nowrap; overflow-x:auto; }
nav a { color:var(--accent); text-decoration:none; font-size:13px; margin-right:18px; }
nav a:hover { text-decoration:underline; }
main { max-width:1320px; margin:0 auto; padding:6px 24px 40px; }
section { background:#fff; border:1px solid var(--line); border-radius:6px; padding:6px 22px 16px;
  margin:18px 0; }
h2 { font-size:18px; font-weight:600; margin:10px 0 8px; padding-bottom:4px; border-bottom:1px solid var(--line); }
h3 { font-size:15px; font-weight:600; margin:16px 0 4px; }
p { margin:6px 0; max-width:860px; }
.cards { display:flex; flex-wrap:wrap; gap:12px; margin:14px 0 4px; }
.card { background:#fff; border:1px solid var(--line); border-radius:6px; padding:8px 16px; min-width:180px; }
.card .label { color:var(--muted); font-size:12px; }
.card .value { font-size:20px; font-weight:600; font-variant-numeric:tabular-nums; }
.card .value .pm { font-size:14px; font-weight:400; color:var(--muted); }
.card .sub { color:var(--muted); font-size:12px; max-width:320px; }
.card.noise { border-color:#b8bec9; border-style:dashed; }
.card.above { border-color:#1b7f3b; }
.card.below { border-color:#b3261e; }
.verdict { font-size:12px; font-weight:600; }
.scroll { overflow-x:auto; }
table { border-collapse:collapse; font-size:13px; margin:8px 0 4px; }
th, td { padding:4px 8px; border-bottom:1px solid var(--line); text-align:left; vertical-align:top; }
th { background:#eef0f4; font-weight:600; }
td.num { white-space:nowrap; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
td.se { color:#666; }
td.name { overflow-wrap:break-word; }
td.kind { white-space:nowrap; }
td.noise { color:#777; font-style:italic; }
td.neg { color:#b3261e; }
td.pos { color:#1b7f3b; }
tr.best td { background:var(--best); font-weight:600; }
.tag { display:inline-block; font-size:11px; line-height:16px; padding:0 7px; border-radius:8px;
  background:#e6eefc; color:#1f5fbf; }
.tag.ensemble { background:#fdebd6; color:#9a5200; }
figure { margin:14px 0 10px; }
figure img { display:block; max-width:100%; height:auto; border:1px solid var(--line); border-radius:4px; }
figcaption { color:var(--muted); font-size:13px; margin-top:4px; max-width:860px; }
.note { background:#f3f4f6; border-left:3px solid #9aa3b2; padding:6px 12px; color:var(--muted);
  margin:8px 0; max-width:860px; }
code { overflow-wrap:anywhere; font-size:12px; background:#f0f2f5; padding:0 3px; border-radius:3px; }
footer { color:var(--muted); font-size:12px; text-align:center; padding:10px 0 30px; }
"""

SECTIONS = (("overview", "Overview"), ("leaderboard", "Leaderboard"), ("builds", "Weights"),
            ("diversity", "Diversity"), ("size", "Ensemble size"), ("verticals", "Per vertical"),
            ("classes", "Per class"),
            ("calibration", "PR &amp; calibration"), ("inputs", "Inputs"))


# --------------------------------------------------------------------------- helpers
def _e(x) -> str:
    return escape("" if x is None else str(x))


def _name(x) -> str:
    """A model name, escaped, with break opportunities after ``_ - . /`` (it wraps there, whole, never cut)."""
    return re.sub(r"([_\-./])", r"\1<wbr>", _e(x))


def _num(x, digits: int = 4, signed: bool = False) -> str:
    if x is None:
        return "\u2013"
    if isinstance(x, int) and not isinstance(x, bool):
        return f"{x:,}"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def _table(headers, rows, numeric, row_classes=None, cell_classes=None) -> str:
    """HTML table; ``numeric``: set of column positions right-aligned; cells are pre-escaped HTML."""
    head = "".join(f'<th class="num">{h}</th>' if i in numeric else f"<th>{h}</th>"
                   for i, h in enumerate(headers))
    body = []
    for r, row in enumerate(rows):
        cls = f' class="{row_classes[r]}"' if row_classes and row_classes[r] else ""
        cells = []
        for i, c in enumerate(row):
            names = (["num"] if i in numeric else []) + ([cell_classes[r][i]] if cell_classes and
                                                          cell_classes[r][i] else [])
            attr = f' class="{" ".join(names)}"' if names else ""
            cells.append(f"<td{attr}>{c}</td>")
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _figure(figures: dict, key: str, alt: str, caption: str) -> str:
    name = figures.get(key)
    if not name:
        return ""
    return (f'<figure><img src="{_e(name)}" alt="{_e(alt)}" loading="lazy">'
            f"<figcaption>{caption}</figcaption></figure>")


def _note(text: str) -> str:
    return f'<p class="note">{text}</p>'


def _sign_class(v) -> str:
    return "" if v is None or v == 0 else ("pos" if v > 0 else "neg")


def _pm(value, se, signed: bool = False) -> str:
    """``value ± se`` (se omitted when unknown)."""
    return _num(value, signed=signed) + ("" if se is None else f" \u00b1&nbsp;{_num(se)}")


_VERDICT_CLASS = {"within noise": "noise", "above noise": "pos", "below noise": "neg"}


def _gain_cell(gain, se, verdict) -> tuple[str, str]:
    """(HTML, cell class) of a gain with its s.e.: muted italics when within noise."""
    if gain is None:
        return "\u2013", ""
    text = _pm(gain, se, signed=True)
    if verdict == "within noise":
        text += " (noise)"
    return text, _VERDICT_CLASS.get(verdict, _sign_class(gain))


# --------------------------------------------------------------------------- sections
def _overview(d: dict) -> str:
    lb = d["leaderboard"]
    best = d["best"]
    by_name = {r["name"]: r for r in lb}
    folds = best.get("n_folds")
    se_note = f"\u00b1 fold s.e. ({folds} folds of the {_e(d['split'])} videos)" if folds else ""

    def gap_card(label, name, extra=""):
        r = by_name[name]
        value = _num(r["gap"]) + ("" if r.get("gap_se") is None else
                                  f' <span class="pm">\u00b1 {_num(r["gap_se"])}</span>')
        return ("", label, value, _e(name) + (f"<br>{extra}" if extra else ""))

    cards = []
    if best["model"]:
        cards.append(gap_card("best on " + _e(d["split"]), best["model"], se_note))
    if best["member"]:
        cards.append(gap_card("best member", best["member"]))
    if best["ensemble"]:
        r = by_name[best["ensemble"]]
        est = ("" if r.get("estimate") is None else
               f"estimate {_pm(r['estimate'], r.get('std_error'))} (fit split)")
        cards.append(gap_card("best ensemble", best["ensemble"], est))
    gain = best["gain_over_best_member"]
    if gain is not None:
        se, verdict, z = best.get("gain_se"), best.get("gain_verdict"), best.get("gain_z")
        value = _num(gain, signed=True) + ("" if se is None else f' <span class="pm">\u00b1 {_num(se)}</span>')
        if verdict is None:
            sub = f"GAP of {_e(best['ensemble'])} minus {_e(best['member'])}; too few videos for a standard error"
        else:
            word = {"within noise": "within noise", "above noise": "a real gain",
                    "below noise": "a real loss"}[verdict]
            sub = (f'<span class="verdict">{word}</span>: {abs(z):.1f} paired s.e. '
                   f"({'under' if verdict == 'within noise' else 'over'} {best.get('noise_z', 2):g}); "
                   f"{_e(best['ensemble'])} minus {_e(best['member'])}, paired over the same folds")
        cards.append(({"within noise": "noise", "above noise": "above", "below noise": "below"}.get(verdict, ""),
                      "ensemble gain", value, sub))
    html = "".join(f'<div class="card {c}"><div class="label">{a}</div><div class="value">{b}</div>'
                   f'<div class="sub">{sub}</div></div>' for c, a, b, sub in cards)
    n_ens = sum(r["kind"] == "ensemble" for r in lb)
    text = (f"<p>{len(lb) - n_ens} member{'s' if len(lb) - n_ens != 1 else ''} and {n_ens} "
            f"ensemble{'s' if n_ens != 1 else ''} scored on the <b>{_e(d['split'])}</b> split: "
            f"{_num(d['n_videos'])} videos common to all stores, {_num(d['num_classes'])} classes, "
            f"{_num(d['n_positives'])} positive labels. GAP@{d['k']} is the headline metric. "
            "\u00b1 is a standard error: the split's videos are dealt into folds, GAP is computed on each, "
            "and the spread of the fold scores (of the fold differences, for a gain) gives it. A gain "
            f"smaller than {best.get('noise_z', 2):g} standard errors is within noise: another sample of "
            "videos could reverse it.</p>")
    notes = "".join(_note(_e(v)) for key, v in d["notes"].items() if key in ("alignment",))
    return (f'<section id="overview"><h2>Overview</h2><div class="cards">{html}</div>{text}{notes}'
            f"</section>")


def _leaderboard(d: dict) -> str:
    lb = d["leaderboard"]
    k = d["k"]
    ref = d["best"]["member"]
    rows, classes, cells = [], [], []
    for i, r in enumerate(lb):
        kind = f'<span class="tag {r["kind"]}">{r["kind"]}</span>' + (f" {_e(r['scheme'])}" if r["scheme"] else "")
        se = r.get("std_error")
        gap_se = r.get("gap_se")
        if r["name"] == ref:
            gain, gain_class = "reference", "noise"
        else:
            gain, gain_class = _gain_cell(r.get("gain_vs_best_member"), r.get("gain_se"), r.get("gain_verdict"))
        rows.append([str(i + 1), _name(r["name"]), kind, _num(r["gap"]),
                     "\u2013" if gap_se is None else f"\u00b1&nbsp;{_num(gap_se)}", gain,
                     _num(r["map"]), _num(r["hit1"]), _num(r["perr"]), _num(r["estimate"]),
                     "\u2013" if se is None else f"\u00b1&nbsp;{_num(se)}",
                     _num(r.get("gap_minus_estimate"), signed=True), _num(r["n"])])
        classes.append("best" if i == 0 else "")
        cells.append(["", "name", "kind", "", "se", gain_class, "", "", "", "", "se", "", ""])
    table = _table(["#", "model", "kind", f"GAP@{k}", "\u00b1 s.e.", "vs best member", "MAP", "Hit@1", "PERR",
                    "estimate", "\u00b1 s.e.", "GAP \u2212 estimate", "videos"], rows,
                   {0, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, classes, cell_classes=cells)
    caption = (f"GAP@{k} of every model on the {_e(d['split'])} split, best on top; ensembles in orange. "
               "Ticks: the estimate from the build record (measured on the fit split, so it is an honest "
               "forecast, not this split's score), whiskers \u00b12 fold standard errors.")
    return (f'<section id="leaderboard"><h2>Leaderboard</h2>'
            f"<p>Sorted by GAP@{k}; the best row is highlighted. The first \u00b1 s.e. is the fold standard "
            f"error of GAP on this split; <i>vs best member</i> is the GAP minus that of the best member "
            f"({_e(ref)}) with its paired standard error, in grey italics when within noise. MAP averages "
            f"per-class AP@{k} over the classes with a positive; PERR is precision at equal recall rate. The "
            f"estimate comes from the ensemble's build record: cross-fitted on the fit split for a learned "
            f"scheme (nested for <code>auto</code>), the plain fit-split GAP for a fixed one; its \u00b1 s.e. "
            f"is the fold standard error, and GAP \u2212 estimate how far this split landed from it (within "
            f"about two standard errors is the forecast holding).</p>{table}"
            f"{_figure(d['figures'], 'leaderboard', 'GAP per model', caption)}</section>")


def _builds(d: dict) -> str:
    builds = d["builds"]
    parts = ['<section id="builds"><h2>Build records and weights</h2>']
    if not builds:
        parts.append(_note("No build record given (<code>&lt;name&gt;.build.json</code> from "
                           "<code>ensemble build</code>): weights and trajectories are not shown."))
        return "".join(parts) + "</section>"
    rows, cells = [], []
    for name, b in builds.items():
        best = b.get("best_single")
        best_txt = f"{_name(best[0])} {_num(best[1])}" if isinstance(best, list) and len(best) == 2 else "\u2013"
        folds = b.get("fold_scores") or []
        spread = (max(folds) - min(folds)) if folds else None
        se = b.get("std_error")
        final = f"bag of {b['bagged_models']}" if b.get("bagged_models") else "single fit"
        gain, gain_class = _gain_cell(b.get("gain_over_best_single"), None, b.get("gain_verdict"))
        folds_txt = "\u2013" if not b.get("n_folds") else f"{_num(b['n_folds'])} ({_num(spread)})"
        rows.append([_name(name), _e(b.get("scheme")) + (f" \u2192 {_e(b['chosen'])}" if b.get("chosen") else ""),
                     _e(b.get("fit_split")), _num(len(b.get("members") or [])),
                     best_txt, _num(b.get("uniform_gap")), _num(b.get("estimate")),
                     "\u2013" if se is None else f"\u00b1&nbsp;{_num(se)}", gain, folds_txt, final])
        cells.append(["name", "", "", "", "name", "", "", "se", gain_class, "", ""])
    parts.append(_table(["build", "scheme", "fit split", "members", "best single (fit)", "uniform (fit)",
                         "estimate", "\u00b1 s.e.", "estimate \u2212 best single", "folds (range)",
                         "final model"], rows, {3, 5, 6, 7, 8, 9}, cell_classes=cells))
    parts.append("<p>All numbers in this table are on the build's fit split (as recorded when it was built). "
                 "<i>estimate \u2212 best single</i> is marked (noise) when it is smaller than two standard "
                 "errors of the estimate. A bag of K is the average of the K fold models whose out-of-fold "
                 "scores made the estimate.</p>")
    for name, b in builds.items():
        cands = b.get("candidates")
        if not cands:
            continue
        crows = [[_e(s) + (" (chosen)" if s == b.get("chosen") else ""), _num(c.get("estimate")),
                  "\u2013" if c.get("std_error") is None else f"\u00b1&nbsp;{_num(c['std_error'])}"]
                 for s, c in sorted(cands.items(), key=lambda kv: -(kv[1].get("estimate") or 0))]
        parts.append(f"<h3>{_e(name)}: schemes tried by <code>auto</code></h3>")
        parts.append(_table(["scheme", "cross-fitted GAP (fit split)", "\u00b1 s.e."], crows, {1, 2},
                            cell_classes=[["", "", "se"] for _ in crows]))
        parts.append(f"<p>The build's own estimate ({_num(b.get('estimate'))}) is nested: the choice was redone "
                     f"inside every outer fold, so it is an honest estimate of choosing, not of the winner.</p>")
    fig = _figure(d["figures"], "weights", "weights per member",
                  "Fitted weight of each member in each build that has weights (from the build records).")
    parts.append(fig or _note("No build record has per-member weights (e.g. stacking schemes)."))
    fig = _figure(d["figures"], "trajectory", "greedy selection trajectory",
                  "Greedy (Caruana) selection: fit-split GAP after each step; the star marks the best step "
                  "(for a bag of fold models: the first fold model's selection, on its training folds).")
    parts.append(fig or _note("No build record has a selection trajectory (only Caruana-style schemes do)."))
    parts.append(_importances(d))
    return "".join(parts) + "</section>"


def _importances(d: dict) -> str:
    """The stackers' member importances (the record's ``importance``) and feature importances."""
    parts = []
    for name, b in d["builds"].items():
        imp = b.get("importance")
        if imp:
            total = sum(abs(v) for v in imp.values()) or 1.0
            rows = [[_name(m), _num(v), f"{100 * abs(v) / total:.1f}%"]
                    for m, v in sorted(imp.items(), key=lambda kv: -abs(kv[1]))]
            parts.append(f"<h3>{_e(name)}: member importance</h3>")
            parts.append(_table(["member", "importance", "share"], rows, {1, 2},
                                cell_classes=[["name", "", ""] for _ in rows]))
            parts.append(_figure(d["figures"], f"importance:{name}", f"member importance of {name}",
                                 "Importance of each member in the stacker, as recorded by the build."))
        feats = b.get("features")
        if feats:
            kind = feats[0]
            parts.append(_figure(
                d["figures"], f"features:{name}", f"feature importances of {name}",
                f"Features of the stacker {_e(name)}: " + (
                    "total gain of the splits on each feature (xgboost)" if kind == "gain" else
                    "logistic-regression coefficient of each standardised feature (its sign is the direction "
                    "of its effect; correlated features share or swap weight)") + "."))
    if not parts:
        return _note("No build record has member or feature importances (only stacking schemes do).")
    return "".join(parts)


def _diversity(d: dict) -> str:
    parts = ['<section id="diversity"><h2>Member diversity</h2>']
    div = d["diversity"]
    if div is None:
        parts.append(_note(_e(d["notes"].get("diversity", "not enough members"))))
        return "".join(parts) + "</section>"
    names = div["members"]
    corr = div["correlation"]
    off = [corr[i][j] for i in range(len(names)) for j in range(len(names)) if i != j and corr[i][j] is not None]
    mean = sum(off) / len(off) if off else None
    parts.append(_figure(d["figures"], "correlation", "correlation of member scores",
                         f"Pearson correlation of the members' scores over the {_e(d['split'])} split's "
                         f"candidate (video, label) pairs (union of their top-k lists; 0 where a member did "
                         f"not propose the label). Mean off-diagonal: {_num(mean, 4)}. Lower means more "
                         f"diverse members, which is what averaging profits from."))
    parts.append(_figure(d["figures"], "loo", "leave-one-out",
                         f"GAP of the uniform average without each member minus with all members "
                         f"({_num(div['uniform_gap'])}). Negative (blue): the member helps; positive (red): "
                         f"the average is better without it."))
    return "".join(parts) + "</section>"


def _size(d: dict) -> str:
    parts = ['<section id="size"><h2>Ensemble size</h2>']
    greedy = d["greedy"]
    if not greedy:
        parts.append(_note(_e(d["notes"].get("diversity", "not enough members"))))
        return "".join(parts) + "</section>"
    parts.append(_figure(d["figures"], "greedy", "ensemble size vs GAP",
                         "Greedy forward order: at each step, the member whose addition helps the uniform "
                         f"average most on the {_e(d['split'])} split (an optimistic, in-sample order)."))
    rows, prev = [], None
    for i, g in enumerate(greedy):
        delta = None if prev is None else g["gap"] - prev
        rows.append([str(i + 1), _e(g["member"]), _num(g["gap"]), _num(delta, signed=True)])
        prev = g["gap"]
    cells = [[None, None, None, _sign_class(g["gap"] - greedy[i - 1]["gap"]) if i else None]
             for i, g in enumerate(greedy)]
    parts.append(_table(["size", "member added", f"GAP@{d['k']}", "change"], rows, {0, 2, 3},
                        cell_classes=cells))
    return "".join(parts) + "</section>"


def _verticals(d: dict) -> str:
    parts = ['<section id="verticals"><h2>Per vertical</h2>']
    rows = d.get("verticals")
    if not rows:
        parts.append(_note(_e(d["notes"].get("verticals", "no per-vertical data"))))
        return "".join(parts) + "</section>"
    names = list(rows[0]["gap"])
    body, cells = [], []
    for r in rows:
        line = [_e(r["vertical"]), _num(r["classes"]), _num(r["positives"])] + [_num(r["gap"][n]) for n in names]
        cell = ["name", "", ""] + [""] * len(names)
        if len(names) >= 2:
            text, cls = _gain_cell(r["change"], r.get("change_se"), r.get("verdict"))
            line.append(text)
            cell.append(cls)
        body.append(line)
        cells.append(cell)
    heads = ["vertical", "classes", "positives"] + [f"GAP {_e(n)}" for n in names]
    if len(names) >= 2:
        heads.append("change \u00b1 s.e.")
        parts.append(f"<p>GAP@{d['k']} restricted to each vertical's classes (the pooled top-{d['k']} entries "
                     f"of those classes over their positives), for the best member <b>{_e(names[0])}</b> and the "
                     f"best ensemble <b>{_e(names[-1])}</b>; the change carries its paired fold standard error, "
                     "in grey italics when within noise. Verticals from the vocabulary, by positives.</p>")
    else:
        parts.append(f"<p>GAP@{d['k']} restricted to each vertical's classes, for <b>{_e(names[0])}</b>.</p>")
    parts.append(_table(heads, body, set(range(1, len(heads))), cell_classes=cells))
    return "".join(parts) + "</section>"


def _classes(d: dict) -> str:
    parts = ['<section id="classes"><h2>Per-class AP</h2>']
    pc = d["per_class"]
    if pc is None:
        parts.append(_note(_e(d["notes"].get("per_class", "no per-class data"))))
        return "".join(parts) + "</section>"
    parts.append(_figure(d["figures"], "per_class", "per-class AP vs class frequency",
                         f"AP@{d['k']} of each class against its number of positives in the split (log scale; "
                         "points jittered slightly), with the mean per frequency bin. Rare classes are where "
                         "models differ most."))
    if "lost" not in pc:
        parts.append(_note(_e(d["notes"].get("ensemble", "no ensemble store")) +
                           ": the member-vs-ensemble class comparison is skipped."))
        return "".join(parts) + "</section>"
    m, e = pc["models"]
    parts.append(f"<p>The ensemble <b>{_e(e)}</b> beats the best member <b>{_e(m)}</b> on "
                 f"{_num(pc['better'])} classes, loses on {_num(pc['worse'])} and ties on {_num(pc['same'])} "
                 f"(classes with a positive in the split).</p>")
    if pc["lost"]:
        rows = [[_num(r["class"]), _e(r["name"]), _e(r["vertical"]), _num(r["positives"]), _num(r["ap_member"], 3),
                 _num(r["ap_ensemble"], 3), _num(r["delta"], 3, signed=True)] for r in pc["lost"]]
        cells = [[None] * 6 + ["neg"] for _ in rows]
        parts.append(f"<h3>Classes where the ensemble lost most against {_e(m)}</h3>")
        parts.append(_table(["class", "name", "vertical", "positives", f"AP {_e(m)}", f"AP {_e(e)}", "change"],
                            rows, {0, 3, 4, 5, 6}, cell_classes=cells))
    else:
        parts.append(_note("The ensemble loses on no class."))
    return "".join(parts) + "</section>"


def _calibration(d: dict) -> str:
    parts = ['<section id="calibration"><h2>Precision-recall and calibration</h2>']
    if not d["calibration"]:
        parts.append(_note("no model to plot"))
        return "".join(parts) + "</section>"
    parts.append(_figure(d["figures"], "pr", "precision-recall curve",
                         f"Precision vs recall along the pooled list behind GAP@{d['k']} (every video's top "
                         f"{d['k']} labels sorted by score; recall counts all positive labels, so it stops "
                         "below 1). GAP is the area under this curve."))
    parts.append(_figure(d["figures"], "reliability", "reliability diagram",
                         f"Reliability: pooled top-{d['k']} entries binned by predicted score; observed rate of "
                         "true labels per bin (top) and the share of entries per bin (bottom). ECE: expected "
                         "calibration error (entry-weighted mean gap to the diagonal)."))
    rows = [[_e(n), _num(c["ece"])] for n, c in d["calibration"].items()]
    parts.append(_table(["model", "ECE"], rows, {1}))
    return "".join(parts) + "</section>"


def _inputs(d: dict) -> str:
    rows = [[_name(r["name"]), f'<span class="tag {r["kind"]}">{r["kind"]}</span>',
             "<br>".join(f"<code>{_e(p)}</code>" for p in r["paths"])] for r in d["leaderboard"]]
    parts = ['<section id="inputs"><h2>Inputs</h2>', _table(["model", "kind", "stores"], rows, set())]
    if d["builds"]:
        parts.append("<p>Build records: " + ", ".join(f"<code>{_e(b.get('record_path'))}</code>"
                                                      for b in d["builds"].values()) + "</p>")
    other = {k: v for k, v in d["notes"].items() if k not in ("alignment", "diversity", "per_class", "verticals")}
    parts += [_note(_e(v)) for v in other.values()]
    return "".join(parts) + "</section>"


def page(d: dict) -> str:
    """The whole ``index.html`` for a summary dict (see :func:`reports.report.summary`)."""
    nav = "".join(f'<a href="#{key}">{label}</a>' for key, label in SECTIONS)
    meta = (f"split <b>{_e(d['split'])}</b> &middot; {_num(d['n_videos'])} videos &middot; "
            f"{_num(d['num_classes'])} classes &middot; {len(d['leaderboard'])} models &middot; "
            f"GAP@{d['k']} &middot; generated {_e(d['created'])}")
    body = "".join(f(d) for f in (_overview, _leaderboard, _builds, _diversity, _size, _verticals, _classes,
                                  _calibration, _inputs))
    return ("<!DOCTYPE html>\n"
            f'<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(d['title'])}</title><style>{CSS}</style></head><body>"
            f"<header><h1>{_e(d['title'])}</h1><div class=\"meta\">{meta}</div></header>"
            f"<nav>{nav}</nav><main>{body}</main>"
            f"<footer>yt8m-ensembler report &middot; numbers in summary.json</footer></body></html>\n")


def _md_escape(x) -> str:
    return str(x).replace("|", "\\|")


def markdown(d: dict) -> str:
    """A short Markdown summary: data line, leaderboard, greedy order and the worst classes."""
    k = d["k"]
    out = [f"# {d['title']}", "",
           f"Split `{d['split']}`: {d['n_videos']:,} videos, {d['num_classes']:,} classes, "
           f"{d['n_positives']:,} positive labels; GAP@{k}.", "",
           f"| # | model | kind | GAP@{k} | \u00b1 s.e. | vs best member | MAP | Hit@1 | PERR | estimate "
           "| \u00b1 s.e. |",
           "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for i, r in enumerate(d["leaderboard"]):
        name = f"**{_md_escape(r['name'])}**" if i == 0 else _md_escape(r["name"])
        gain = _num(r.get("gain_vs_best_member"), signed=True) + (
            "" if r.get("gain_se") is None else f" \u00b1 {_num(r['gain_se'])}") + (
            " (noise)" if r.get("gain_verdict") == "within noise" else "")
        out.append(f"| {i + 1} | {name} | {r['kind']} | {_num(r['gap'])} | {_num(r.get('gap_se'))} | {gain} | "
                   f"{_num(r['map'])} | {_num(r['hit1'])} | {_num(r['perr'])} | {_num(r['estimate'])} | "
                   f"{_num(r.get('std_error'))} |")
    best = d["best"]
    out.append("")
    if best["gain_over_best_member"] is not None:
        se = best.get("gain_se")
        out.append(f"Best ensemble `{best['ensemble']}` vs best member `{best['member']}`: "
                   f"{_num(best['gain_over_best_member'], signed=True)} GAP"
                   + ("" if se is None else f" \u00b1 {_num(se)} (paired fold s.e.): {best['gain_verdict']}")
                   + ".")
    if d["greedy"]:
        top = max(range(len(d["greedy"])), key=lambda i: d["greedy"][i]["gap"])
        order = ", ".join(f"{g['member']} ({_num(g['gap'])})" for g in d["greedy"])
        out.append(f"Greedy forward order (uniform average GAP): {order}; best size {top + 1}.")
    pc = d["per_class"]
    if pc and pc.get("lost"):
        out += ["", f"Classes where `{pc['models'][1]}` lost most vs `{pc['models'][0]}`:", "",
                "| class | name | vertical | positives | change |", "|---:|---|---|---:|---:|"]
        out += [f"| {r['class']} | {_md_escape(r['name'])} | {_md_escape(r['vertical'])} | {r['positives']} | "
                f"{_num(r['delta'], 3, signed=True)} |" for r in pc["lost"][:10]]
    for key, note in d["notes"].items():
        out.append(f"\nNote ({key}): {note}")
    return "\n".join(out) + "\n"
