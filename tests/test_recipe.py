"""The training recipe every producer gets: logit heads, input norms, prior offset, schedules, clipping, search."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from predictions.errors import InputError
from producers.cli import main
from producers.config import config_from_dict, load_config
from producers.datasets import VideoArrays, video_loader
from producers.models.heads import MoEHead, OutputGating, log1mexp
from producers.models.producer import InputNorm, Producer
from producers.models.registry import create_model
from producers.schedule import LRSchedule
from producers.train import Recipe, bce_loss, fit

torch.set_num_threads(1)


# --------------------------------------------------------------------------- heads in log space

def test_moe_logits_are_the_log_odds_of_the_mixture_and_stay_finite():
    torch.manual_seed(0)
    head = MoEHead(8, 5, num_experts=3)
    x = torch.randn(4, 8)
    gates = torch.softmax(head.gate(x).view(4, 5, 4), -1)
    p = (gates[..., :3] * torch.sigmoid(head.experts(x).view(4, 5, 3))).sum(-1)
    torch.testing.assert_close(torch.sigmoid(head(x)), p, rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # saturate: p within 1e-30 of 0; a clamped probability would lose the gradient
        head.experts.bias.fill_(-80.0)
    z = head(x)
    assert torch.isfinite(z).all() and float(z.detach().max()) < -70
    bce_loss(z, torch.ones(4, 5)).backward()
    assert float(head.experts.bias.grad.abs().sum()) > 0


def test_output_gating_matches_gated_probabilities():
    torch.manual_seed(0)
    g = OutputGating(6).eval()
    z = torch.randn(3, 6) * 4
    p = torch.sigmoid(z)
    expected = p * torch.sigmoid(g.bn(g.fc(p)))
    torch.testing.assert_close(torch.sigmoid(g(z)), expected, rtol=1e-5, atol=1e-6)
    a = np.array([-1e-8, -0.1, -5.0, -50.0])
    exact = np.where(a > -0.5, np.log(-np.expm1(a)), np.log1p(-np.exp(a)))  # float64, each in its exact regime
    np.testing.assert_allclose(log1mexp(torch.tensor(a, dtype=torch.float32)).numpy(), exact, rtol=1e-4)


def test_bce_loss_equals_bce_of_probabilities():
    z, y = torch.randn(5, 7), (torch.rand(5, 7) < 0.3).float()
    ref = F.binary_cross_entropy(torch.sigmoid(z), y, reduction="sum") / 5
    torch.testing.assert_close(bce_loss(z, y), ref, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- producer wrapper

def test_input_norms():
    x = torch.randn(64, 6) * 3 + 1
    l2 = InputNorm(6, "l2")(x)
    torch.testing.assert_close(l2.norm(dim=1), torch.ones(64))
    st = InputNorm(6, "standardize")
    st.fit_stats(x.numpy())
    out = st(x)
    torch.testing.assert_close(out.mean(0), torch.zeros(6), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std(0, unbiased=False), torch.ones(6), atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="input_norm"):
        InputNorm(6, "whiten")


def test_feature_selection_sees_only_its_modality():
    """features = "audio": the model reads the last 128 columns only (rgb changes nothing); "rgb" the first 1024."""
    torch.manual_seed(0)
    x = torch.randn(4, 1152)
    for features, width, cols in (("audio", 128, slice(0, 1024)), ("rgb", 1024, slice(1024, 1152))):
        p = Producer(create_model("mlp", input_dim=width, num_classes=7, hidden_dim=8), 1152, 7,
                     input_norm="standardize", features=features).eval()
        p.fit_stats(x.numpy())
        assert p.norm.mean.shape == (width,)
        other = x.clone()
        other[:, cols] = torch.randn(4, cols.stop - cols.start)  # the other modality changes
        torch.testing.assert_close(p(x), p(other))
        moved = x.clone()
        moved[:, p.cols] += 1.0
        assert not torch.allclose(p(x), p(moved))


def test_frame_batchnorm_ignores_padding():
    bn = InputNorm(4, "batchnorm").train()
    x, lengths = torch.randn(3, 5, 4), torch.tensor([5, 2, 1])
    y1 = bn(x, lengths)
    x2 = x.clone()
    x2[1, 2:], x2[2, 1:] = 1e6, float("nan")
    bn2 = InputNorm(4, "batchnorm").train()
    torch.testing.assert_close(bn2(x2, lengths), y1)  # same batch statistics: padding never counts
    assert float(y1[1, 2:].detach().abs().sum()) == 0.0


def test_prior_offset_starts_training_at_the_class_prior():
    torch.manual_seed(0)
    freq = np.array([0.5, 0.1, 0.0, 0.001])
    model = Producer(create_model("lr", input_dim=3, num_classes=4), 3, 4, output_prior=True)
    with torch.no_grad():
        model.model.head.classifier.linear.weight.zero_()
        model.model.head.classifier.linear.bias.zero_()
    model.set_prior(freq, n_videos=100)
    p = torch.sigmoid(model(torch.randn(2, 3)))[0].detach().numpy()
    np.testing.assert_allclose(p, [0.5, 0.1, 0.005, 0.005], rtol=1e-5)  # unseen: 1 / (2n)
    assert set(model.state_dict()) >= {"prior_logit", "model.head.classifier.linear.weight"}


# --------------------------------------------------------------------------- schedule and recipe

def test_lr_schedule_counts_examples_or_epochs():
    per_epoch = LRSchedule(0.1, "exponential", decay=0.5)
    assert per_epoch(10_000, 0) == 0.1 and per_epoch(0, 2) == pytest.approx(0.025)
    staircase = LRSchedule(0.1, "exponential", decay=0.5, decay_examples=1000)
    assert staircase(999, 5) == 0.1 and staircase(1000, 0) == 0.05 and staircase(2500, 0) == pytest.approx(0.025)
    warm = LRSchedule(0.1, "constant", warmup_examples=99)
    assert warm(0, 0) == pytest.approx(0.001) and warm(49, 0) == pytest.approx(0.05) and warm(99, 0) == 0.1
    cos = LRSchedule(0.1, "cosine", total_examples=100, min_ratio=0.1)
    assert cos(0, 0) == pytest.approx(0.1) and cos(50, 0) == pytest.approx(0.055) and cos(100, 0) == pytest.approx(0.01)
    for bad in (dict(lr=math.nan), dict(lr=0.1, kind="linear"), dict(lr=0.1, decay=0.0),
                dict(lr=0.1, kind="cosine")):
        with pytest.raises(ValueError):
            LRSchedule(**bad)


def _toy(n=200, d=6, c=5, seed=0):
    from predictions.types import Labels

    rng = np.random.default_rng(seed)
    w = rng.normal(size=(d, c))
    X = rng.normal(size=(n, d)).astype(np.float32)
    top = np.argsort(-(X @ w), axis=1)[:, :2]
    return X, Labels.from_lists(np.arange(n).astype(str), top, c)


def test_fit_applies_schedule_clipping_and_smoothing(tmp_path):
    X, L = _toy()
    lrs = []

    class Spy(torch.optim.Adam):
        def step(self, closure=None):
            lrs.append(self.param_groups[0]["lr"])
            grad = torch.cat([p.grad.flatten() for g in self.param_groups for p in g["params"]])
            norms.append(float(grad.norm()))
            return super().step(closure)

    norms: list[float] = []
    model = create_model("lr", input_dim=6, num_classes=5)
    loader = video_loader(VideoArrays(X, L), 50, shuffle=True)
    orig = torch.optim.Adam
    torch.optim.Adam = Spy
    try:
        h = fit(model, loader, None, epochs=2, lr=0.1, lr_schedule="exponential", lr_decay=0.5,
                decay_examples=100, warmup_examples=50, clip_grad_norm=0.01, label_smoothing=0.1,
                device="cpu", checkpoint_dir=tmp_path)
    finally:
        torch.optim.Adam = orig
    assert h.epochs == [1, 2]
    expected = [LRSchedule(0.1, decay=0.5, decay_examples=100, warmup_examples=50)(50 * i, 0) for i in range(8)]
    assert lrs == pytest.approx(expected)
    assert max(norms) <= 0.01 + 1e-6  # clipped before every step
    assert torch.load(tmp_path / "epoch-0002.pt", weights_only=True)["examples"] == 400


@pytest.mark.parametrize("option, message", [
    (dict(lr=float("nan")), "lr must be a finite"),
    (dict(epochs=0), "epochs must be"),
    (dict(optimizer="sgd"), "optimizer"),
    (dict(clip_grad_norm=-1.0), "clip_grad_norm"),
    (dict(label_smoothing=1.0), "label_smoothing"),
    (dict(lr_schedule="cosine", lr_decay=2.0), "lr_decay"),
])
def test_bad_recipe_is_one_input_error(option, message):
    X, L = _toy(20)
    with pytest.raises(InputError, match=message):
        fit(create_model("lr", input_dim=6, num_classes=5), video_loader(VideoArrays(X, L), 10), None,
            device="cpu", **option)


MINIMAL = """
[model]
name = "mlp"
input_norm = "l2"
output_prior = true
[model.hparams]
hidden_dim = 16
[data]
train = "data/video/train-*.tfrecord"
num_classes = 30
"""


@pytest.mark.parametrize("extra, message", [
    ('[train]\nlr = nan\n', r"\[train\] lr must be a finite"),
    ('[train]\nlr_schedule = "step"\n', r"\[train\] lr_schedule"),
    ('[train]\nweight_decay = -1\n', r"\[train\] weight_decay"),
    ('[search]\nstrategy = "bayes"\n[search.train]\nlr = [1]\n', "strategy"),
    ('[search]\n[search.train]\nlr = {min = 0.1, max = 0.01}\n', "min = a"),
    ('[search]\n[search.train]\nlr = {min = 0.001, max = 0.01}\n', "ranges need strategy"),
    ('[search]\n[search.trian]\nlr = [0.1]\n', "trian"),
    ('[search]\ntrials = 0\n[search.train]\nlr = [0.1]\n', "trials"),
    ('[search]\n[search.train]\nlr = [-1.0, 0.1]\n', r"trial 0 \(lr=-1\).*lr must be"),
    ('[search]\n[search.model.hparams]\nhidden = [8, 16]\n', r"trial 0.*no option"),
])
def test_recipe_and_search_config_errors(tmp_path, extra, message):
    from producers.search import trial_configs

    path = tmp_path / "bad.toml"
    path.write_text(MINIMAL.replace("input_norm", "# input_norm") + extra, encoding="utf-8")
    with pytest.raises(InputError, match=message) as err:
        trial_configs(load_config(path))
    assert "\n" not in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize("features, level, message", [
    ("video", "video", r"\[model\] features must be one of all, rgb, audio"),
    ("rgb", "frame", r"\[model\] features applies to video-level models"),
])
def test_feature_selection_config_errors(tmp_path, features, level, message):
    path = tmp_path / "bad.toml"
    model = "mlp" if level == "video" else "dbof"
    path.write_text(MINIMAL.replace('name = "mlp"', f'name = "{model}"\nfeatures = "{features}"')
                    .replace("hidden_dim = 16", ""), encoding="utf-8")
    with pytest.raises(InputError, match=message):
        load_config(path)


def test_search_space_overrides_are_deterministic():
    from producers.search_space import parse_search

    grid = parse_search({"train": {"lr": [0.1, 0.01]}, "model": {"hparams": {"hidden_dim": [8, 16, 32]}}}, "x")
    ov = grid.overrides()
    assert len(ov) == 6 and ov[0] == {"model.hparams.hidden_dim": 8, "train.lr": 0.1}
    some = parse_search({"trials": 3, "seed": 1, "train": {"lr": [0.1, 0.01], "epochs": [1, 2, 3]}}, "x")
    assert len(some.overrides()) == 3 and some.overrides() == some.overrides()
    rnd = parse_search({"strategy": "random", "trials": 20,
                        "train": {"lr": {"min": 1e-4, "max": 1e-2, "log": True}, "epochs": {"min": 2, "max": 9}}}, "x")
    vals = rnd.overrides()
    assert len(vals) == 20 and all(1e-4 <= v["train.lr"] <= 1e-2 and isinstance(v["train.epochs"], int)
                                   and 2 <= v["train.epochs"] <= 9 for v in vals)


SEARCH_JOB = """
[model]
name = "mlp"
input_norm = "l2"
output_prior = true
[model.hparams]
dropout = 0.0
[data]
train = "data/video/train-*.tfrecord"
num_classes = 30
[split]
heldout = 40
eval = 20
dev_fraction = 0.2
[train]
epochs = 2
batch_size = 32
lr = 0.01
[predict]
top_k = 10
splits = ["heldout"]
[search]
[search.model.hparams]
hidden_dim = [4, 48]
[search.train]
lr = [0.0001, 0.01]
"""


def test_search_trains_trials_picks_best_dev_and_predict_uses_it(tmp_path, capsys):
    from predictions.store import open_store

    assert main(["generate", str(tmp_path / "data"), "--videos", "300", "--test-videos", "0", "--classes", "30",
                 "--shards", "2", "--quiet"]) == 0
    cfg = tmp_path / "job.toml"
    cfg.write_text(SEARCH_JOB, encoding="utf-8")
    assert main(["search", str(cfg), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    rows = res["trials"]
    assert len(rows) == 4 and res["best"]["dev_gap"] == max(r["dev_gap"] for r in rows)
    assert res["best"]["overrides"] == {"model.hparams.hidden_dim": 48, "train.lr": 0.01}  # the only sane one
    job = tmp_path / "runs" / "mlp"
    assert (job / "search" / "trials.tsv").read_text().count("\n") == 5
    assert json.loads((job / "config.json").read_text())["model"]["hparams"]["hidden_dim"] == 48
    mtimes = [p.stat().st_mtime_ns for p in sorted((job / "search").glob("trial-*/checkpoints/best.pt"))]
    assert main(["search", str(cfg), "--quiet"]) == 0  # resumes: every trial is done, nothing retrained
    assert [p.stat().st_mtime_ns for p in sorted((job / "search").glob("trial-*/checkpoints/best.pt"))] == mtimes
    assert main(["predict", str(cfg), "--quiet"]) == 0  # builds the best trial's 48-wide model
    with open_store(tmp_path / "runs" / "predictions" / "mlp.heldout.full.h5") as s:
        assert s.meta.config["model"]["hparams"]["hidden_dim"] == 48 and len(s) == 40


def test_missing_device_and_failed_run_leave_nothing(tmp_path, capsys):
    """device = "cuda:7" on this machine, and a run whose data is missing: one line each, no files left."""
    if torch.cuda.is_available() and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    cfg = tmp_path / "job.toml"
    cfg.write_text(MINIMAL + '[train]\ndevice = "cuda:7"\n', encoding="utf-8")
    assert main(["train", str(cfg), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cuda:7" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()
    cfg.write_text(MINIMAL, encoding="utf-8")  # valid config, but no shards match data/video/train-*
    assert main(["train", str(cfg), "--quiet"]) == 1
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "runs").exists()  # no stray run dir, config.json or train.log


def test_out_of_fold_and_distill_examples_load():
    """configs/oof (a `[train] folds` job) and configs/distill (a `[distill]` job) are valid jobs."""
    repo = Path(__file__).resolve().parents[1] / "configs"
    oof = load_config(repo / "oof" / "mlp.toml")
    assert oof.train.folds == 5 and oof.train.pool == ["train", "heldout"] and oof.predict.fold_eval == "mean"
    student = load_config(repo / "distill" / "mlp_student.toml")
    assert student.distill is not None and student.distill.teacher[0].endswith(".oof.full.h5")
    assert student.train.folds == 0
