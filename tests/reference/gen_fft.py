"""Reference fixtures for the frequency filters (suite `fft`).

out = IFFT(M * FFT(x)) over the spatial axes, computed with torch.fft's *complex* n-d FFT
(not the real transform the library uses) in float64; the gradient of sum(out * w) comes from
autograd. The mask is built from torch.fft.fftfreq: nu = 2 * fftfreq(n) (fraction of
Nyquist), r = sqrt(sum nu^2); gaussian low(c) = exp(-r^2 / (2 c^2)), ideal low(c) = r <= c,
box low(c) = max|nu| <= c; high = 1 - low(c), band = low(c_hi) - low(c).

Run with Debian's interpreter: /usr/bin/python3 tests/reference/gen_fft.py
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
import st_io  # noqa: E402

# (name, band, window, cutoff, cutoff_high) -- mirrored in tests/fft/test_fft.c
CASES = [
    ("high_gauss", "high", "gaussian", 0.25, 0.5),
    ("low_gauss", "low", "gaussian", 0.3, 0.5),
    ("band_gauss", "band", "gaussian", 0.2, 0.6),
    ("high_ideal", "high", "ideal", 0.33, 0.5),
    ("low_ideal", "low", "ideal", 0.37, 0.5),
    ("band_box", "band", "box", 0.21, 0.55),
]


def mask(shape, band, window, c, ch):
    nus = [2.0 * torch.fft.fftfreq(n, dtype=torch.float64) for n in shape]
    grids = torch.meshgrid(*nus, indexing="ij")
    r2 = torch.zeros(shape, dtype=torch.float64)
    for g in grids:
        r2 = r2 + g * g
    r = torch.sqrt(r2)
    linf = torch.stack([g.abs() for g in grids]).amax(0)

    def low(cut):
        if window == "gaussian":
            return torch.exp(-r2 / (2.0 * cut * cut))
        if window == "ideal":
            return (r <= cut).double()
        return (linf <= cut).double()

    if band == "low":
        return low(c)
    if band == "band":
        return low(ch) - low(c)
    return 1.0 - low(c)


def filt(x, m, rank):
    dims = tuple(range(x.dim() - rank, x.dim()))
    return torch.fft.ifftn(m * torch.fft.fftn(x, dim=dims), dim=dims).real


def main():
    torch.manual_seed(20240611)
    out = {}
    for tag, shape in (("2d", (2, 3, 9, 12)), ("3d", (1, 2, 6, 7, 10))):
        rank = len(shape) - 2
        x32 = torch.randn(shape, dtype=torch.float32)
        w32 = torch.randn(shape, dtype=torch.float32)
        out[f"{tag}.x"] = x32
        out[f"{tag}.w"] = w32
        for name, band, window, c, ch in CASES:
            m = mask(shape[2:], band, window, c, ch)
            x = x32.double().requires_grad_(True)
            y = filt(x, m, rank)
            (y * w32.double()).sum().backward()
            out[f"{tag}.{name}.out"] = y.detach()
            out[f"{tag}.{name}.grad"] = x.grad
            out[f"{tag}.{name}.mask"] = m
    path = os.path.join(os.path.dirname(__file__), "..", "fixtures", "fft_filters.safetensors")
    st_io.save(path, out, {"generator": "tests/reference/gen_fft.py", "torch": torch.__version__})
    print("wrote", os.path.normpath(path), len(out), "tensors")


if __name__ == "__main__":
    main()
