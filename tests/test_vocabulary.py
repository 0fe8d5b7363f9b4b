"""The vocabulary loader (predictions.vocabulary): every format, the vertical numbering, clear errors."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from predictions.errors import InputError
from predictions.vocabulary import Vocabulary, class_verticals, load_vocabulary

VOCAB = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "yt8m-vocabulary"


def _real(name: str) -> Path:
    path = VOCAB / name
    if not path.exists():
        pytest.skip(f"real vocabulary file not found: {path}")
    return path


def test_generator_format_rows_in_any_order(tmp_path):
    gen = tmp_path / "vocabulary.csv"
    gen.write_text("Index,Name,Vertical1\n1,Car,Autos\n0,Game,Games\n2,Truck,Autos\n")
    v = load_vocabulary(gen)
    assert isinstance(v, Vocabulary) and v.num_classes == len(v) == 3
    assert v.names.tolist() == ["Game", "Car", "Truck"]
    # named verticals are numbered by their sorted position
    assert v.vertical_names == ("Autos", "Games")
    assert v.verticals.tolist() == [1, 0, 0]
    assert v.train_counts is None and v.path == str(gen)
    assert v.describe([1, 0, 7]) == (["Car", "Game", "class 7"], ["Autos", "Games", ""])
    np.testing.assert_array_equal(v.verticals_for(3), [1, 0, 0])


def test_label_names_with_vertical_tsv(tmp_path):
    names = tmp_path / "label_names.csv"
    names.write_text("label_id,label_name\n0,Game\n1,Car\n")
    v = load_vocabulary(names)
    assert v.names.tolist() == ["Game", "Car"] and not v.has_verticals
    assert v.describe([0]) == (["Game"], [""])
    with pytest.raises(InputError, match="label_names.csv: 2 of 2 classes have no vertical"):
        v.verticals_for(2)
    tsv = tmp_path / "vert.tsv"
    tsv.write_text("0\t3\n1\t0\n")
    v = load_vocabulary(names, verticals=tsv)
    # integer verticals keep their number
    assert v.verticals.tolist() == [3, 0]
    assert v.describe([0, 1])[1] == ["vertical 3", "vertical 0"]
    assert v.vertical_names == tuple(f"vertical {i}" for i in range(4))


def test_gaps_in_class_ids_are_unknown_classes(tmp_path):
    p = tmp_path / "v.csv"
    p.write_text("Index,Name,Vertical1\n0,a,X\n3,d,Y\n")
    v = load_vocabulary(p)
    assert v.num_classes == 4 and v.names.tolist() == ["a", "", "", "d"]
    assert v.verticals.tolist() == [0, -1, -1, 1]
    assert v.describe([1])[0] == ["class 1"]
    with pytest.raises(InputError, match="2 of 4 classes have no vertical"):
        v.verticals_for(4)
    with pytest.raises(InputError, match="lists 4 classes, expected 5"):
        v.verticals_for(5)


@pytest.mark.parametrize("text, message", [
    ("a,b\n1,2\n", "unknown vocabulary format"),
    ("Index,Name\n0,a\n0,b\n", "class index 0 appears twice"),
    ("Index,Name\n0,a\nx,b\n", "line 3: column Index: 'x' is not an integer"),
    ("Index,Name\n-1,a\n", "negative class index -1"),
    ("", "empty file"),
])
def test_bad_files_are_one_line_errors_naming_the_file(tmp_path, text, message):
    bad = tmp_path / "bad.csv"
    bad.write_text(text)
    with pytest.raises(InputError, match=message) as err:
        load_vocabulary(bad)
    assert str(err.value).startswith(f"{bad}: ") and "\n" not in str(err.value)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(InputError, match="missing.csv: file not found"):
        load_vocabulary(tmp_path / "missing.csv")
    with pytest.raises(InputError, match="is a directory"):
        load_vocabulary(tmp_path)
    binary = tmp_path / "v.csv"
    binary.write_bytes(b"Index,Name\n0,\xff\xfe\n")
    with pytest.raises(InputError, match="not a UTF-8 text file"):
        load_vocabulary(binary)
    names = tmp_path / "n.csv"
    names.write_text("label_id,label_name\n0,a\n")
    tsv = tmp_path / "v.tsv"
    tsv.write_text("0 3\n")
    with pytest.raises(InputError, match="v.tsv: line 1: expected two tab-separated columns"):
        load_vocabulary(names, verticals=tsv)


def test_class_verticals_from_any_spec(tmp_path):
    p = tmp_path / "v.csv"
    p.write_text("Index,Name,Vertical1\n0,a,X\n1,b,Y\n2,c,X\n")
    expected = [0, 1, 0]
    assert class_verticals(str(p), 3).tolist() == expected
    assert class_verticals(p, 3).tolist() == expected
    assert class_verticals(load_vocabulary(p), 3).tolist() == expected
    assert class_verticals([2, 0, 1], 3).tolist() == [2, 0, 1]
    for bad in ([0, 1], [0, -1, 1], [0.5, 1, 1], "nope"):
        with pytest.raises(InputError, match="verticals|file not found"):
            class_verticals(bad, 3)


def test_official_2018_vocabulary():
    v = load_vocabulary(_real("vocabulary_2018_3862.csv"))  # rows ordered by TrainVideoCount, not Index
    assert v.num_classes == 3862 and (v.names == "").sum() == 56   # the official file leaves 56 names empty
    assert v.names[0] == "Game" and v.vertical_names[v.verticals[0]] == "Games"
    assert v.describe([120]) == (["class 120"], ["Food & Drink"])  # an empty name falls back to the id
    assert v.train_counts[0] == 788288 and (v.train_counts > 0).all()
    assert len(v.vertical_names) == 25 and v.vertical_names[0] == "(Unknown)" and v.vertical_names[-1] == "Travel"
    assert v.verticals_for(3862).min() == 0 and v.verticals_for(3862).max() == 24
    n = load_vocabulary(_real("label_names_2018_3862.csv"))
    assert n.num_classes == 3862 and (n.names == v.names).mean() > 0.99


def test_2018_verticals_equal_the_hmoe_config():
    """The real hmoe config's inline list is exactly what the loader gives for the 2018 file."""
    import tomllib
    cfg = Path(__file__).resolve().parents[1] / "configs" / "real" / "hmoe.toml"
    inline = tomllib.loads(cfg.read_text())["model"]["hparams"].get("verticals")
    if not isinstance(inline, list):
        pytest.skip("configs/real/hmoe.toml no longer carries the verticals inline")
    v = load_vocabulary(_real("vocabulary_2018_3862.csv"))
    assert v.verticals_for(3862).tolist() == inline


def test_2017_names_with_verticals():
    old = load_vocabulary(_real("label_names_2017_4716.csv"), verticals=_real("vertical_2017_4716.tsv"))
    assert old.num_classes == 4716 and old.names[0] == "Games"
    assert old.describe([0])[1] == ["vertical 0"]
    assert len(set(old.verticals.tolist())) == 25 and old.verticals.min() == 0


def test_import_is_light():
    """predictions (with the vocabulary and metrics) imports without pandas."""
    code = "import sys, predictions; print('pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
