"""The Python API: the docs tour as written, package faces, import hygiene, scikit-learn conventions,
plain numpy inputs, fit_ensemble and the build record."""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
import sklearn.base

import ensembler
import predictions
import reports
from ensembler import BuildRecord, NotFittedError, create_combiner, crossfit, fit_ensemble
from ensembler.cli import main
from predictions import metrics
from predictions.csvio import read_submission
from predictions.errors import InputError
from predictions.store import read_store
from predictions.types import Labels, Predictions

from .ensemble_fixtures import SPLITS, write_members
from .test_schemes_weighting import make_problem

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "python-api.md"


# --------------------------------------------------------------------------- the tour
def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_tour_runs_as_written(tmp_path, monkeypatch, capsys):
    blocks = _python_blocks(DOC.read_text())
    tour = blocks[0]
    assert len(tour.strip().splitlines()) < 20
    run = write_members(tmp_path / "demo-run", names=["lr", "moe"], noises=(1.2, 2.0))
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__tour__"}
    for block in blocks:  # every example of the page, in order, exactly as written, as in one notebook
        exec(compile(block, str(DOC), "exec"), namespace)
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["uniform", "caruana", "lr", "auto"]
    auto = lines.pop().split()
    lines = lines[:3]
    estimates = {line.split()[0]: float(line.split()[3]) for line in lines}
    assert all(line.split()[4] == "±" and 0 < float(line.split()[5]) < 0.05 for line in lines)
    assert auto[1] == max(estimates, key=estimates.get) and abs(float(auto[3]) - max(estimates.values())) < 0.02
    # the uniform estimate is the plain GAP@20 of the members' average (computed here independently)
    truth = run["truth"]["heldout"]
    dense = [read_store(tmp_path / f"demo-run/predictions/{m}.heldout.full.h5").reindex(truth.ids).dense()
             for m in ("lr", "moe")]
    avg = Predictions.from_dense(truth.ids, np.mean(dense, axis=0), k=20)
    assert estimates["uniform"] == pytest.approx(metrics.gap(avg, truth), abs=2e-4)
    assert all(0.3 < e < 1 for e in estimates.values())
    sub = read_submission(tmp_path / "demo-run" / "submission.csv", 60)
    assert len(sub) == SPLITS["test"] and set(sub.ids) == set(run["truth"]["test"].ids)
    assert sub.k == 20
    # the DataFrame and apply-later examples: weights by name, an eval column, apply == build's model
    assert set(namespace["fit"].weights) == {"moe", "lr"}
    assert "gap_eval" in namespace["board"].columns and len(namespace["board"]) == 3
    assert list(namespace["top"].columns) == ["VideoId", "LabelConfidencePairs"]
    applied = read_store(tmp_path / "demo-run" / "blend" / "ens-caruana.test.full.h5")
    np.testing.assert_array_equal(applied.scores, namespace["preds"].scores)
    assert set(applied.ids) == set(run["truth"]["test"].ids)


# --------------------------------------------------------------------------- faces and imports
def test_package_faces():
    for module in (ensembler, predictions, reports):
        assert module.__all__ and all(hasattr(module, n) for n in module.__all__), module.__name__
    assert {"create_combiner", "list_combiners", "Combiner", "Candidates", "crossfit", "fit_ensemble",
            "build", "BuildRecord", "load_members"} <= set(ensembler.__all__)
    assert {"read_store", "read_labels", "Predictions", "Labels", "load_vocabulary"} <= set(predictions.__all__)
    assert "caruana" in ensembler.list_combiners() and "xgboost" in ensembler.list_combiners()
    import producers
    assert {"create_model", "list_models", "train_job", "predict_job"} <= set(producers.__all__)
    assert all(hasattr(producers, n) for n in producers.__all__)
    model = producers.create_model("mlp", input_dim=8, num_classes=5, hidden_dim=4)
    assert "mlp" in producers.list_models("video") and sum(p.numel() for p in model.parameters()) > 0


def test_import_ensembler_is_light():
    code = ("import sys, ensembler; print(sorted(m for m in ('reports', 'ensembler.cli', 'producers', 'scipy', "
            "'sklearn', 'pandas', 'xgboost', 'dask', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def _imports(package: str) -> dict[str, set[str]]:
    """Module -> modules it imports (module level or inside functions), within the project."""
    graph = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        module = ".".join(parts)
        pkg = parts if rel.name == "__init__" else parts[:-1]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(pkg[:len(pkg) - node.level + 1] + ((base,) if base else ()))
                subs = {f"{base}.{a.name}" for a in node.names}
                known = {s for s in subs if (ROOT / s.replace(".", "/")).with_suffix(".py").exists()
                         or (ROOT / s.replace(".", "/") / "__init__.py").exists()}
                deps |= known if known == subs else subs | {base}   # `from pkg import submodule` needs only it
        graph[module] = deps
    return graph


def test_no_import_cycles_and_layers_respected():
    graph = {}
    for package in ("predictions", "ensembler", "reports", "producers"):
        graph.update(_imports(package))
    edges = {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for d in edges[m]:
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                visit(d, stack + [d])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    layers = {"predictions": ("ensembler", "reports", "producers"), "ensembler": ("reports", "producers")}
    for m, deps in graph.items():
        forbidden = layers.get(m.split(".")[0], ())
        bad = sorted(d for d in deps if d.split(".")[0] in forbidden)
        assert not bad, f"{m} imports {bad}"


# --------------------------------------------------------------------------- scikit-learn conventions
@pytest.mark.parametrize("scheme", ensembler.list_combiners())
def test_clone_get_and_set_params(scheme):
    comb = create_combiner(scheme)
    params = comb.get_params(deep=True)
    assert params == comb.get_params(deep=False) and params
    twin = sklearn.base.clone(comb)
    assert type(twin) is type(comb) and twin is not comb and twin.get_params() == params
    key = "random_state" if "random_state" in params else next(iter(params))
    value = 7 if key == "random_state" else params[key]
    assert comb.set_params(**{key: value}) is comb and comb.get_params()[key] == value
    with pytest.raises(InputError, match="no parameter 'bogus'"):
        comb.set_params(bogus=1)
    assert repr(create_combiner(scheme)) == f"{type(comb).__name__}()"


def test_clone_of_fitted_is_unfitted_and_arrays_are_copied():
    cands, labels, _ = make_problem(n=200, seed=5)
    verticals = np.arange(50) % 3
    lr = create_combiner("lr", verticals=verticals).fit(cands, labels)
    twin = sklearn.base.clone(lr)
    assert not hasattr(twin, "model_") and twin.verticals is not verticals
    np.testing.assert_array_equal(twin.verticals, verticals)
    assert repr(twin) == "LogisticStacker(verticals=array(shape=(50,), dtype=int64))"
    np.testing.assert_allclose(twin.fit(cands, labels).predict_scores(cands), lr.predict_scores(cands), rtol=1e-6)


def test_not_fitted_is_a_programming_error():
    with pytest.raises(NotFittedError) as err:
        create_combiner("caruana").predict([np.zeros((3, 4))])
    assert not isinstance(err.value, InputError)
    assert isinstance(err.value, (ValueError, AttributeError))  # as scikit-learn's NotFittedError


# --------------------------------------------------------------------------- plain inputs
@pytest.fixture(scope="module")
def plain():
    """Three members as (n, C) score arrays and the same as Predictions; labels as a bool matrix and Labels."""
    rng = np.random.default_rng(3)
    n, C = 300, 30
    Y = rng.random((n, C)) < 0.08
    Y[np.arange(n), rng.integers(0, C, n)] = True
    scores = [np.clip(Y + rng.normal(0, s, Y.shape), 0, 1).astype(np.float32) for s in (0.4, 0.6, 1.0)]
    ids = np.arange(n).astype(str)
    preds = [Predictions(ids, s, None, C) for s in scores]
    labels = Labels.from_lists(ids, [np.flatnonzero(r) for r in Y], C)
    return scores, Y, preds, labels


@pytest.mark.parametrize("scheme", ["uniform", "caruana", "optimized", "lr"])
def test_plain_arrays_give_the_same_ensemble(plain, scheme):
    scores, Y, preds, labels = plain
    a = create_combiner(scheme, random_state=0) if scheme != "uniform" else create_combiner(scheme)
    b = sklearn.base.clone(a)
    a.fit(scores, Y)
    b.fit(preds, labels)
    np.testing.assert_array_equal(a.predict_scores(scores), b.predict_scores(preds))
    pred = a.predict(scores, k=5)
    assert isinstance(pred, Predictions) and pred.k == 5 and len(pred) == len(Y)
    # a dict in another order is put in the fitted order; the ensemble beats the worst member
    named = {f"m{i}": s for i, s in reversed(list(enumerate(scores)))}
    np.testing.assert_array_equal(a.predict(named, k=5).indices, pred.indices)
    worst = min(metrics.gap(p, labels) for p in preds)
    assert metrics.gap(a.predict(scores), labels) > worst


def test_sparse_labels_and_clear_errors(plain):
    scores, Y, preds, labels = plain
    dense = create_combiner("gap").fit(scores, Y)
    sparse = create_combiner("gap").fit(scores, scipy.sparse.csr_matrix(Y.astype(np.int8)))
    np.testing.assert_array_equal(dense.member_weights_, sparse.member_weights_)
    comb = create_combiner("gap")
    with pytest.raises(TypeError, match="members must be"):
        comb.fit("runs/*.h5", Y)
    with pytest.raises(TypeError, match="labels must be"):
        comb.fit(scores, {"labels": "labels.h5"})
    with pytest.raises(InputError, match="labels.h5: file not found"):   # a path is read: it must exist
        comb.fit(scores, "labels.h5")
    with pytest.raises(TypeError, match="mix Predictions and arrays"):
        comb.fit([preds[0], scores[1]], Y)
    with pytest.raises(InputError, match=r"shape \(300, 29\)"):
        comb.fit([scores[0], scores[1][:, :29]], Y)
    with pytest.raises(InputError, match="label matrix has shape"):
        comb.fit(scores, Y[:10])
    with pytest.raises(InputError, match="only 0 and 1"):
        comb.fit(scores, Y * 2)
    with pytest.raises(InputError, match="needs labels"):
        comb.fit(scores)
    fitted = create_combiner("uniform").fit(scores)
    with pytest.raises(InputError, match="differ from the fitted members"):
        fitted.predict(scores[:2])


# --------------------------------------------------------------------------- fit_ensemble
def test_fit_ensemble_numbers_are_the_pieces():
    cands, labels, members = make_problem(n=300, seed=4)
    named = dict(zip(cands.member_names, members))
    fit = fit_ensemble(named, labels, "caruana", {"n_iterations": 20}, n_folds=4, random_state=2)
    assert fit.member_names == cands.member_names and fit.n_videos == 300
    for j, name in enumerate(cands.member_names):
        assert fit.member_gap[name] == cands.gap(cands.scores[:, j], labels)
    assert fit.best_single == max(fit.member_gap.items(), key=lambda kv: kv[1])
    assert fit.uniform_gap == cands.gap(cands.scores.mean(axis=1), labels)
    cv = crossfit(create_combiner("caruana", n_iterations=20, random_state=2), cands, labels, n_folds=4,
                  random_state=2)
    assert fit.estimate == cv.estimate and fit.crossfit.fold_scores == cv.fold_scores
    assert fit.crossfit.fold_sizes == [75] * 4 and fit.params == {"n_iterations": 20}
    # the final model is the average of the fold models: fold f's model fitted on the other folds' videos
    assert fit.final == "bag" and fit.std_error == pytest.approx(np.std(cv.fold_scores, ddof=1) / 2)
    fold_w = [create_combiner("caruana", n_iterations=20, random_state=2)
              .fit(cands.take_videos(np.flatnonzero(cv.folds != f)), labels.take(np.flatnonzero(cv.folds != f)))
              .member_weights_ for f in range(4)]
    np.testing.assert_allclose(fit.combiner.member_weights_, np.mean(fold_w, axis=0), rtol=1e-12)
    np.testing.assert_allclose(fit.combiner.predict_scores(cands), cands.scores @ np.mean(fold_w, axis=0),
                               rtol=1e-5, atol=1e-6)
    refit = fit_ensemble(named, labels, "caruana", {"n_iterations": 20}, n_folds=4, random_state=2, final="refit")
    assert refit.final == "refit" and refit.estimate == fit.estimate
    again = create_combiner("caruana", n_iterations=20, random_state=2).fit(cands, labels)
    np.testing.assert_array_equal(refit.combiner.member_weights_, again.member_weights_)
    for f in (fit, refit):
        pred = f.predict(named)
        assert pred.k == 20 and metrics.gap(pred, labels) > f.best_single[1]


def test_fit_ensemble_without_labels():
    cands, labels, members = make_problem(n=100, seed=6)
    fit = fit_ensemble(members, None, "uniform")
    assert fit.crossfit is None and fit.estimate is None and fit.member_gap is None
    np.testing.assert_allclose(fit.combiner.predict_scores(members), cands.scores.mean(axis=1), rtol=1e-6)
    with pytest.raises(InputError, match="learned: it needs labels"):
        fit_ensemble(members, None, "caruana")
    with pytest.raises(InputError, match="unknown weighting scheme"):
        fit_ensemble(members, labels, "nope")
    with pytest.raises(InputError, match="n_folds must be"):
        fit_ensemble(members, labels, "caruana", n_folds=1)
    with pytest.raises(InputError, match="n_iterations"):
        fit_ensemble(members, labels, "caruana", {"n_iterations": 0})


# --------------------------------------------------------------------------- build record
@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    run = write_members(root)
    out = root / "out"
    recs = {scheme: ensembler.build([str(run["predictions"])], scheme=scheme, labels=[str(run["labels"])], out=out,
                                    progress=False, log=lambda *_: None, n_folds=3)
            for scheme in ("uniform", "gap")}
    return run, out, recs


def test_build_returns_the_record_it_writes(built):
    run, out, recs = built
    for scheme, rec in recs.items():
        assert isinstance(rec, BuildRecord) and rec.path == str(out / f"ens-{scheme}.build.json")
        text = Path(rec.path).read_text()
        assert text == rec.to_json()
        back = BuildRecord.read(rec.path)
        assert back == rec and back.to_dict() == json.loads(text)
        assert json.loads(text)["record_version"] == 1
        assert back.member_names == ["m0", "m1", "m2"] and set(back.outputs) == {"heldout", "eval", "test"}
    learned, fixed = recs["gap"], recs["uniform"]
    assert learned.crossfit.n_folds == 3 and learned.estimate == learned.crossfit.estimate
    assert "estimate" not in json.loads(Path(learned.path).read_text())        # it lives in "crossfit"
    assert fixed.crossfit is None and fixed.estimate == fixed.scores["heldout"]["ensemble"]["gap"]
    assert set(learned.member_weights) == {"m0", "m1", "m2"} and max(learned.member_weights.values()) < 1


def test_old_new_and_malformed_records(built, tmp_path):
    _, _, recs = built
    data = recs["gap"].to_dict()
    del data["record_version"]                     # written before versioning
    old = BuildRecord.from_dict(data)
    assert old.crossfit.estimate == recs["gap"].crossfit.estimate and old.record_version == 1
    p = tmp_path / "x.build.json"
    p.write_text(json.dumps({**data, "record_version": 99}))
    with pytest.raises(InputError, match=r"x.build.json: build record version 99 is newer"):
        BuildRecord.read(p)
    for bad, match in [({**data, "crossfit": {"fold_scores": 3}}, "crossfit"),
                       ({**data, "best_single": ["m0"]}, "best_single"), ({**data, "outputs": []}, "outputs"),
                       ([1, 2], "JSON object with a 'name'")]:
        p.write_text(json.dumps(bad))
        with pytest.raises(InputError, match=match):
            BuildRecord.read(p)


def test_cli_scheme_alias_and_renamed_param(built, tmp_path, capsys):
    run, _, _ = built
    argv = ["build", "--members", str(run["predictions"]), "--labels", str(run["labels"]), "--out", str(tmp_path),
            "--json"]
    # one directory names three members: a list's order would be the directory's, so weights go by name
    assert main(argv + ["--scheme", "uniform", "--param", 'member_weights={"m0": 1, "m1": 0, "m2": 1}']) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["scheme"] == "uniform" and rec["fitted"]["weights"] == {"m0": 0.5, "m1": 0.0, "m2": 0.5}
    assert rec["weights"] == rec["fitted"]["weights"]  # at the top level of --json too
    assert rec["record_path"] == str(tmp_path / "ens-uniform.build.json")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert main(argv + ["--weights", "uniform", "--param", 'weights={"m0": 1, "m1": 0, "m2": 1}',
                            "--name", "old"]) == 0
    assert json.loads(capsys.readouterr().out)["fitted"]["weights"] == rec["fitted"]["weights"]
    assert main(argv + ["--scheme", "uniform", "--param", "member_weights=[1,0,1]", "--name", "list"]) == 1
    assert "names several members (m0, m1, m2)" in capsys.readouterr().err


def test_stacker_verticals_from_a_vocabulary_file(tmp_path):
    cands, labels, _ = make_problem(n=200, seed=7)
    verticals = np.arange(50) % 4
    vocab = tmp_path / "vocabulary.csv"
    vocab.write_text("Index,Name,Vertical1\n" + "".join(f"{c},class {c},V{v}\n" for c, v in enumerate(verticals)))
    by_file = create_combiner("lr", verticals=str(vocab)).fit(cands, labels)
    by_array = create_combiner("lr", verticals=verticals).fit(cands, labels)
    np.testing.assert_array_equal(by_file.verticals_, verticals)
    np.testing.assert_array_equal(by_file.predict_scores(cands), by_array.predict_scores(cands))
    with pytest.raises(InputError, match="missing.csv: file not found"):
        create_combiner("lr", verticals=str(tmp_path / "missing.csv")).fit(cands, labels)
