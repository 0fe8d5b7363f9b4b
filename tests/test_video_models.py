"""Video-level architectures: shapes, gradients, and that each one learns a simple task."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from predictions.errors import InputError
from predictions.metrics import gap
from predictions.types import Labels, Predictions
from producers.datasets import VideoArrays, arrays_batches, video_loader
from producers.models.registry import create_model, get_entry, list_models
from producers.train import bce_loss, fit, predict

torch.set_num_threads(1)  # the test machine has 2 cores; more threads only contend

D, C = 32, 50
VIDEO_MODELS = ["chain", "hmoe", "lr", "lstm_translator", "mlp", "moe", "residualcnn"]
SMALL = {
    "mlp": dict(hidden_dim=64, dropout=0.0),
    "residualcnn": dict(signal_dim=64, stem_channels=8, stem_kernel=9, widths=[8, 8], depths=[2, 1], kernel=3),
    "lstm_translator": dict(hidden_size=32, embed_dim=16, max_steps=3, feature_steps=2),
    "chain": dict(num_groups=4, bottleneck=16),
    "hmoe": dict(num_verticals=5),
}
# GAP@20 on the held-out half of `_data` after 4 epochs (measured on CPU, seed 0); chance is 0.012.
MEASURED = {"chain": 0.844, "hmoe": 0.832, "lr": 0.288, "lstm_translator": 0.889, "mlp": 0.857,
            "moe": 0.645, "residualcnn": 0.641}


def _data(n: int, seed: int):
    """Each video: 1-2 labels; features = sum of the labels' fixed prototypes + unit noise."""
    rng = np.random.default_rng(seed)
    protos = np.random.default_rng(123).normal(size=(C, D)).astype(np.float32)
    labs = [rng.choice(C, size=k, replace=False) for k in rng.integers(1, 3, size=n)]
    X = np.stack([protos[l].sum(0) for l in labs]) + rng.normal(size=(n, D))
    return X.astype(np.float32), Labels.from_lists(np.arange(n).astype(str), labs, C)


def test_registry_lists_every_video_model():
    assert list_models("video") == VIDEO_MODELS
    for name in VIDEO_MODELS:
        assert get_entry(name).level == "video" and get_entry(name).doc


@pytest.mark.parametrize("name", VIDEO_MODELS)
def test_forward_backward_shapes(name):
    torch.manual_seed(0)
    model = create_model(name, input_dim=D, num_classes=C, **SMALL.get(name, {}))
    x = torch.randn(6, D)
    y = (torch.rand(6, C) < 0.1).float()
    p = model(x)
    assert p.shape == (6, C) and p.dtype == torch.float32
    assert torch.isfinite(p).all()  # logits
    loss = bce_loss(p, y)
    if hasattr(model, "auxiliary_loss"):
        loss = loss + model.auxiliary_loss(y)
    loss.backward()
    grads = [q.grad for q in model.parameters() if q.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    model.eval()
    with torch.no_grad():
        p1, p2 = model(x), model(x)
    assert torch.equal(p1, p2)  # inference is deterministic (no dropout / label injection)
    assert model(x[:1]).shape == (1, C)  # batch of one in eval mode (batch norm)


def test_default_sizes_build_for_youtube8m():
    with torch.device("meta"):  # what config validation does: no memory allocated
        sizes = {n: sum(p.numel() for p in create_model(n, input_dim=1152, num_classes=3862).parameters())
                 for n in VIDEO_MODELS}
    assert sizes["lr"] == 1152 * 3862 + 3862
    assert sizes["moe"] == 1152 * 3862 * 5 + 3862 * 5  # 3 gate + 2 expert units per class
    assert all(s > sizes["lr"] for n, s in sizes.items() if n != "lr")


def test_bad_options_raise_value_error():
    with pytest.raises(ValueError, match="pooling"):
        create_model("residualcnn", input_dim=D, num_classes=C, pooling="median")
    with pytest.raises(ValueError, match="verticals"):
        create_model("hmoe", input_dim=D, num_classes=C, verticals=[0, 1])
    with pytest.raises(ValueError, match="class_order"):
        create_model("chain", input_dim=D, num_classes=4, class_order=[0, 1, 1, 2])
    with pytest.raises(ValueError, match="beta"):
        create_model("lstm_translator", input_dim=D, num_classes=C, beta=1.5)


def test_chain_restores_class_order():
    torch.manual_seed(0)
    order = list(np.random.default_rng(0).permutation(C))
    model = create_model("chain", input_dim=D, num_classes=C, num_groups=3, class_order=order).eval()
    assert torch.equal(model.inverse[torch.as_tensor(order)], torch.arange(C))
    x = torch.randn(2, D)
    with torch.no_grad():
        p = model(x)
        first = model.heads[0](x)  # first group: the first len(group) classes of `order`
    assert torch.allclose(p[:, order[: first.shape[1]]], first)


def test_hmoe_vertical_targets():
    model = create_model("hmoe", input_dim=D, num_classes=6, verticals=[0, 0, 1, 1, 2, 2])
    model.train()
    model(torch.randn(2, D))
    y = torch.tensor([[1.0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0]])
    assert torch.equal((y @ model.membership > 0).float(), torch.tensor([[1.0, 0, 1], [0, 0, 0]]))
    assert model.auxiliary_loss(y).item() > 0


def test_lstm_translator_targets():
    model = create_model("lstm_translator", input_dim=D, num_classes=5, max_steps=3, feature_steps=2)
    y = torch.tensor([[0.0, 1, 0, 1, 1], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0]])
    # labels in class-id order, cut to steps - 1, end token (5), then ignored (-1)
    assert model._targets(y, 3).tolist() == [[1, 3, 5], [2, 5, -1], [5, -1, -1]]
    assert model._targets(y, 4).tolist() == [[1, 3, 4, 5], [2, 5, -1, -1], [5, -1, -1, -1]]


def test_lstm_translator_structure_at_paper_sizes():
    """Yoo et al.: 2 BN-LSTM layers, video vector + previous word at every step, BN before the word loss."""
    with torch.device("meta"):
        m = create_model("lstm_translator", input_dim=1152, num_classes=3862)
    assert len(m.cells) == 2 and m.beta == 0.0
    assert m.cells[0].wx.in_features == 2 * 256 and m.cells[1].wx.in_features == 512  # [video, word] then h
    assert m.cells[0].wx.out_features == 4 * 512 and len(m.cells[0].bnx) == m.max_steps  # BN stats per step
    assert m.embed.weight.shape == (3862 + 2, 256) and m.words.out_features == 3862 + 1  # + begin, end
    assert len(m.word_bn) == m.max_steps and m.word_bn[0].num_features == 3863
    assert m.head.classifier.experts.in_features == 1152 + 512


def test_lstm_translator_word_loss_continues_the_decode():
    torch.manual_seed(0)
    m = create_model("lstm_translator", input_dim=D, num_classes=C, hidden_size=16, embed_dim=8, max_steps=6,
                     feature_steps=2).train()
    x, y = torch.randn(5, D), torch.zeros(5, C)
    y[0, :4] = 1  # 4 labels + end: 5 steps, more than the 2 feature steps of the forward pass
    m(x)
    loss = m.auxiliary_loss(y)
    start = m._stash[0]
    logits, _, _ = m._decode(start, 0, 5)  # one uninterrupted decode gives the same words
    targets = m._targets(y, 5)
    onehot = F.one_hot(targets.clamp(min=0), C + 1).float()
    ref = (F.binary_cross_entropy_with_logits(logits, onehot, reduction="none").sum(-1) * (targets >= 0)).sum() / 5
    torch.testing.assert_close(loss, ref)


def test_residualcnn_structure_at_paper_sizes():
    """Garg's ResidualCNN-X: FC to X, 49-wide 64-channel stem, modules of 3,3,2,2 kernel-9 convs, dilations 1,3,5."""
    with torch.device("meta"):
        m = create_model("residualcnn", input_dim=1152, num_classes=3862)
    assert m.project[0].out_features == 1024 and m.stem[0].weight.shape == (64, 1, 49)
    widths = [blk.project[0].out_channels for blk in m.blocks]
    assert widths == [64, 128, 256, 512] and [blk.project[0].kernel_size for blk in m.blocks] == [(1,)] * 4
    assert [len(blk.convs) for blk in m.blocks] == [3, 3, 2, 2]
    assert [[c[0].dilation[0] for c in blk.convs] for blk in m.blocks] == [[1, 3, 5], [1, 3, 5], [1, 3], [1, 3]]
    assert all(c[0].kernel_size == (9,) and isinstance(c[1], torch.nn.BatchNorm1d) and isinstance(c[2], torch.nn.ReLU)
               for blk in m.blocks for c in blk.convs)
    assert m.head.classifier.experts.in_features == 1024  # channels pooled into the X-vector
    x = torch.randn(2, 1152)
    small = create_model("residualcnn", input_dim=1152, num_classes=7, signal_dim=32, stem_channels=4,
                         widths=[4, 8], depths=[1, 1]).eval()
    assert small(x).shape == (2, 7)


@pytest.mark.parametrize("name", VIDEO_MODELS)
def test_learns_simple_task(name):
    X, L = _data(800, 0)
    Xt, Lt = _data(400, 1)
    torch.manual_seed(0)
    model = create_model(name, input_dim=D, num_classes=C, **SMALL.get(name, {}))
    fit(model, video_loader(VideoArrays(X, L), 64, shuffle=True), None, epochs=4, lr=1e-2, seed=0,
        device="cpu")
    ids, probs = zip(*predict(model, arrays_batches(Xt, Lt.ids, 256), "cpu"))
    g = gap(Predictions.from_dense(np.concatenate(ids), np.concatenate(probs), k=20), Lt)
    assert g > 0.7 * MEASURED[name] and g > 0.2, g


def test_hmoe_and_chain_read_a_vocabulary_file(tmp_path):
    vocab = tmp_path / "vocabulary.csv"
    rows = [(0, 40, "a", "Games"), (1, 90, "b", "Autos"), (2, 10, "c", "Games"), (3, 70, "d", "Food")]
    vocab.write_text("Index,TrainVideoCount,Name,Vertical1\n" + "".join(f"{i},{n},{a},{v}\n" for i, n, a, v in rows))
    hmoe = create_model("hmoe", input_dim=D, num_classes=4, verticals=str(vocab))
    # verticals numbered by sorted name: Autos 0, Food 1, Games 2
    assert hmoe.membership.argmax(1).tolist() == [2, 0, 2, 1]
    chain = create_model("chain", input_dim=D, num_classes=4, num_groups=2, class_order=str(vocab))
    assert torch.cat([chain.inverse.argsort()]).tolist() == [1, 3, 0, 2]  # by decreasing TrainVideoCount
    with pytest.raises(InputError, match="lists 4 classes, expected 5"):
        create_model("hmoe", input_dim=D, num_classes=5, verticals=str(vocab))


def test_hmoe_config_names_the_real_vocabulary(tmp_path):
    from producers.config import build_model, load_config

    real = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "yt8m-vocabulary" / "vocabulary_2018_3862.csv"
    if not real.exists():
        pytest.skip(f"real vocabulary not found at {real} (../shared/data is absent)")
    cfg = Path(__file__).resolve().parents[1] / "configs" / "real" / "hmoe.toml"
    model = build_model(load_config(cfg), device="meta")
    assert model.model.membership.shape == (3862, 25)  # the 25 Vertical1 groups of the 2018 vocabulary
