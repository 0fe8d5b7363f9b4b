"""Frame sampling (producers.crops) against hand-written index arrays."""
import numpy as np
import pytest

from predictions.errors import InputError
from producers import crops
from producers.crops import (FrameSelection, all_frames, crop_mean, crop_name, even_frames, inference_crop,
                             inference_crops, sample_frames, train_crop)


class FixedStart:
    """Stand-in generator whose integers() returns a fixed value (after checking the bounds)."""

    def __init__(self, value):
        self.value, self.calls = value, []

    def integers(self, low, high):
        self.calls.append((low, high))
        assert low <= self.value < high
        return self.value


def test_constants():
    assert (crops.MAX_FRAMES, crops.FIRST_FROM, crops.STRIDE, crops.CROP_FRAMES) == (225, 10, 5, 45)


@pytest.mark.parametrize("crop, expected", [
    (0, [0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 90, 95, 100, 105, 110,
         115, 120, 125, 130, 135, 140, 145, 150, 155, 160, 165, 170, 175, 180, 185, 190, 195, 200, 205,
         210, 215, 220]),
    (1, [1, 6, 11, 16, 21, 26, 31, 36, 41, 46, 51, 56, 61, 66, 71, 76, 81, 86, 91, 96, 101, 106, 111,
         116, 121, 126, 131, 136, 141, 146, 151, 156, 161, 166, 171, 176, 181, 186, 191, 196, 201, 206,
         211, 216, 221]),
    (4, [4, 9, 14, 19, 24, 29, 34, 39, 44, 49, 54, 59, 64, 69, 74, 79, 84, 89, 94, 99, 104, 109, 114,
         119, 124, 129, 134, 139, 144, 149, 154, 159, 164, 169, 174, 179, 184, 189, 194, 199, 204, 209,
         214, 219, 224]),
])
def test_inference_crop_long_video(crop, expected):
    idx = inference_crop(300, crop)
    assert idx.dtype == np.int64 and len(idx) == 45
    np.testing.assert_array_equal(idx, expected)


def test_inference_crop_short_video():
    expected = {0: [0, 5, 10], 1: [1, 6, 11], 2: [2, 7], 3: [3, 8], 4: [4, 9]}
    for c, e in expected.items():
        np.testing.assert_array_equal(inference_crop(12, c), e)
    for c in range(5):  # a one-frame video: every crop is that frame
        np.testing.assert_array_equal(inference_crop(1, c), [0])
    np.testing.assert_array_equal(inference_crop(3, 4), [2])  # start clipped to length - 1
    np.testing.assert_array_equal(inference_crop(226, 0)[-2:], [215, 220])  # frame 225 never used


def test_inference_crops_and_validation():
    got = inference_crops(12, 3)
    assert [g.tolist() for g in got] == [[0, 5, 10], [1, 6, 11], [2, 7]]
    assert len(inference_crops(300, 5)) == 5
    # Zou et al. Section 6: the final ensemble adds start indices 5, 6 and 7
    assert [c[:2].tolist() for c in inference_crops(300, 8)[5:]] == [[5, 10], [6, 11], [7, 12]]
    for bad in (0, 9, -1, 2.0, True):
        with pytest.raises(InputError, match="n_crops must be an integer in 1..8"):
            inference_crops(300, bad)
    for bad in (8, -1, "1"):
        with pytest.raises(InputError, match="crop_index"):
            inference_crop(300, bad)
    for bad in (0, -3, 1.5):
        with pytest.raises(InputError, match="video length"):
            inference_crop(bad, 0)
    with pytest.raises(ValueError):  # InputError is a ValueError
        inference_crops(10, 9)


def test_train_crop_fixed_start():
    rng = FixedStart(7)
    idx = train_crop(300, rng)
    assert rng.calls == [(0, 10)]
    # 7, 12, ..., 222: 44 frames (227 would be past the first 225)
    np.testing.assert_array_equal(idx, [7, 12, 17, 22, 27, 32, 37, 42, 47, 52, 57, 62, 67, 72, 77, 82,
                                        87, 92, 97, 102, 107, 112, 117, 122, 127, 132, 137, 142, 147,
                                        152, 157, 162, 167, 172, 177, 182, 187, 192, 197, 202, 207, 212,
                                        217, 222])
    np.testing.assert_array_equal(train_crop(300, FixedStart(0)), inference_crop(300, 0))
    np.testing.assert_array_equal(train_crop(12, FixedStart(9)), [9])
    np.testing.assert_array_equal(train_crop(12, FixedStart(1)), [1, 6, 11])
    rng = FixedStart(2)
    np.testing.assert_array_equal(train_crop(3, rng), [2])
    assert rng.calls == [(0, 3)]  # start bounded by the length
    rng = FixedStart(0)
    np.testing.assert_array_equal(train_crop(1, rng), [0])
    assert rng.calls == [(0, 1)]


def test_train_crop_random_starts():
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(300):
        idx = train_crop(300, rng)
        s = int(idx[0])
        starts.add(s)
        np.testing.assert_array_equal(idx, np.arange(s, 225, 5))
        assert len(idx) == (45 if s < 5 else 44)
    assert starts == set(range(10))
    for _ in range(50):
        idx = train_crop(4, rng)
        assert len(idx) == 1 and 0 <= idx[0] < 4
    with pytest.raises(InputError, match="video length"):
        train_crop(0, rng)


def test_crop_name():
    assert [crop_name(i) for i in range(8)] == [f"crop{i}" for i in range(8)]
    assert crop_name(np.int64(3)) == "crop3"
    assert crop_name("mean") == "mean"
    assert crop_name(None) == "full"
    for bad in (8, -1, "max", True):
        with pytest.raises(InputError, match="crop must be"):
            crop_name(bad)


# --------------------------------------------------------------------------- all frames, sampling, selection


def test_all_frames():
    np.testing.assert_array_equal(all_frames(7), np.arange(7))
    assert all_frames(300).tolist() == list(range(300))
    assert len(all_frames(400)) == crops.ALL_FRAMES == 300
    assert all_frames(1).dtype == np.int64


def test_even_frames_by_hand():
    # floor((i + 1/2) * m / n)
    assert even_frames(10, 5).tolist() == [1, 3, 5, 7, 9]
    assert even_frames(300, 4).tolist() == [37, 112, 187, 262]
    assert even_frames(3, 6).tolist() == [0, 0, 1, 1, 2, 2]  # repeats when n > length
    assert even_frames(1, 3).tolist() == [0, 0, 0]
    assert even_frames(1000, 2).tolist() == [75, 225]  # within the first 300 frames
    with pytest.raises(InputError, match="num_frames"):
        even_frames(10, 0)


def test_sample_frames_uniform_with_replacement():
    rng = np.random.default_rng(0)
    counts = np.zeros(8)
    for _ in range(2000):
        idx = sample_frames(8, 5, rng)
        assert idx.dtype == np.int64 and len(idx) == 5
        assert (np.diff(idx) >= 0).all() and 0 <= idx.min() and idx.max() < 8
        counts += np.bincount(idx, minlength=8)
    np.testing.assert_allclose(counts / counts.sum(), np.full(8, 1 / 8), atol=0.01)
    assert len(sample_frames(2, 300, rng)) == 300  # with replacement
    assert sample_frames(500, 1000, rng).max() < 300


def test_frame_selection_modes():
    rng = np.random.default_rng(1)
    crop = FrameSelection()
    assert (crop.mode, crop.max_crops) == ("crop", 8)
    np.testing.assert_array_equal(crop.train(300, FixedStart(3)), train_crop(300, FixedStart(3)))
    np.testing.assert_array_equal(crop.predict(300, 4), inference_crop(300, 4))
    every = FrameSelection("all")
    assert every.max_crops == 1
    assert every.train(120, rng).tolist() == every.predict(120).tolist() == list(range(120))
    sample = FrameSelection("sample", 30)
    assert len(sample.train(120, rng)) == 30
    assert sample.predict(120).tolist() == even_frames(120, 30).tolist()
    with pytest.raises(InputError, match="one prediction crop"):
        sample.predict(120, 1)
    with pytest.raises(InputError, match="frames must be one of"):
        FrameSelection("random")
    with pytest.raises(InputError, match="num_frames"):
        FrameSelection("sample", 0)


def test_crop_mean_and_zous_top_k_rule():
    s = np.array([[[0.9, 0.1, 0.5, 0.3]],       # crop 0: top-2 = classes 0, 2
                  [[0.2, 0.8, 0.6, 0.1]]])      # crop 1: top-2 = classes 1, 2
    np.testing.assert_allclose(crop_mean(s, top_k=0), [[0.55, 0.45, 0.55, 0.2]])  # plain mean
    np.testing.assert_allclose(crop_mean(s), crop_mean(s, top_k=20))  # Zou's top-20 rule by default
    np.testing.assert_allclose(crop_mean(s, top_k=2), [[0.45, 0.4, 0.55, 0.0]])
    np.testing.assert_allclose(crop_mean(s, top_k=1), [[0.45, 0.4, 0.0, 0.0]])
    np.testing.assert_allclose(crop_mean(s, top_k=4), crop_mean(s, top_k=0))  # k >= C: plain mean
    ties = np.array([[[0.5, 0.5, 0.5]]])
    np.testing.assert_allclose(crop_mean(ties, top_k=2), [[0.5, 0.5, 0.0]])  # exactly k kept, by column order
    rng = np.random.default_rng(0)
    big = rng.random((5, 30, 100)).astype(np.float32)
    got = crop_mean(big, top_k=crops.ZOU_TOP_K)
    assert ((big > 0).sum(2) == 100).all() and ((got > 0).sum(1) <= 5 * 20).all()
    for c in range(5):  # a crop contributes exactly its own top 20 of each row
        top = np.argsort(-big[c], axis=1)[:, :20]
        mine = np.zeros_like(big[c])
        np.put_along_axis(mine, top, np.take_along_axis(big[c], top, 1), 1)
        big[c] = mine
    np.testing.assert_allclose(got, big.mean(0), rtol=1e-6)
    with pytest.raises(InputError, match="top_k"):
        crop_mean(s, top_k=-1)
    with pytest.raises(InputError, match="shape"):
        crop_mean(s[0])
