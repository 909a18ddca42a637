"""SSIM in torch, batched over all pairs of two image sets (:func:`pairwise_ssim`).

Matches ``skimage.metrics.structural_similarity(a, b, data_range=R, gaussian_weights=True,
sigma=1.5, use_sample_covariance=False)``: Gaussian window of 11 taps (skimage's truncate 3.5 at
sigma 1.5), K1 = 0.01, K2 = 0.03, local statistics over the "valid" region only (skimage filters
the whole image and then crops (win - 1) / 2 pixels from each border; same numbers), SSIM = mean
of the SSIM map.

Speed: the Gaussian filter is applied as two banded matrix products (Gy @ X @ Gx^T), which BLAS
does fast on CPU and GPU; the band matrices are built once per (size, window, dtype, device) and cached.
For all A x B pairs the per-image means and variances are computed once; only the cross term
filter(x * y) is computed per pair, in chunks that bound the memory; on an accelerator the chunks are 8x
larger than on the CPU (fewer, larger kernels; memory is rarely short there). Measured on an H200:
docs/benchmarks.md "Pretraining on a GPU".
"""

from __future__ import annotations

import functools

import torch

K1_DEFAULT = 0.01
K2_DEFAULT = 0.03
#: default bound on the per-pair product tensor of one chunk (elements; about 12 bytes each in float32):
#: 192 MiB on the CPU, 1.5 GiB on an accelerator
CHUNK_ELEMENTS_CPU = 2**24
CHUNK_ELEMENTS_ACCELERATOR = 2**27


def gaussian_window(
    win_size: int = 11, sigma: float = 1.5, dtype: torch.dtype = torch.float32, device=None
) -> torch.Tensor:
    """[win_size] normalised 1-D Gaussian."""
    if win_size < 1 or win_size % 2 == 0:
        raise ValueError(f"SSIM win_size must be odd and positive, got {win_size}")
    r = (win_size - 1) / 2
    x = torch.arange(win_size, dtype=torch.float64) - r
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return (g / g.sum()).to(dtype=dtype, device=device)


def _band(length: int, window: torch.Tensor) -> torch.Tensor:
    """[length - win + 1, length] matrix whose rows are the window shifted (valid filtering)."""
    win = window.shape[0]
    out = length - win + 1
    band = torch.zeros(out, length, dtype=window.dtype, device=window.device)
    rows = torch.arange(out, device=window.device)
    for t in range(win):
        band[rows, rows + t] = window[t]
    return band


class _Filter:
    """Valid separable Gaussian filtering of [..., H, W] stacks by two matrix products."""

    def __init__(self, height: int, width: int, win_size: int, sigma: float, dtype, device) -> None:
        if height < win_size or width < win_size:
            raise ValueError(
                f"SSIM needs images of at least {win_size} x {win_size} pixels (the window), "
                f"got {height} x {width}"
            )
        window = gaussian_window(win_size, sigma, dtype, device)
        self.gy = _band(height, window)
        self.gx_t = _band(width, window).T.contiguous()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(self.gy, torch.matmul(x, self.gx_t))


@functools.lru_cache(maxsize=32)
def _cached_filter(height: int, width: int, win_size: int, sigma: float, dtype: torch.dtype,
                   device: torch.device) -> _Filter:
    """The filter of these arguments, built once (its band matrices are never modified)."""
    return _Filter(height, width, win_size, sigma, dtype, device)


def _prepare(x: torch.Tensor, y: torch.Tensor, data_range: float | None, name: str):
    if x.ndim != 3 or y.ndim != 3 or x.shape[-2:] != y.shape[-2:]:
        raise ValueError(
            f"{name}: need image stacks [A, H, W] and [B, H, W] of equal H, W, "
            f"got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    dtype = torch.float64 if torch.float64 in (x.dtype, y.dtype) else torch.float32
    x, y = x.to(dtype), y.to(device=x.device, dtype=dtype)
    if data_range is None:
        data_range = float(torch.maximum(x.max(), y.max()) - torch.minimum(x.min(), y.min()))
    if not data_range > 0:
        raise ValueError(
            f"{name}: data_range must be positive, got {data_range} (constant images?)"
        )
    return x, y, float(data_range)


def _ssim_from_stats(mx, my, vx, vy, cxy, c1: float, c2: float) -> torch.Tensor:
    num = (2 * mx * my + c1) * (2 * cxy + c2)
    den = (mx.square() + my.square() + c1) * (vx + vy + c2)
    return (num / den).mean(dim=(-2, -1))


def pairwise_ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float | None = None,
    win_size: int = 11,
    sigma: float = 1.5,
    k1: float = K1_DEFAULT,
    k2: float = K2_DEFAULT,
    max_chunk_elements: int | None = None,
) -> torch.Tensor:
    """SSIM of every pair: x [A, H, W], y [B, H, W] -> [A, B].

    data_range None -> max - min over both stacks together. ``max_chunk_elements`` bounds the size
    of the per-pair product tensor processed at once (memory about 3 x 4 bytes x that for float32);
    None: ``CHUNK_ELEMENTS_CPU`` on the CPU, ``CHUNK_ELEMENTS_ACCELERATOR`` elsewhere.
    """
    x, y, rng = _prepare(x, y, data_range, "pairwise_ssim")
    if max_chunk_elements is None:
        max_chunk_elements = CHUNK_ELEMENTS_CPU if x.device.type == "cpu" else CHUNK_ELEMENTS_ACCELERATOR
    filt = _cached_filter(x.shape[-2], x.shape[-1], win_size, float(sigma), x.dtype, x.device)
    c1, c2 = (k1 * rng) ** 2, (k2 * rng) ** 2
    mx, my = filt(x), filt(y)
    vx = filt(x * x) - mx.square()
    vy = filt(y * y) - my.square()
    a, b = x.shape[0], y.shape[0]
    out = torch.empty(a, b, dtype=x.dtype, device=x.device)
    per_row = b * x.shape[-2] * x.shape[-1]
    rows = max(1, max_chunk_elements // max(per_row, 1))
    for start in range(0, a, rows):
        stop = min(a, start + rows)
        cross = filt(x[start:stop, None] * y[None]) - mx[start:stop, None] * my[None]
        out[start:stop] = _ssim_from_stats(
            mx[start:stop, None], my[None], vx[start:stop, None], vy[None], cross, c1, c2
        )
    return out
