"""Frame sampling for frame-level models, as in Zou et al. (YouTube-8M challenge 2017).

A video of ``length`` frames (1 frame per second in YouTube-8M) is reduced to at
most ``CROP_FRAMES`` frame indices taken every ``STRIDE`` frames within the first
``MAX_FRAMES`` frames:

* training: the first frame is drawn uniformly from the first ``FIRST_FROM``
  frames (a random temporal crop / jitter), see :func:`train_crop`;
* inference: ``n_crops <= STRIDE`` deterministic crops starting at frames
  0, 1, ..., n_crops - 1, whose predictions are stored per crop or averaged,
  see :func:`inference_crop` and :func:`crop_name`.

All functions return int64 index arrays into the frame axis (shape (n,), n >= 1,
strictly increasing, every index < ``length``).
"""
from __future__ import annotations

import numpy as np

from predictions.errors import InputError

MAX_FRAMES = 225   # only the first 225 frames are ever used
FIRST_FROM = 10    # training crops start in frames 0..9
STRIDE = 5         # keep every 5th frame
CROP_FRAMES = 45   # at most 45 frames per crop (= MAX_FRAMES // STRIDE)

__all__ = ["MAX_FRAMES", "FIRST_FROM", "STRIDE", "CROP_FRAMES", "train_crop", "inference_crop",
           "inference_crops", "check_n_crops", "crop_name"]


def _check_length(length) -> int:
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
        raise InputError(f"video length must be an integer >= 1, got {length!r}")
    return int(length)


def _every_stride(start: int, length: int) -> np.ndarray:
    """Indices start, start + STRIDE, ... below min(length, MAX_FRAMES), at most CROP_FRAMES."""
    return np.arange(start, min(length, MAX_FRAMES), STRIDE, dtype=np.int64)[:CROP_FRAMES]


def train_crop(length: int, rng: np.random.Generator) -> np.ndarray:
    """Random training crop of a ``length``-frame video: (n,) int64 frame indices, 1 <= n <= 45.

    The first index is uniform in ``[0, min(FIRST_FROM, length))``, then every
    ``STRIDE``-th frame below ``min(length, MAX_FRAMES)``.
    """
    length = _check_length(length)
    start = int(rng.integers(0, min(FIRST_FROM, length)))
    return _every_stride(start, length)


def check_n_crops(n_crops: int) -> int:
    """Validate a number of inference crops (1..STRIDE); InputError otherwise."""
    if isinstance(n_crops, bool) or not isinstance(n_crops, (int, np.integer)) \
            or not 1 <= n_crops <= STRIDE:
        raise InputError(f"n_crops must be an integer in 1..{STRIDE} (crops start at frames "
                         f"0..{STRIDE - 1}, every {STRIDE}th frame), got {n_crops!r}")
    return int(n_crops)


def inference_crop(length: int, crop_index: int) -> np.ndarray:
    """Deterministic crop ``crop_index`` (0..STRIDE-1): (n,) int64 indices, 1 <= n <= 45.

    Starts at frame ``min(crop_index, length - 1)``, then every ``STRIDE``-th
    frame within the first ``MAX_FRAMES`` frames.
    """
    length = _check_length(length)
    if isinstance(crop_index, bool) or not isinstance(crop_index, (int, np.integer)) \
            or not 0 <= crop_index < STRIDE:
        raise InputError(f"crop_index must be an integer in 0..{STRIDE - 1}, got {crop_index!r}")
    return _every_stride(min(int(crop_index), length - 1), length)


def inference_crops(length: int, n_crops: int) -> list[np.ndarray]:
    """The first ``n_crops`` inference crops of a video (see :func:`inference_crop`)."""
    return [inference_crop(length, i) for i in range(check_n_crops(n_crops))]


def crop_name(crop_index: int | str | None) -> str:
    """Store name of a crop: 0..4 -> "crop0".."crop4", "mean" -> "mean", None -> "full"."""
    if crop_index is None:
        return "full"
    if isinstance(crop_index, str):
        if crop_index == "mean":
            return "mean"
        raise InputError(f"crop must be an index 0..{STRIDE - 1}, 'mean' or None, got {crop_index!r}")
    if isinstance(crop_index, bool) or not isinstance(crop_index, (int, np.integer)) \
            or not 0 <= crop_index < STRIDE:
        raise InputError(f"crop must be an index 0..{STRIDE - 1}, 'mean' or None, got {crop_index!r}")
    return f"crop{int(crop_index)}"
