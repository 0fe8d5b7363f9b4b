"""Frame-level models (producers.models.frame): contract, masking, gradients, learnability."""
import pytest
import torch
import torch.nn.functional as F

from predictions.errors import InputError
from producers.models import frame
from producers.models.registry import create_model, list_models

FRAME_MODELS = ["dbof", "lstm", "bilstm", "bigru", "attention_lstm", "multi_attention", "maxpool_bilstm",
                "random_bilstm", "hier_bilstm", "ln_lstm", "late_fusion", "residual_lstm",
                "stacked_bilstm_pool", "three_point_attention"]
D, C = 24, 4  # 16 "rgb" + 8 "audio" features, 4 classes



@pytest.fixture(autouse=True)
def one_thread():
    """Tiny recurrent models gain nothing from intra-op threads and slow down badly on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# small widths so the CPU tests run fast
SMALL = {
    "dbof": dict(cluster_size=32, hidden_size=32),
    "attention_lstm": dict(hidden_size=16, attention_dim=16),
    "multi_attention": dict(hidden_size=16, num_verticals=4, attention_dim=16, bottleneck=32),
    "late_fusion": dict(hidden_size=16, audio_hidden_size=8, audio_dim=8),
    "hier_bilstm": dict(hidden_size=16, chunk_size=4),
}


def small(name, **extra):
    torch.manual_seed(0)
    return create_model(name, input_dim=D, num_classes=C, **{**SMALL.get(name, dict(hidden_size=16)), **extra})


def test_registry_lists_every_frame_model():
    assert set(list_models("frame")) == set(FRAME_MODELS)
    with pytest.raises(InputError, match="no option"):
        create_model("lstm", input_dim=D, num_classes=C, hiden_size=3)


# ----------------------------------------------------------------------------- shared pieces
def test_masked_pooling_and_last_state_by_hand():
    h = torch.tensor([[[1.0, -1.0], [3.0, 5.0], [100.0, 100.0]],
                      [[2.0, 0.0], [-7.0, 7.0], [9.0, -9.0]]])
    lengths = torch.tensor([2, 3])
    mask = frame.lengths_mask(lengths, 3)
    assert mask.tolist() == [[True, True, False], [True, True, True]]
    torch.testing.assert_close(frame.masked_mean(h, mask), torch.tensor([[2.0, 2.0], [4.0 / 3, -2.0 / 3]]))
    assert frame.masked_max(h, mask).tolist() == [[3.0, 5.0], [9.0, 7.0]]
    # uni: output at length - 1; bi: forward half at length - 1, backward half at frame 0
    assert frame.last_valid(h, lengths, False).tolist() == [[3.0, 5.0], [9.0, -9.0]]
    assert frame.last_valid(h, lengths, True).tolist() == [[3.0, -1.0], [9.0, 0.0]]
    assert frame.ceil_div(torch.tensor([1, 3, 4, 7]), 3).tolist() == [1, 1, 2, 3]


def test_attention_pool_ignores_padding_and_sums_to_one():
    torch.manual_seed(0)
    pool = frame.AttentionPool(2, num_queries=3, attention_dim=4)
    h = torch.randn(2, 5, 2)
    mask = frame.lengths_mask(torch.tensor([5, 2]), 5)
    w = pool.weights(h, mask)
    assert w.shape == (2, 5, 3)
    torch.testing.assert_close(w.sum(1), torch.ones(2, 3))
    assert w[1, 2:].abs().max() == 0
    out = pool(h, mask)
    assert out.shape == (2, 6)
    torch.testing.assert_close(out[1, :2], (w[1, :2, 0:1] * h[1, :2]).sum(0))


def test_three_point_positions_by_hand():
    got = frame.ThreePointAttention.positions(torch.tensor([1, 2, 3, 6, 7]))
    assert [p.tolist() for p in got] == [[0, 0, 0, 1, 2], [0, 1, 1, 3, 4], [0, 1, 2, 5, 6]]


def test_random_frame_sampling():
    m = small("random_bilstm").eval()
    lengths = torch.tensor([12, 3])
    # eval: middle frame of each group of 5 (of the valid frames of a partial group)
    assert m.sample_indices(lengths, 12).tolist() == [[2, 7, 11], [1, 5, 10]]
    m.train()
    torch.manual_seed(1)
    seen = set()
    for _ in range(50):
        idx = m.sample_indices(lengths, 12)
        assert ((idx[0] >= torch.tensor([0, 5, 10])) & (idx[0] <= torch.tensor([4, 9, 11]))).all()
        assert 0 <= idx[1, 0] <= 2
        seen.add(int(idx[0, 0]))
    assert seen == {0, 1, 2, 3, 4}


def test_validation_errors():
    with pytest.raises(InputError, match="audio_dim"):
        create_model("late_fusion", input_dim=D, num_classes=C, audio_dim=D)
    with pytest.raises(InputError, match="head"):
        create_model("lstm", input_dim=D, num_classes=C, head="svm")
    with pytest.raises(InputError, match="pool_window"):
        create_model("maxpool_bilstm", input_dim=D, num_classes=C, pool_window=1)
    m = small("lstm")
    with pytest.raises(InputError, match=r"\(B, T, 24\)"):
        m(torch.zeros(2, 3, 5), torch.tensor([1, 1]))
    with pytest.raises(InputError, match="lengths must lie in"):
        m(torch.zeros(2, 3, D), torch.tensor([0, 3]))
    with pytest.raises(InputError, match="lengths must lie in"):
        m(torch.zeros(2, 3, D), torch.tensor([4, 3]))


# ----------------------------------------------------------------------------- every model
@pytest.mark.parametrize("name", FRAME_MODELS)
def test_forward_backward_padding_invariance(name):
    m = small(name)
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([10, 7, 3, 1])
    x = torch.randn(4, 12, D, generator=g)
    p = m(x, lengths)
    assert p.shape == (4, C) and p.dtype == torch.float32 and torch.isfinite(p).all()  # logits
    F.logsigmoid(p).sum().backward()
    for pname, param in m.named_parameters():
        assert param.grad is not None, f"{name}: no gradient for {pname}"
        assert torch.isfinite(param.grad).all(), pname
        assert param.grad.abs().max() > 0, f"{name}: zero gradient for {pname}"

    m.eval()
    with torch.no_grad():
        ref = m(x, lengths)
        x2 = x.clone()
        x2[0, 10:] = 50.0
        x2[1, 7:] = torch.randn(5, D, generator=g) * 10
        x2[2, 3:] = float("nan")
        x2[3, 1:] = -3.0
        torch.testing.assert_close(m(x2, lengths), ref, rtol=0, atol=1e-6)
        # trailing padding columns change nothing either; no lengths = all frames valid
        torch.testing.assert_close(m(torch.cat([x, x[:, :4]], 1), lengths), ref, rtol=0, atol=1e-6)
        torch.testing.assert_close(m(x[:1, :10]), ref[:1], rtol=0, atol=1e-6)
        assert not torch.allclose(ref[0], ref[1])  # rows differ: the input matters


def test_head_options():
    for opts in (dict(head="lr"), dict(num_experts=3, context_gating=True, dropout=0.5)):
        m = small("lstm", **opts)
        p = m(torch.randn(4, 6, D), torch.tensor([6, 5, 2, 1]))
        assert p.shape == (4, C) and torch.isfinite(p).all()


# ----------------------------------------------------------------------------- learnability
def sequence_task(n, seed, amp, num_classes=C, t=15):
    """Noise frames N(0, 1); 5 consecutive frames at a random valid place carry amp * prototype[class]."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.randn(num_classes, D, generator=torch.Generator().manual_seed(123))
    y = torch.randint(0, num_classes, (n,), generator=g)
    lengths = torch.randint(5, t + 1, (n,), generator=g)
    x = torch.randn(n, t, D, generator=g)
    start = (torch.rand(n, generator=g) * (lengths - 4)).long()
    frames = torch.arange(t)[None]
    informative = (frames >= start[:, None]) & (frames < start[:, None] + 5)
    return x + amp * informative[..., None] * protos[y][:, None, :], lengths, y


def train_and_score(name, steps, amp, num_classes=C):
    """Train with Adam on BCE(one-hot) and return held-out hit@1."""
    torch.manual_seed(0)
    m = create_model(name, input_dim=D, num_classes=num_classes, **SMALL.get(name, dict(hidden_size=16)))
    xtr, ltr, ytr = sequence_task(512, 0, amp, num_classes)
    xte, lte, yte = sequence_task(256, 1, amp, num_classes)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        i = torch.randint(0, len(ytr), (32,), generator=g)
        loss = F.binary_cross_entropy_with_logits(m(xtr[i], ltr[i]), F.one_hot(ytr[i], num_classes).float())
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    with torch.no_grad():
        return float((m(xte, lte).argmax(1) == yte).float().mean())


@pytest.mark.parametrize("name", FRAME_MODELS)
def test_learnability_quick(name):
    # 4 classes (chance 0.25), 50 steps; measured 0.93 (random_bilstm) to 1.00
    acc = train_and_score(name, steps=50, amp=0.8)
    print(f"{name}: hit@1 {acc:.3f}")
    assert acc >= 0.8


@pytest.mark.slow
@pytest.mark.parametrize("name", FRAME_MODELS)
def test_learnability_harder(name):
    # 16 classes (chance 0.0625), weaker signal, 300 steps; measured 0.61 (lstm) to 0.84
    # (multi_attention); random_bilstm sees 1 of the 5 informative frames: measured 0.43
    acc = train_and_score(name, steps=300, amp=0.5, num_classes=16)
    print(f"{name}: hit@1 {acc:.3f}")
    assert acc >= (0.3 if name == "random_bilstm" else 0.5)
