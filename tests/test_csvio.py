"""Tests of predictions.csvio: round trips, every reader error, real shared files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from predictions import metrics
from predictions.csvio import read_rank_csv, read_scored_csv, read_submission, write_submission
from predictions.errors import InputError
from predictions.types import Labels, Predictions

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ERIKANFOX = DATA / "yt8m2018-predictions-erikanfox"
BILSTM = DATA / "yt8m2018-video-validate" / "bilstm_top10_predictions_validate0000-0099.csv"
HEADER = "VideoId,LabelConfidencePairs\n"


def write(tmp_path, text: str, name: str = "in.csv", encoding: str = "utf-8") -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode(encoding))
    return p


# --------------------------------------------------------------------------- writing
def test_write_format_by_hand(tmp_path):
    pred = Predictions(np.array(["a", "bb"]), np.array([[0.25, 0.9], [1.0, 0.0]], np.float32),
                       np.array([[7, 12], [0, 3]], np.int32), 20)
    out = write_submission(tmp_path / "sub.csv", pred, top=2, precision=3)
    # rows best first; "%.3f"; 1.0 -> "1.000", 0 -> "0.000"
    assert out.read_text() == HEADER + "a,12 0.900 7 0.250\nbb,0 1.000 3 0.000\n"
    write_submission(tmp_path / "p0.csv", pred, top=1, precision=0)
    assert (tmp_path / "p0.csv").read_text() == HEADER + "a,12 1\nbb,0 1\n"


def test_write_matches_printf_formatting(tmp_path):
    rng = np.random.default_rng(0)
    scores = rng.random((50, 4)).astype(np.float32)
    scores[0] = [0.0078125, 0.5, 1.0, 0.0]  # exact halves in binary
    pred = Predictions.from_dense(np.arange(50).astype(str), scores)
    path = write_submission(tmp_path / "s.csv", pred, top=4, precision=6)
    rows = path.read_text().splitlines()[1:]
    top = pred.topk(4)
    for i in (0, 7, 49):
        expect = " ".join(f"{l} {float(s):.6f}" for l, s in zip(top.indices[i], top.scores[i]))
        assert rows[i] == f"{i},{expect}"


def test_write_full_layout_and_validation(tmp_path):
    pred = Predictions.from_dense(["x"], np.array([[0.1, 0.7, 0.7, 0.2]], np.float32))
    # tie 0.7 between labels 1 and 2: lower label first (full matrix order)
    assert write_submission(tmp_path / "f.csv", pred, top=3, precision=1).read_text() == \
        HEADER + "x,1 0.7 2 0.7 3 0.2\n"
    with pytest.raises(InputError, match="comma"):
        write_submission(tmp_path / "bad.csv", Predictions.from_dense(["a,b"], np.ones((1, 2), np.float32)))
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        write_submission(tmp_path / "bad.csv", Predictions.from_dense(["a"], np.full((1, 2), 2, np.float32)))
    with pytest.raises(InputError, match="precision"):
        write_submission(tmp_path / "bad.csv", pred, precision=13)
    assert not (tmp_path / "bad.csv").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["f.csv"]  # no temporary left behind


@pytest.mark.parametrize("precision", [2, 4, 6])
def test_round_trip_exact_to_precision(tmp_path, precision):
    rng = np.random.default_rng(precision)
    n, c = 300, 100
    dense = rng.random((n, c)).astype(np.float32)
    pred = Predictions.from_dense([f"v{i}" for i in range(n)], dense, k=20)
    back = read_submission(write_submission(tmp_path / "s.csv", pred, precision=precision), c)
    assert np.array_equal(back.ids, pred.ids)
    expect = np.round(pred.scores.astype(np.float64), precision).astype(np.float32)
    np.testing.assert_array_equal(back.scores, expect)
    if precision == 6:  # no new ties at 6 decimals here: labels come back in the same order
        np.testing.assert_array_equal(back.indices, pred.indices)
    assert metrics.gap(back, Labels.from_lists(pred.ids, [[0]] * n, c), 20) >= 0


# --------------------------------------------------------------------------- reading
def test_read_sorts_pads_and_accepts_bom_crlf(tmp_path):
    text = "\ufeffVideoId,LabelConfidencePairs\r\nv1,3 0.2 5 0.9 1 0.5\r\n\r\nv2,4 0.7\r\nv3,\r\n"
    pred = read_submission(write(tmp_path, text), 10)
    assert pred.ids.tolist() == ["v1", "v2", "v3"] and pred.k == 3
    np.testing.assert_array_equal(pred.indices, [[5, 1, 3], [4, 0, 1], [0, 1, 2]])
    np.testing.assert_allclose(pred.scores, [[0.9, 0.5, 0.2], [0.7, 0, 0], [0, 0, 0]], atol=1e-7)
    # pads never repeat a label of the row: v4 holds 0 and 1, so pads are 2 and 3
    pred = read_submission(write(tmp_path, HEADER + "v4,0 0.5 1 0.5\n"), 10, k=4)
    np.testing.assert_array_equal(pred.indices, [[0, 1, 2, 3]])  # tie 0.5 keeps file order
    # k smaller than the rows: best k kept
    pred = read_submission(write(tmp_path, HEADER + "v,3 0.2 5 0.9 1 0.5\n"), 10, k=1)
    assert pred.indices.tolist() == [[5]]
    # header only: no rows
    assert len(read_submission(write(tmp_path, HEADER), 10)) == 0


@pytest.mark.parametrize("text, message", [
    ("", "empty file"),
    ("  \n", "empty file"),
    ("VideoId,Labels\nv,1 0.5\n", "line 1: expected header"),
    ("v,1 0.5\n", "line 1: expected header"),
    (HEADER + "v,1 0.5 2\n", "line 2: odd number of tokens"),
    (HEADER + "v,1 0.5\nw,2 abc\n", "line 3: score 'abc' is not a number"),
    (HEADER + "v,1.5 0.5\n", "line 2: label '1.5' is not an integer"),
    (HEADER + "v,1 0.5\n\nw,10 0.5\n", "line 4: label 10 out of range"),
    (HEADER + "v,-1 0.5\n", "line 2: label -1 out of range"),
    (HEADER + "v,1 1.5\n", r"line 2: score 1.5 outside \[0, 1\]"),
    (HEADER + "v,1 nan\n", r"line 2: score nan outside \[0, 1\]"),
    (HEADER + "v,1 0.5\nw,1 0.5\nv,2 0.5\n", "line 4: duplicate video id 'v' \\(first on line 2\\)"),
    (HEADER + "v,1 0.5 1 0.4\n", "line 2: label 1 appears twice"),
    (HEADER + "v 1 0.5\n", "line 2: expected 2 comma-separated fields"),
    (HEADER + "v,1,0.5\n", "line 2: expected 2 comma-separated fields"),
    (HEADER + ",1 0.5\n", "line 2: empty video id"),
])
def test_read_submission_errors(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(InputError, match=message) as err:
        read_submission(path, 10)
    assert "\n" not in str(err.value) and str(err.value).startswith(str(path) + ": ")


def test_read_missing_and_binary_file(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_submission(tmp_path / "nope.csv", 10)
    p = tmp_path / "bin.csv"
    p.write_bytes(b"VideoId,LabelConfidencePairs\n\xff\xfe,1 0.5\n")
    with pytest.raises(InputError, match="not UTF-8"):
        read_submission(p, 10)


def test_read_rank_csv_scores(tmp_path):
    path = write(tmp_path, "\ufeffVideoId,Label\r\na,7 2 9\nb,4\n")
    pred = read_rank_csv(path, 10)
    # score = 1 / (rank + 1): 1, 1/2, 1/3; b padded with score 0 and unused labels 0, 1
    np.testing.assert_array_equal(pred.indices, [[7, 2, 9], [4, 0, 1]])
    np.testing.assert_allclose(pred.scores, [[1, 1 / 2, 1 / 3], [1, 0, 0]], rtol=1e-7)
    with pytest.raises(InputError, match="line 3: label 12 out of range"):
        read_rank_csv(write(tmp_path, "VideoId,Label\na,1\nb,12\n"), 10)
    with pytest.raises(InputError, match="line 1: expected header 'VideoId,Label'"):
        read_rank_csv(write(tmp_path, HEADER + "a,1 0.5\n"), 10)


def test_read_scored_csv_small(tmp_path):
    text = (",VideoId,True labels,Pred labels,Confidence\n"
            '0,aa,[ 1  4],"[4, 2, 1]","[0.9, 0.95, 0.1]"\n'
            '1,bb,[],"[3]","[0.5]"\n')
    pred, truth = read_scored_csv(write(tmp_path, text), 5)
    np.testing.assert_array_equal(pred.indices, [[2, 4, 1], [3, 0, 1]])
    np.testing.assert_allclose(pred.scores, [[0.95, 0.9, 0.1], [0.5, 0, 0]], rtol=1e-7)
    assert [l.tolist() for l in truth.lists()] == [[1, 4], []]
    bad = text.replace("[0.5]", "[__import__('os')]")
    with pytest.raises(InputError, match="line 3: cannot parse confidences"):
        read_scored_csv(write(tmp_path, bad), 5)
    with pytest.raises(InputError, match="line 2: 3 predicted labels but 2 confidences"):
        read_scored_csv(write(tmp_path, text.replace("0.95, ", "")), 5)
    with pytest.raises(InputError, match="line 1: expected header"):
        read_scored_csv(write(tmp_path, text[1:]), 5)


# --------------------------------------------------------------------------- real data
# PROVENANCE.md's GAP@10 table. It was computed with a stable sort of the pooled
# list in file order, which ties="stable" reproduces; the default pessimistic rule
# gives less on files whose saturated scores tie a lot (values below are ours).
TABLE = {
    "Frame_level_Pooling_all": (0.450, 0.4422),
    "Frame_level_Pooling_audio": (0.114, 0.0955),
    "Frame_level_Pooling_rgb": (0.299, 0.2449),
    "Video_level_Dense_all": (0.433, 0.4245),
    "Video_level_Dense_audio": (0.252, 0.2521),
    "Video_level_Dense_rgb": (0.264, 0.2379),
}
HIT1 = {"Frame_level_Pooling_all": 0.595, "Frame_level_Pooling_audio": 0.291,
        "Frame_level_Pooling_rgb": 0.446, "Video_level_Dense_all": 0.580,
        "Video_level_Dense_audio": 0.461, "Video_level_Dense_rgb": 0.553}


@pytest.mark.realdata
def test_erikanfox_gap_at_10_matches_provenance():
    if not ERIKANFOX.is_dir():
        pytest.skip(f"real data not found at {ERIKANFOX} (shared/data absent)")
    for name, (table_gap, pessimistic_gap) in TABLE.items():
        pred, truth = read_scored_csv(ERIKANFOX / f"{name}.csv", 3862)
        assert len(pred) == (148 if name.startswith("Frame") else 219) and pred.k == 10
        assert abs(metrics.gap(pred, truth, k=10, ties="stable") - table_gap) < 0.0015, name
        assert metrics.gap(pred, truth, k=10) == pytest.approx(pessimistic_gap, abs=1e-4), name
        assert metrics.hit_at_1(pred, truth) == pytest.approx(HIT1[name], abs=0.0015), name
        assert truth.indices.max() <= 1000


@pytest.mark.realdata
def test_bilstm_rank_csv():
    if not BILSTM.is_file():
        pytest.skip(f"real data not found at {BILSTM} (shared/data absent)")
    pred = read_rank_csv(BILSTM, 3862)
    assert len(pred) == 28792 and pred.k == 10 and len(np.unique(pred.ids)) == 28792
    assert pred.ids[:2].tolist() == ["02aa", "p7aa"]
    assert pred.indices[0].tolist() == [3, 4, 10, 9, 34, 6, 2187, 47, 38, 13]
    np.testing.assert_allclose(pred.scores[0], 1 / np.arange(1, 11), rtol=1e-7)


# --------------------------------------------------------------------------- vectorised engine
from predictions import csvscan  # noqa: E402
from predictions.csvio import read_predictions_csv, read_truth_csv  # noqa: E402


def _python_numbers(tokens, kind):
    """What int()/float() on each token's bytes give (None: rejected or outside int64)."""
    out = []
    for t in tokens:
        try:
            v = kind(t.encode())
            out.append(None if kind is int and not -2 ** 63 <= v < 2 ** 63 else v)
        except (ValueError, OverflowError):
            out.append(None)
    return out


def _parse_all(tokens, integer):
    block = csvscan.Block.of(" ".join(tokens).encode())
    sc = csvscan.scan(block)
    assert len(sc.starts) == len(tokens)
    return csvscan.parse_numbers(block.buf, sc.starts, sc.ends, integer)


@pytest.mark.parametrize("kind", [int, float])
def test_parse_numbers_equals_python(kind):
    """Every fast path (4-byte ints, one-shape decimals, any decimal <= 16 bytes, exponents) and the fallback."""
    rng = np.random.default_rng(7)
    short = [str(x) for x in rng.integers(0, 10000, 500)]                       # labels: 4-byte words
    fixed = ["%.6f" % x for x in rng.random(500)]                                # one shape: 0.dddddd
    mixed = (["%g" % x for x in rng.random(300) * 10.0 ** rng.integers(-9, 4, 300)] +
             ["%.*f" % (int(p), x) for p, x in zip(rng.integers(0, 15, 300), rng.random(300) * 1000)] +
             [str(x) for x in rng.integers(0, 10 ** 15, 100)] + ["9" * 16, "9" * 17, "1" + "0" * 19])
    expo = (["%g" % x for x in rng.random(300) * 10.0 ** rng.integers(-30, -4, 300)] +   # 1.23457e-05
            ["%.3E" % x for x in rng.random(200) * 10.0 ** rng.integers(-25, 25, 200)] +  # 4.560E+12
            ["%.15e" % x for x in rng.random(100)] + ["1e0005", "1e", "e5", ".e1", "1e-400", "5e+22", "9" * 16 + "e-1"])
    odd = ["nan", "-1", "+3", "1e5", ".", ".5", "5.", "1_0", "inf", "0x1", "1.2.3", "..", "00000000000000001.5",
           "0.0000000000000001", "\u0661".encode().decode(), "12a", "a12", "1,"[:1]]
    for tokens in (short, fixed, mixed, expo, short + odd, fixed + odd, mixed + odd, expo + odd):
        expect = _python_numbers(tokens, kind)
        first_bad = next((i for i, e in enumerate(expect) if e is None), -1)
        values, bad = _parse_all(tokens, kind is int)
        assert bad == first_bad
        good = [t for t, e in zip(tokens, expect) if e is not None]
        values, bad = _parse_all(good, kind is int)
        assert bad == -1
        want = [e for e in expect if e is not None]
        got = values.tolist()
        assert all(g == w or (g != g and w != w) for g, w in zip(got, want)), tokens[:3]


def test_scan_tokens_lines_and_separators():
    text = b"a,1 2\r\n\r\n  b ,\t3\x0b4\x0c5\n,\nc,7"
    block = csvscan.Block.of(text, first_line=2)
    sc = csvscan.scan(block)
    toks = [text[s:e] for s, e in zip(sc.starts, sc.ends)]
    assert toks == [b"a", b"1", b"2", b"b", b"3", b"4", b"5", b"c", b"7"]
    assert sc.line_tokens.tolist() == [3, 0, 4, 0, 2] and sc.line_commas.tolist() == [1, 0, 1, 1, 1]
    assert sc.line_first.tolist() == [0, 3, 3, 7, 7]
    # control bytes other than \t\n\v\f\r are token bytes, as for bytes.split()
    assert len(csvscan.scan(csvscan.Block.of(b"a\x01b c\x1fd\n")).starts) == 2


def test_token_bytes_and_ids_keep_unicode_and_nul():
    block = csvscan.Block.of("é1 a\x00b z\n".encode())
    sc = csvscan.scan(block)
    ids = csvscan.ids_to_str([csvscan.token_bytes(block, sc.starts, sc.ends)])
    assert ids.tolist() == ["é1", "a\x00b", "z"]
    block = csvscan.Block.of(b"ab c\n")                                  # ASCII: the fast widening
    sc = csvscan.scan(block)
    assert csvscan.ids_to_str([csvscan.token_bytes(block, sc.starts, sc.ends)]).tolist() == ["ab", "c"]


def _submission_text(rng, n, *, crlf=False, blanks=False, spaces=False):
    rows = []
    for i in range(n):
        w = int(rng.integers(0, 6))
        labs = rng.choice(50, w, replace=False)
        scs = [("%.6f", "%g", "%.3f", "%.12f")[int(rng.integers(0, 4))] % s for s in rng.random(w)]
        sep = "  " if spaces and i % 3 == 0 else " "
        rows.append(f"v{i}," + sep.join(f"{l}{sep}{s}" for l, s in zip(labs, scs)))
        if blanks and i % 7 == 0:
            rows.append("   ")
    eol = "\r\n" if crlf else "\n"
    return HEADER.strip() + eol + eol.join(rows) + eol


def _expected(text, num_classes):
    """The reading rules written plainly, row by row (the reference for the vectorised reader)."""
    out = {}
    for line in text.splitlines()[1:]:
        if not line.strip():
            continue
        vid, rest = line.split(",")
        tok = rest.split()
        pairs = sorted(((float(tok[i + 1]), int(tok[i])) for i in range(0, len(tok), 2)),
                       key=lambda p: -np.float32(p[0]))
        out[vid.strip()] = pairs
    return out


@pytest.mark.parametrize("block_bytes", [None, 37, 300])
@pytest.mark.parametrize("style", [{}, {"crlf": True}, {"blanks": True, "spaces": True}])
def test_read_submission_matches_plain_reading(tmp_path, monkeypatch, block_bytes, style):
    """Random rows (ragged, several formats, CRLF, blank lines, runs of spaces), any block size."""
    monkeypatch.setattr(csvscan, "BLOCK_BYTES", block_bytes or csvscan.BLOCK_BYTES)
    rng = np.random.default_rng(len(style) + (block_bytes or 0))
    text = _submission_text(rng, 300, **style)
    pred = read_submission(write(tmp_path, "\ufeff" + text), 50)
    expect = _expected(text, 50)
    assert pred.ids.tolist() == list(expect)
    for i, pairs in enumerate(expect.values()):
        w = len(pairs)
        np.testing.assert_array_equal(pred.scores[i, :w], np.array([p[0] for p in pairs], np.float32))
        assert sorted(pred.indices[i, :w].tolist()) == sorted(p[1] for p in pairs)
        assert (pred.scores[i, w:] == 0).all()
        assert len(set(pred.indices[i].tolist())) == pred.k


def test_errors_name_the_right_line_across_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(csvscan, "BLOCK_BYTES", 64)
    rows = [f"v{i},{i % 9} 0.5 9 0.25" for i in range(200)]
    good = HEADER + "\n".join(rows) + "\n"
    assert len(read_submission(write(tmp_path, good), 10)) == 200
    for line, bad_row, message in [(150, "v148,1 0.5 2 x", "line 150: score 'x' is not a number"),
                                   (120, "v118,1 0.5 12 0.2", "line 120: label 12 out of range"),
                                   (181, "v3,1 0.5 2 0.2", r"line 181: duplicate video id 'v3' \(first on line 5\)"),
                                   (99, "v97,1 0.5 1 0.2", "line 99: label 1 appears twice"),
                                   (77, "v75 1 0.5", "line 77: expected 2 comma-separated fields")]:
        text = rows[:line - 2] + [bad_row] + rows[line - 1:]
        with pytest.raises(InputError, match=message):
            read_submission(write(tmp_path, HEADER + "\n".join(text) + "\n"), 10)
    p = tmp_path / "utf.csv"
    p.write_bytes(good.encode() + b"w,1 0.5\xff\n")
    with pytest.raises(InputError, match=rf"not UTF-8 text \(byte {len(good.encode()) + 7}\)"):
        read_submission(p, 10)
    long_row = "long," + " ".join(f"{j} 0.1" for j in range(60))   # a line longer than a block
    pred = read_submission(write(tmp_path, HEADER + long_row + "\nx,1 0.5\n"), 100)
    assert pred.ids.tolist() == ["long", "x"] and pred.k == 60


def test_read_truth_csv(tmp_path):
    text = "\ufeffVideoId,Labels\r\nb,5 1 5\r\n\r\na,\r\nc,0\r\n"
    truth = read_truth_csv(write(tmp_path, text), 6)
    assert truth.ids.tolist() == ["b", "a", "c"]
    assert [l.tolist() for l in truth.lists()] == [[1, 5], [], [0]]   # sorted, a repeat counted once
    for text, message in [("VideoId,Label\na,1\n", "line 1: expected header 'VideoId,Labels'"),
                          ("VideoId,Labels\na,1\nb,6\n", r"line 3: label 6 out of range \[0, 6\)"),
                          ("VideoId,Labels\na,1\nb,x\n", "line 3: label 'x' is not an integer"),
                          ("VideoId,Labels\na,1\n\na,2\n", r"line 4: duplicate video id 'a' \(first on line 2\)"),
                          ("VideoId,Labels\na 1\n", "line 2: expected 2 comma-separated fields"),
                          ("", "empty file")]:
        with pytest.raises(InputError, match=message):
            read_truth_csv(write(tmp_path, text), 6)


def test_read_predictions_csv_tells_formats_apart(tmp_path):
    rank = read_predictions_csv(write(tmp_path, "VideoId,Label\na,3 1\n", "r.csv"), 5)
    np.testing.assert_allclose(rank.scores, [[1, 0.5]])
    sub = read_predictions_csv(write(tmp_path, HEADER + "a,3 0.25 1 0.75\n", "s.csv"), 5)
    assert sub.indices.tolist() == [[1, 3]]
    with pytest.raises(InputError, match="line 1: expected header 'VideoId,LabelConfidencePairs'"):
        read_predictions_csv(write(tmp_path, "id,x\n", "bad.csv"), 5)


def test_scored_fast_path_equals_csv_module_path(tmp_path):
    from predictions import csvio

    rng = np.random.default_rng(3)
    rows = [",VideoId,True labels,Pred labels,Confidence"]
    for i in range(200):
        t = np.sort(rng.choice(30, int(rng.integers(0, 4)), replace=False))
        p = rng.choice(30, int(rng.integers(0, 6)), replace=False)
        c = rng.random(len(p))
        rows.append(f'{i},id{i},[{" ".join(map(str, t))}],"[{", ".join(map(str, p))}]",'
                    f'"[{", ".join(repr(float(x)) for x in c)}]"')
    path = write(tmp_path, "\ufeff" + "\n".join(rows[:50]) + "\n\n" + "\r\n".join(rows[50:]) + "\n")
    fast = csvio._read_scored_fast(path, 30)
    assert fast is not None
    slow = csvio._read_scored_slow(path, 30)
    for a, b in zip(fast, slow):
        assert a.ids.tolist() == b.ids.tolist()
    np.testing.assert_array_equal(fast[0].scores, slow[0].scores)
    np.testing.assert_array_equal(fast[0].indices, slow[0].indices)
    np.testing.assert_array_equal(fast[1].indptr, slow[1].indptr)
    np.testing.assert_array_equal(fast[1].indices, slow[1].indices)
    # a field over two lines is csv-valid but not the usual shape: the csv-module path reads it
    multi = write(tmp_path, rows[0] + '\n0,a,[1],"[1,\n 2]","[0.5, 0.25]"\n', "m.csv")
    assert csvio._read_scored_fast(multi, 30) is None
    pred, truth = read_scored_csv(multi, 30)
    assert pred.indices.tolist() == [[1, 2]] and truth.lists()[0].tolist() == [1]
    # errors of the fast path name the line, as the csv-module path does
    bad = write(tmp_path, rows[0] + '\n\n0,a,[1],"[1, 2]","[0.5]"\n', "b.csv")
    with pytest.raises(InputError, match="line 3: 2 predicted labels but 1 confidences"):
        read_scored_csv(bad, 30)
    bad = write(tmp_path, rows[0] + '\n0,a,[31],"[1]","[0.5]"\n', "b2.csv")
    with pytest.raises(InputError, match=r"line 2: true label 31 out of range \[0, 30\)"):
        read_scored_csv(bad, 30)
