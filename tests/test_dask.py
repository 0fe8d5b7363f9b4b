"""The Dask path (`ensemble build --scheduler`) gives the same ensembles as the single-process path."""
from __future__ import annotations

import pytest

from ensembler.build import build
from predictions import metrics
from predictions.store import open_store, read_store

from .ensemble_fixtures import write_members

distributed = pytest.importorskip("dask.distributed", reason="dask.distributed not installed (extra [dask])")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return write_members(tmp_path_factory.mktemp("dask"), crops={"frame": 2})


def _build(run, out, scheme, client, **kw):
    return build([str(run["predictions"])], scheme=scheme, labels=[str(run["labels"])], out=out,
                 chunk_rows=64, progress=False, log=lambda *_: None, client=client, **kw)


@pytest.mark.parametrize("scheme", ["uniform", "optimized"])
def test_chunked_work_on_dask_equals_single_process(run, tmp_path, client, scheme):
    params = {"params": {"method": "surrogate"}} if scheme == "optimized" else {}
    local = _build(run, tmp_path / "local", scheme, None, **params)
    dist = _build(run, tmp_path / "dask", scheme, client, **params)
    assert len(client.scheduler_info()["workers"]) == 2
    for split in ("heldout", "eval", "test"):
        a, b = open_store(local.outputs[split]), open_store(dist.outputs[split])
        assert a.meta.n > 0 and a.meta.checksum == b.meta.checksum, split


@pytest.mark.slow
def test_xgboost_trains_through_dask(run, tmp_path, client):
    params = {"n_estimators": 30, "max_depth": 3}
    local = _build(run, tmp_path / "local", "xgboost", None, params=params, n_folds=2)
    dist = _build(run, tmp_path / "dask", "xgboost", client, params=params, n_folds=2)
    truth = run["truth"]["eval"]
    gaps = []
    for rec in (local, dist):
        pred = read_store(rec.outputs["eval"])
        gaps.append(metrics.gap(pred, truth.reindex(pred.ids)))
    # Distributed histogram building differs slightly from the single-process one, so the
    # trees may differ; the held-out quality must not.
    assert gaps[1] == pytest.approx(gaps[0], abs=0.02)
    assert gaps[1] > max(r["gap"] for r in dist.scores["eval"]["members"])


def test_evaluate_on_dask_equals_single_process(run, client):
    from ensembler.evaluate import evaluate_members
    from ensembler.members import discover
    members = discover([str(run["predictions"])])["eval"]
    truth = run["truth"]["eval"]
    local = evaluate_members(members, truth, chunk_rows=64)
    dist = evaluate_members(members, truth, chunk_rows=64, client=client)
    assert local == dist and len(local) == len(members)
