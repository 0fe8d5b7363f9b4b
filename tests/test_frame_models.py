"""Frame-level models (producers.models.frame): contract, masking, gradients, learnability."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from predictions.errors import InputError
from producers.models import frame, pooling
from producers.models.registry import create_model, get_entry, list_models

FRAME_MODELS = ["frame_logistic", "dbof", "lstm", "bilstm", "bigru", "residual_lstm", "stacked_bilstm_pool",
                "attention_bigru", "multi_attention", "split_attention", "maxpool_bilstm", "random_bilstm",
                "hier_bilstm", "ln_lstm", "three_point_attention", "late_fusion", "netvlad", "netrvlad", "netfv",
                "soft_dbof", "gated_dbof", "two_stream"]
D, C = 24, 4  # 16 "rgb" + 8 "audio" features, 4 classes


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny recurrent models gain nothing from intra-op threads and slow down badly on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# small widths so the CPU tests run fast
POOLING = dict(cluster_size=8, audio_cluster_size=4, hidden_size=32, audio_dim=8)
SMALL = {
    "frame_logistic": {},
    "dbof": dict(cluster_size=32, hidden_size=32),
    "multi_attention": dict(hidden_size=16, num_verticals=2),
    "split_attention": dict(hidden_size=16, audio_hidden_size=8, audio_dim=8),
    "random_bilstm": dict(hidden_size=16, num_layers=2),
    "hier_bilstm": dict(hidden_size=16, chunk_size=4),
    "late_fusion": dict(hidden_size=16, audio_hidden_size=8, audio_dim=8),
    "two_stream": dict(rgb_options={"hidden_size": 16}, audio_options={"hidden_size": 8}, audio_dim=8),
    "netvlad": POOLING, "netrvlad": POOLING, "netfv": POOLING,
    "soft_dbof": dict(POOLING, cluster_size=16, audio_cluster_size=8),
    "gated_dbof": dict(POOLING, cluster_size=16, audio_cluster_size=8),
}
HEADS = ["lr", "moe", "hmoe", "chain"]  # the registered video-level heads every frame encoder takes


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


def test_attention_pool_without_projection_is_tangs_equations():
    """Tang et al. 2017 eq. 7-10 (= Garg 2018 eq. 8-10): M = tanh(H), alpha = softmax(w^T M), x = tanh(H alpha^T)."""
    torch.manual_seed(0)
    pool = frame.AttentionPool(3)
    assert [p.shape for p in pool.parameters()] == [(1, 3)]  # one query of the hidden width, no projection
    h = torch.randn(2, 4, 3)
    mask = frame.lengths_mask(torch.tensor([4, 2]), 4)
    w = pool.queries.detach()[0]
    for b, n in ((0, 4), (1, 2)):
        alpha = torch.softmax(torch.tanh(h[b, :n]) @ w, dim=0)
        torch.testing.assert_close(pool(h, mask)[b], torch.tanh((alpha[:, None] * h[b, :n]).sum(0)))


def test_vertical_attention_is_bilinear_through_a_diagonal():
    """Tang et al. 2017 eq. 12-14: e_ij = h_j A b_i (A diagonal), alpha = softmax_j, x_i = sum_j alpha_ij h_j."""
    torch.manual_seed(0)
    att = frame.VerticalAttention(3, 2)
    with torch.no_grad():
        att.diagonal.copy_(torch.tensor([1.0, 2.0, -1.0]))
    h = torch.randn(1, 5, 3)
    mask = frame.lengths_mask(torch.tensor([3]), 5)
    A, B = torch.diag(att.diagonal.detach()), att.queries.detach()
    for i in range(2):
        alpha = torch.softmax(h[0, :3] @ A @ B[i], dim=0)
        torch.testing.assert_close(att(h, mask)[0, i], (alpha[:, None] * h[0, :3]).sum(0))


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
    with pytest.raises(InputError, match="head must be one of"):
        small("multi_attention", head="hmoe")  # its per-vertical heads are the model


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("name", [n for n in FRAME_MODELS if n != "multi_attention"])
def test_every_encoder_takes_every_video_head(name, head):
    m = small(name, head=head, head_options={"num_verticals": 2} if head == "hmoe" else None)
    assert m.head.__class__ is get_entry(head).cls
    y = torch.tensor([[1.0, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 0], [1, 1, 0, 0]])
    z = m(torch.randn(4, 6, D), torch.tensor([6, 5, 2, 1]))
    assert z.shape == (4, C) and torch.isfinite(z).all()
    aux = m.auxiliary_loss(y)
    assert (aux is not None) == (head == "hmoe")  # HMoE's vertical loss reaches the training loop
    (F.binary_cross_entropy_with_logits(z, y) + (0 if aux is None else aux)).backward()
    assert all(p.grad is not None for p in m.parameters())


#: small options of the other registered video-level models, as heads of a frame encoder
OTHER_HEADS = {
    "mlp": dict(hidden_dim=8),
    "residualcnn": dict(signal_dim=8, stem_channels=4, stem_kernel=3, widths=[4, 4, 4, 4], kernel=3),
    "lstm_translator": dict(hidden_size=8, embed_dim=4, max_steps=3),
}


def test_head_lists_cover_every_video_model():
    """Every registered video-level model is tried as a frame encoder's head by one of the two tests below."""
    assert sorted(HEADS + list(OTHER_HEADS)) == list_models("video")


@pytest.mark.parametrize("head", sorted(OTHER_HEADS))
@pytest.mark.parametrize("name", ["lstm", "attention_bigru", "netvlad"])
def test_encoders_take_the_other_video_models_as_heads(name, head):
    m = small(name, head=head, head_options=OTHER_HEADS[head])
    assert m.head.__class__ is get_entry(head).cls
    y = torch.tensor([[1.0, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 0], [1, 1, 0, 0]])
    z = m(torch.randn(4, 6, D), torch.tensor([6, 5, 2, 1]))
    assert z.shape == (4, C) and torch.isfinite(z).all()
    aux = m.auxiliary_loss(y)
    assert (aux is not None) == (head == "lstm_translator")  # Yoo's word loss reaches the training loop
    (F.binary_cross_entropy_with_logits(z, y) + (0 if aux is None else aux)).backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)


def test_head_names_are_checked():
    with pytest.raises(InputError, match="head must be one of"):
        small("lstm", head="hmoee")
    with pytest.raises(InputError, match="no option"):
        small("lstm", head="hmoe", head_options={"num_vertical": 2})  # a head option the head lacks


def test_tangs_chain_head_at_paper_sizes():
    """Tang et al. 2017 Section 2.3.2: classes by training frequency, a group every 393 classes: 4716 / 393 = 12
    groups, an MoE per group (mixture of 4 for every frame model, Section 2.2), earlier probabilities through a
    bottleneck; on ATT + MaxPool + BiLSTM (Table 4, GAP 0.82301)."""
    with torch.device("meta"):
        m = create_model("maxpool_bilstm", input_dim=DF, num_classes=C17, head="chain")
    assert [h.classifier.num_classes for h in m.head.heads] == [393] * 12 and 393 * 12 == C17
    assert all(h.classifier.num_experts == 4 for h in m.head.heads)
    assert [b.in_features for b in m.head.bottlenecks] == [393 * g for g in range(1, 12)]


def test_produce_models_shows_paper_and_headline(capsys):
    """`produce models`: each line names the model's paper and, where the paper scores it, that score."""
    from producers.cli import main
    assert main(["models", "--level", "frame"]) == 0
    lines = {l.split()[0]: l for l in capsys.readouterr().out.splitlines()}
    assert sorted(lines) == list_models("frame")
    for name, line in lines.items():
        e = get_entry(name)
        assert e.paper in line and (e.headline or " - ") in line, name
    assert "0.82046" in lines["maxpool_bilstm"] and "0.82416" in lines["maxpool_bilstm"]
    assert "Tang et al. 2017" in lines["random_bilstm"] and "0.81513" in lines["random_bilstm"]


def test_tangs_best_single_model_builds():
    """Tang et al. 2017 Table 4 / Section 3 item 8: ATT + MaxPooling + BiLSTM + Dropout + HMoE (GAP 0.82416):
    cell 1152, 1 layer each side of the pooling, window 3, mixture of 4, HMoE over the 25 verticals."""
    with torch.device("meta"):
        m = create_model("maxpool_bilstm", input_dim=DF, num_classes=C17, head="hmoe", dropout=0.5)
    h = 1152
    coarse, fine = moe(h, 25, 4), moe(h + 25, C17, 4)  # HMoE: vertical MoE, then the class MoE on [x, verticals]
    assert n_params(m) == gru(DF, h, 2) + gru(h, h, 2) + h + coarse + fine
    assert isinstance(m.head, get_entry("hmoe").cls) and m.head.fine.dropout.p == 0.5
    assert m.pool_window == 3 and m.head.fine.classifier.num_experts == 4


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
    # 4 classes (chance 0.25), 50 steps; measured 0.957 (random_bilstm), 0.973 (soft_dbof) to 1.00
    acc = train_and_score(name, steps=50, amp=0.8)
    print(f"{name}: hit@1 {acc:.3f}")
    assert acc >= 0.8


@pytest.mark.slow
@pytest.mark.parametrize("name", FRAME_MODELS)
def test_learnability_harder(name):
    # 16 classes (chance 0.0625), weaker signal, 300 steps; measured 0.535 (soft_dbof), 0.578 (lstm) to
    # 0.875 (netvlad), 0.926 (frame_logistic: the mean of the frames suits this task); random_bilstm sees
    # 1 of the 5 informative frames: measured 0.457
    acc = train_and_score(name, steps=300, amp=0.5, num_classes=16)
    print(f"{name}: hit@1 {acc:.3f}")
    assert acc >= (0.3 if name == "random_bilstm" else 0.5)


# ----------------------------------------------------------------------------- structure at the papers' sizes
def n_params(m):
    return sum(p.numel() for p in m.parameters())


def lstm(d, h, dirs=1):  # torch.nn.LSTM layer: W_ih, W_hh and two biases per direction
    return dirs * (4 * h * (d + h) + 8 * h)


def gru(d, h, dirs=1):
    return dirs * (3 * h * (d + h) + 6 * h)


def moe(f, c, e=2):  # gates over e + 1 options, e experts, all with biases
    return f * c * (e + 1) + c * (e + 1) + f * c * e + c * e


def lr(f, c):
    return f * c + c


def bn(f):
    return 2 * f


def gating(f):  # context gating: W (no bias) + batch norm
    return f * f + bn(f)


def ln_cell(d, h):  # layer-norm LSTM cell: two projections, three layer norms
    return d * 4 * h + h * 4 * h + bn(4 * h) * 2 + bn(h)


V1, A1, DF = 1024, 128, 1152  # YouTube-8M rgb, audio and frame widths
C17, C18 = 4716, 3862         # 2017 and 2018 vocabularies
T = 1152                      # Tang et al. 2017, Section 3: "cell of LSTM is 1152" for every model


def pooling_model(pooled, c, pools):  # input BN, pools, hidden 1024 (biased), CG, MoE, output CG
    return bn(DF) + pools + pooled * 1024 + 1024 + gating(1024) + moe(1024, c) + c * c + bn(c)


PAPER = {  # name: (classes, parameter count from the paper's own description)
    # starter code: mean of the frames, logistic regression
    "frame_logistic": (C18, lr(DF, C18)),
    # starter code DbofModel: cluster 8192, hidden 1024, MoE 2
    "dbof": (C18, bn(DF) + DF * 8192 + bn(8192) + 8192 * 1024 + bn(1024) + moe(1024, C18)),
    # Garg 2018 Table 2 "LSTM 2 layer, 1024" (= the starter LstmModel), last state, MoE (Section 4.1)
    "lstm": (C18, lstm(DF, 1024) + lstm(1024, 1024) + moe(1024, C18)),
    # Garg Table 2 "LSTM 3 layer, res3, 1024": residual connections do not add parameters (Fig. 3)
    "residual_lstm": (C18, lstm(DF, 1024) + 2 * lstm(1024, 1024) + moe(1024, C18)),
    # Garg Table 2 "Stacked BiLSTM 2 layer, 2048": 1024 per direction, directions pooled into 1024 between layers
    "stacked_bilstm_pool": (C18, lstm(DF, 1024, 2) + lstm(1024, 1024, 2) + moe(2048, C18)),
    # Zou et al. 2017 Section 5.4: two BiLSTM layers, 1024 units per direction (second: 768 or 1024), the two
    # final outputs concatenated (2048), MoE with 2 experts (Section 5.1)
    "bilstm": (C17, lstm(DF, 1024, 2) + lstm(2048, 1024, 2) + moe(2048, C17)),
    # Zou Section 5.3: equal fixed weights on three outputs of that BiLSTM: the attention has no parameters
    "three_point_attention": (C17, lstm(DF, 1024, 2) + lstm(2048, 1024, 2) + moe(2048, C17)),
    # Zou Section 5.2 / Table 2 "BiLSTM+LR+LN": two bidirectional layer-normalised layers, logistic regressions
    "ln_lstm": (C17, 2 * ln_cell(DF, 1024) + 2 * ln_cell(2048, 1024) + lr(2048, C17)),
    # Zou Section 5.5 "LSTM+late fusion+LR": an LSTM per modality, their outputs into the next LSTM layer
    "late_fusion": (C17, lstm(V1, 1024) + lstm(A1, 128) + lstm(1024 + 128, 1024) + lr(1024, C17)),
    # Zhao 2017: two-layer stacked Bi-GRU (no width given: 1024), directions concatenated
    "bigru": (C17, gru(DF, 1024, 2) + gru(2048, 1024, 2) + moe(2048, C17)),
    # Tang et al. 2017: GRU layers (eq. 2-5), directions summed (eq. 6: width 1152), attention = one query
    # vector w of width d^h (eq. 8), MoE with 4 experts (Section 2.2)
    "attention_bigru": (C17, gru(DF, T, 2) + T + moe(T, C17, 4)),
    # eq. 12-14: diagonal A (d^h) and 25 vertical queries b_i (d^h each); class a_i reads x_j of its
    # vertical: one MoE per vertical over its classes = moe(T, 4716, 4) in all
    "multi_attention": (C17, gru(DF, T, 2) + T + 25 * T + moe(T, C17, 4)),
    # Section 2.2.1 splitting: the ATT network on visual (1024) and on audio (128), x = [x_visual, x_audio]
    "split_attention": (C17, gru(V1, T, 2) + T + gru(A1, T, 2) + T + moe(2 * T, C17, 4)),
    # Section 2.2.3: max pooling (no parameters) between two BiLSTM (GRU) layers, attention at the end
    "maxpool_bilstm": (C17, gru(DF, T, 2) + gru(T, T, 2) + T + moe(T, C17, 4)),
    # Section 2.2.3 / Table 3 "layer=4": four layers on 60 sampled frames
    "random_bilstm": (C17, gru(DF, T, 2) + 3 * gru(T, T, 2) + T + moe(T, C17, 4)),
    # Section 2.2.3: a (shared) small BiLSTM over neighbouring frames in place of the pooling, then the second
    "hier_bilstm": (C17, gru(DF, T, 2) + gru(T, T, 2) + T + moe(T, C17, 4)),
    # Garg Section 4.1 / Table 2 "Multi-Modal, (LSTM 2,1024), (LSTM 2,1024)": a 2 x 1024 LSTM per modality,
    # last states concatenated into the MoE
    "two_stream": (C18, lstm(V1, 1024) + lstm(1024, 1024) + lstm(A1, 1024) + lstm(1024, 1024) + moe(2048, C18)),
    # Miech et al. 2017 / WILLOW code runs
    "netvlad": (C17, pooling_model(256 * V1 + 128 * A1, C17,
                                   V1 * 256 + bn(256) + 256 * V1 + A1 * 128 + bn(128) + 128 * A1)),
    "netrvlad": (C17, pooling_model(256 * V1 + 128 * A1, C17, V1 * 256 + bn(256) + A1 * 128 + bn(128))),
    "netfv": (C17, pooling_model(2 * 128 * V1 + 2 * 64 * A1, C17,
                                 V1 * 128 + bn(128) + 2 * 128 * V1 + A1 * 64 + bn(64) + 2 * 64 * A1)),
    "soft_dbof": (C17, pooling_model(8000 + 1000, C17, V1 * 8000 + bn(8000) + A1 * 1000 + bn(1000))),
    "gated_dbof": (C17, pooling_model(4096 + 512, C17, V1 * 4096 + bn(4096) + 4096 * V1 + V1 * 4096
                                      + bn(4096) + A1 * 512 + bn(512))),
}


def test_structure_table_covers_every_model():
    assert set(PAPER) == set(FRAME_MODELS)


@pytest.mark.parametrize("name", FRAME_MODELS)
def test_structure_at_paper_sizes(name):
    """Parameter counts of the defaults (D = 1152 frames), built on the meta device (no memory)."""
    c, expected = PAPER[name]
    with torch.device("meta"):
        m = create_model(name, input_dim=DF, num_classes=c)
    assert n_params(m) == expected


def test_paper_layer_shapes():
    with torch.device("meta"):
        vlad = create_model("netvlad", input_dim=DF, num_classes=C17)
        lstm_ = create_model("lstm", input_dim=DF, num_classes=C18, pool="attention", num_layers=1)
        uneven = create_model("lstm", input_dim=DF, num_classes=C18, hidden_size=[1280, 640])
        zou = create_model("bilstm", input_dim=DF, num_classes=C17, hidden_size=[1024, 768])
        multi = create_model("multi_attention", input_dim=DF, num_classes=C17)
        fused = create_model("late_fusion", input_dim=DF, num_classes=C17)
        gated = create_model("gated_dbof", input_dim=DF, num_classes=C17)
        tang = create_model("attention_bigru", input_dim=DF, num_classes=C17)
    assert vlad.rgb_pool.centers.shape == (256, 1024) and vlad.audio_pool.centers.shape == (128, 128)
    assert vlad.hidden.weight.shape == (1024, 256 * 1024 + 128 * 128)
    assert vlad.gating.fc.weight.shape == (1024, 1024) and vlad.head.head.gating is not None
    assert vlad.input_bn.num_features == DF
    # Garg Table 2 "LSTM 1 layer, 1024, att-pooling" (eq. 8-10): one learnable column vector W_a of width 1024
    assert n_params(lstm_) == lstm(DF, 1024) + 1024 + moe(1024, C18)
    # Garg Table 2 / Table 4 "LSTM 2 layer, (1280, 640)": a 640-long feature
    assert [l.hidden_size for l in uneven.rnn.layers] == [1280, 640] and uneven.rnn.out_dim == 640
    assert n_params(uneven) == lstm(DF, 1280) + lstm(1280, 640) + moe(640, C18)
    # Zou Section 5.4, second layer 768: the descriptor is 2 x 768
    assert n_params(zou) == lstm(DF, 1024, 2) + lstm(2048, 768, 2) + moe(1536, C17)
    assert multi.attention.queries.shape == (25, T) and multi.attention.diagonal.shape == (T,)
    assert sorted(h.classifier.num_classes for h in multi.head.heads) == [188] * 9 + [189] * 16  # 4716 / 25
    assert isinstance(multi.rnn.layers[0], torch.nn.GRU)
    assert isinstance(tang.rnn.layers[0], torch.nn.GRU) and tang.rnn.layers[0].hidden_size == T
    assert tang.rnn.out_dim == T and tang.head.head.classifier.num_experts == 4  # summed directions, MoE 4
    assert fused.fusion_rnn.layers[0].input_size == 1024 + 128
    assert gated.rgb_pool.down.weight.shape == (1024, 4096) and isinstance(gated.audio_pool, pooling.SoftBoFPool)


def test_learnable_pooling_is_one_family():
    """The five Miech et al. models are one class registered under five names with their own cluster counts."""
    names = ["netvlad", "netrvlad", "netfv", "soft_dbof", "gated_dbof"]
    assert {get_entry(n).cls for n in names} == {frame.LearnablePooling}
    clusters = {n: (get_entry(n).hparams()["cluster_size"], get_entry(n).hparams()["audio_cluster_size"])
                for n in names}
    assert clusters == {"netvlad": (256, 128), "netrvlad": (256, 128), "netfv": (128, 64),
                        "soft_dbof": (8000, 1000), "gated_dbof": (4096, 512)}
    m = small("netvlad", pooling="fv")  # a name's defaults can be overridden like any option
    assert isinstance(m.rgb_pool, pooling.FisherPool)
    with pytest.raises(InputError, match="max_pool applies"):
        small("netvlad", max_pool=True)


def test_registry_metadata_names_paper_input_and_headline():
    for name in FRAME_MODELS:
        e = get_entry(name)
        assert e.paper and e.frames in ("crop", "all", "sample"), name
    # each model's default input is its paper's: Zou's crops, Tang's and Garg's all frames, WILLOW's samples
    assert {n: get_entry(n).frames for n in ("bilstm", "ln_lstm", "random_bilstm", "residual_lstm", "netvlad")} \
        == {"bilstm": "crop", "ln_lstm": "crop", "random_bilstm": "all", "residual_lstm": "all", "netvlad": "sample"}
    assert "0.82046" in get_entry("maxpool_bilstm").headline and "0.82416" in get_entry("hmoe").headline


def test_multi_attention_reads_a_vocabulary(tmp_path):
    vocab = tmp_path / "vocabulary.csv"
    rows = [(0, "a", "Games"), (1, "b", "Autos"), (2, "c", ""), (3, "d", "Games")]
    vocab.write_text("Index,Name,Vertical1\n" + "".join(f"{i},{a},{v}\n" for i, a, v in rows))
    m = create_model("multi_attention", input_dim=D, num_classes=4, hidden_size=8, verticals=str(vocab))
    # Autos 0, Games 1 (sorted names); class 2 has no vertical: the extra one (2)
    assert [g.tolist() for g in frame.vertical_groups(str(vocab), 4, 25)] == [[1], [0, 3], [2]]
    assert m.attention.queries.shape == (3, 8) and len(m.head.heads) == 3
    with pytest.raises(InputError, match="lists 4 classes, expected 5"):
        create_model("multi_attention", input_dim=D, num_classes=5, hidden_size=8, verticals=str(vocab))


# ----------------------------------------------------------------------------- the papers' computations by hand
def _frames(b=3, t=7, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t, d, generator=g)
    lengths = torch.tensor([7, 4, 1])[:b]
    return x, frame.lengths_mask(lengths, t), lengths


def _naive_assign(layer, x, mask):
    """softmax(BN(W x)) with batch statistics of the valid frames, computed frame by frame in numpy."""
    z = (x @ layer.assign.proj.weight.T).detach().numpy()
    valid = mask.numpy()
    mu, var = z[valid].mean(0), z[valid].var(0)
    bn = layer.assign.bn
    z = (z - mu) / np.sqrt(var + bn.eps) * bn.weight.detach().numpy() + bn.bias.detach().numpy()
    a = np.exp(z - z.max(-1, keepdims=True))
    return a / a.sum(-1, keepdims=True) * valid[..., None]


def _l2(v, axis=-1):
    return v / np.maximum(np.linalg.norm(v, axis=axis, keepdims=True), 1e-6)


@pytest.mark.parametrize("residual", [True, False])
def test_vlad_by_hand(residual):
    torch.manual_seed(0)
    layer = pooling.VLADPool(6, 3, residual=residual).train()
    x, mask, _ = _frames()
    got = layer(x, mask).detach().numpy()
    a, xn = _naive_assign(layer, x, mask), x.numpy()
    c = layer.centers.detach().numpy() if residual else np.zeros((3, 6))
    for b in range(3):
        v = np.stack([sum(a[b, t, k] * (xn[b, t] - c[k]) for t in range(7)) for k in range(3)])
        np.testing.assert_allclose(got[b], _l2(_l2(v).ravel()), rtol=1e-4, atol=1e-6)


def test_fisher_vector_by_hand():
    torch.manual_seed(0)
    layer = pooling.FisherPool(6, 3).train()
    x, mask, _ = _frames()
    got = layer(x, mask).detach().numpy()
    a, xn = _naive_assign(layer, x, mask), x.numpy()
    c = layer.centers.detach().numpy()
    s = layer.scales.detach().numpy() ** 2 + 1e-6
    for b in range(3):
        f1 = np.stack([sum(a[b, t, k] * (xn[b, t] - c[k]) for t in range(7)) / s[k] for k in range(3)])
        f2 = np.stack([sum(a[b, t, k] * (xn[b, t] - c[k]) ** 2 for t in range(7)) / s[k] ** 2 - a[b, :, k].sum()
                       for k in range(3)])
        np.testing.assert_allclose(got[b], np.concatenate([_l2(_l2(f1).ravel()), _l2(_l2(f2).ravel())]),
                                   rtol=1e-4, atol=1e-6)


def test_soft_and_gated_bag_of_frames_by_hand():
    torch.manual_seed(0)
    soft = pooling.SoftBoFPool(6, 4, max_pool=True).train()
    gated = pooling.GatedBoFPool(6, 4, rank=2).train()
    x, mask, lengths = _frames()
    for layer in (soft, gated):
        got = layer(x, mask).detach().numpy()
        a = _naive_assign(layer, x, mask)
        bag = a.sum(1)
        peak = _l2(np.stack([a[b, :lengths[b]].max(0) for b in range(3)]))
        if layer is soft:
            want = np.concatenate([_l2(bag), peak], axis=1)
        else:
            g = peak @ gated.down.weight.detach().numpy().T @ gated.up.weight.detach().numpy().T
            g = (g - g.mean(0)) / np.sqrt(g.var(0) + 1e-5)  # batch norm (fresh: weight 1, bias 0)
            want = _l2(bag / (1 + np.exp(-g)))
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_vertical_heads_read_only_their_vertical():
    groups = frame.vertical_groups([0, 1, 1, 0, 2], 5, 0)
    assert [g.tolist() for g in groups] == [[0, 3], [1, 2], [4]]
    assert [g.tolist() for g in frame.vertical_groups(None, 5, 2)] == [[0, 2, 4], [1, 3]]
    with pytest.raises(InputError, match=r"verticals must be a vocabulary file or \(5,\)"):
        frame.vertical_groups([0, 1], 5, 0)
    torch.manual_seed(0)
    heads = frame.VerticalHeads(4, groups, 5, "moe", 2, 0.0, False).eval()
    z = torch.randn(2, 3, 4)
    ref = heads(z)
    z2 = z.clone()
    z2[:, 1] += 5.0  # vertical 1 = classes 1 and 2
    changed = (heads(z2) - ref).abs().amax(0) > 1e-6
    assert changed.tolist() == [False, True, True, False, False]
    # class 3 is scored by vertical 0's head, column 1 of it
    torch.testing.assert_close(ref[:, 3], heads.heads[0](z[:, 0])[:, 1])


def test_attention_bigru_sums_directions_and_squashes():
    m = small("attention_bigru").eval()
    x, _, lengths = _frames(d=D)
    mask = frame.lengths_mask(lengths, x.shape[1])
    gru_ = m.rnn.layers[0]
    with torch.no_grad():
        x0 = x.masked_fill(~mask[..., None], 0)
        out = frame.run_packed(gru_, x0, lengths)  # (B, T, 2H) [forward, backward]
        h = out[..., :16] + out[..., 16:]          # eq. 6: element-wise sum
        w = m.pool.attention.queries[0]
        alpha = torch.softmax((torch.tanh(h) @ w).masked_fill(~mask, float("-inf")), dim=1)  # eq. 7-8
        want = torch.tanh((alpha[..., None] * h).sum(1))                                      # eq. 9-10
        torch.testing.assert_close(m.encode(x0, lengths, mask), want)
    assert isinstance(gru_, torch.nn.GRU) and gru_.bidirectional


def test_hierarchical_chunks_share_one_bilstm():
    m = small("hier_bilstm").eval()  # chunks of 4 frames, hidden 16
    x = torch.randn(2, 10, D)
    lengths = torch.tensor([10, 5])
    seen = {}
    m.chunks_rnn.register_forward_hook(lambda module, args, out: seen.update(summaries=args[0]))
    with torch.no_grad():
        m(x, lengths)
        # every chunk is summarised by the same first-level Bi-GRU, on that chunk's valid frames alone
        for b, c, frames in ((0, 0, x[0, 0:4]), (0, 2, x[0, 8:10]), (1, 1, x[1, 4:5])):
            n = torch.tensor([len(frames)])
            alone = m.frames_rnn(frames[None], n)[1][0]
            torch.testing.assert_close(seen["summaries"][b, c], alone)
    assert seen["summaries"].shape == (2, 3, 16)  # directions summed
    assert seen["summaries"][1, 2].abs().max() == 0  # video 1 has 2 chunks: the third is padding


def test_layer_norm_lstm_backward_direction_reads_reversed_frames():
    m = small("ln_lstm", num_layers=1).eval()
    x = torch.randn(2, 6, D)
    lengths = torch.tensor([6, 3])
    mask = frame.lengths_mask(lengths, 6)
    x = x.masked_fill(~mask[..., None], 0)
    with torch.no_grad():
        desc = m.encode(x, lengths, mask)
        back_short = m.back_cells[0](x[1:2, :3].flip(1), torch.tensor([3]))
    # backward state of video 1 = the backward cell after reading frames 2, 1, 0
    torch.testing.assert_close(desc[1, 16:], back_short[0, -1])
    torch.testing.assert_close(frame.reverse_valid(frame.reverse_valid(x, lengths), lengths), x)


def test_random_bilstm_runs_60_steps_on_300_frames():
    m = small("random_bilstm").eval()
    idx = m.sample_indices(torch.tensor([300, 7]), 300)
    assert idx.shape == (2, 60)
    assert idx[0].tolist() == list(range(2, 300, 5))


def test_three_point_attention_averages_three_outputs_equally():
    """Zou et al. 2017 Section 5.3: the 1/3, 2/3 and last outputs get equal, fixed attention (mean-pooled)."""
    m = small("three_point_attention").eval()
    x = torch.randn(2, 9, D)
    lengths = torch.tensor([9, 2])
    mask = frame.lengths_mask(lengths, 9)
    with torch.no_grad():
        out = m.rnn(x, lengths)[0]
        want = torch.stack([(out[0, 2] + out[0, 5] + out[0, 8]) / 3, (out[1, 0] + out[1, 1] + out[1, 1]) / 3])
        torch.testing.assert_close(m.encode(x, lengths, mask), want)


def test_pool_options_of_the_lstm_family():
    x = torch.randn(3, 8, D)
    lengths = torch.tensor([8, 5, 2])
    mask = frame.lengths_mask(lengths, 8)
    for pool in ("last", "max", "attention"):
        m = small("bilstm", pool=pool).eval()
        with torch.no_grad():
            out, _ = m.rnn(x, lengths)
            if pool == "attention":  # Garg eq. 8-10: F = tanh(sum softmax(tanh(H) W_a) H)
                want = torch.tanh((m.pool.attention.weights(out, mask) * out).sum(1))
            else:
                want = frame.last_valid(out, lengths, True) if pool == "last" else frame.masked_max(out, mask)
            torch.testing.assert_close(m.encode(x, lengths, mask), want)
    with pytest.raises(InputError, match="pool must be one of"):
        small("lstm", pool="mean")
    with pytest.raises(InputError, match="pool must be one of"):
        small("maxpool_bilstm", pool="max")
    with pytest.raises(InputError, match="hidden_size lists 3 widths, num_layers = 2"):
        small("lstm", hidden_size=[8, 8, 8])


def test_summed_directions_stack_and_residuals_add():
    enc = frame.RecurrentEncoder(D, [6, 6], 2, "gru", bidirectional=True, merge="sum")
    assert [l.input_size for l in enc.layers] == [D, 6] and enc.out_dim == 6
    x = torch.randn(2, 5, D)
    lengths = torch.tensor([5, 3])
    with torch.no_grad():
        seq, final = enc(x, lengths)
        raw = frame.run_packed(enc.layers[1], frame.sum_directions(frame.run_packed(enc.layers[0], x, lengths)),
                               lengths)
        torch.testing.assert_close(seq, frame.sum_directions(raw))
        torch.testing.assert_close(final[1], raw[1, 2, :6] + raw[1, 0, 6:])  # forward at L - 1 + backward at 0
    res = frame.RecurrentEncoder(D, 8, 3, "lstm", residual=True)
    with torch.no_grad():
        x1 = frame.run_packed(res.layers[0], x, lengths)
        x2 = frame.run_packed(res.layers[1], x1, lengths) + x1
        torch.testing.assert_close(res(x, lengths)[0], frame.run_packed(res.layers[2], x2, lengths) + x2)


def test_every_model_names_its_paper_in_one_line():
    import re

    from producers.models.registry import get_entry

    for name in FRAME_MODELS:
        doc = get_entry(name).doc
        assert re.search(r"\b(19|20)\d\d\b", doc) or "starter code" in doc, name  # the paper (or code) it follows
        assert "\n" not in doc and len(doc) < 160, (name, len(doc))


def test_garg_stacked_bilstm_with_residuals():
    """Garg 2018 Table 2 "Stacked BiLSTM 3 layer, res3, 1024": output feature size 1024 (footnote 1) = 512 per
    direction; the directions pooled to 512 between layers (Section 4.1), residual connections as Fig. 3 (no
    parameters); the last layer's final states concatenated (1024) into the MoE."""
    with torch.device("meta"):
        m = create_model("stacked_bilstm_pool", input_dim=DF, num_classes=C18, num_layers=3, hidden_size=512,
                         residual=True)
    assert n_params(m) == lstm(DF, 512, 2) + 2 * lstm(512, 512, 2) + moe(1024, C18)
    m = small("stacked_bilstm_pool", num_layers=3, hidden_size=8, residual=True)
    x, lengths = torch.randn(3, 6, D), torch.tensor([6, 4, 1])
    with torch.no_grad():
        x = x.masked_fill(~frame.lengths_mask(lengths, 6).unsqueeze(-1), 0.0)

        def pooled(layer, h):
            return layer(h, lengths)[0].unflatten(-1, (2, -1)).amax(2)

        h1 = pooled(m.layers[0], x)                  # D -> 8: widths differ, no residual
        h2 = pooled(m.layers[1], h1) + h1            # 8 -> 8: residual
        want = m.layers[2](h2, lengths)[1]
        torch.testing.assert_close(m.encode(x, lengths, frame.lengths_mask(lengths, 6)), want)


def test_zhao_attention_bigru_with_frame_embedding():
    """Zhao 2017, attention section: frames embedded by W_e (x_t = W_e w_t), a Bi-GRU with concatenated
    directions, u_t = tanh(W_w h_t + b_w), alpha = softmax(u_t . u_w), s = sum alpha_t h_t (Yang et al. 2016)."""
    e, a, h = 512, 256, 1024  # the paper gives no widths: these only exercise the arithmetic
    with torch.device("meta"):
        m = create_model("bigru", input_dim=DF, num_classes=C17, embed_dim=e, pool="attention", attention_dim=a)
    assert n_params(m) == DF * e + gru(e, h, 2) + gru(2 * h, h, 2) + (2 * h * a + a + a) + moe(2 * h, C17)
    m = small("bigru", embed_dim=8, pool="attention", attention_dim=4).eval()
    x, lengths = torch.randn(2, 5, D), torch.tensor([5, 3])
    mask = frame.lengths_mask(lengths, 5)
    with torch.no_grad():
        xm = x.masked_fill(~mask.unsqueeze(-1), 0.0)
        seq = m.rnn(xm @ m.embed.weight.t(), lengths)[0]                      # x_t = W_e w_t, then the Bi-GRU
        u = torch.tanh(m.pool.attention.proj(seq))                             # u_t = tanh(W_w h_t + b_w)
        alpha = torch.softmax((u @ m.pool.attention.queries[0]).masked_fill(~mask, float("-inf")), dim=1)
        torch.testing.assert_close(m.encode(xm, lengths, mask), (alpha[..., None] * seq).sum(1))
    with pytest.raises(InputError, match="expected frames of shape"):
        m(torch.randn(2, 5, 8), lengths)  # the model reads input_dim-wide frames, not embed_dim-wide ones
