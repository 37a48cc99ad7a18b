"""Reference fixtures for the Mamba block and the HF-Mamba module (suite `mamba`).

The block follows mamba_ssm's `Mamba.forward` slow path (in_proj -> causal depthwise conv1d
-> SiLU -> x_proj -> dt_proj -> selective_scan_ref with z gating, delta bias and softplus ->
out_proj), and for the bidirectional variant Vision Mamba's "v2" block (the reverse direction
runs on the flipped sequence with its own conv1d_b / x_proj_b / dt_proj_b / A_b_log / D_b,
shares in_proj / out_proj, and the two outputs are summed before out_proj). The HF-Mamba
module: Gaussian high-pass with torch.fft (complex fftn, as gen_fft.py), voxel tokens,
LayerNorm `norm`, the block `mixer`, residual or attention combine. Everything runs in float64
with torch built-ins; parameter gradients come from autograd.

Parameters are random (not the initialisation) so every path is exercised; they are stored
under their state-dict names and loaded by the C test.

Run with Debian's interpreter: /usr/bin/python3 tests/reference/gen_mamba.py
"""
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import st_io  # noqa: E402
from gen_fft import mask as freq_mask  # noqa: E402
from gen_scan import selective_scan_ref  # noqa: E402


def make_params(g, C, N, K, expand, R, bidirectional, prefix=""):
    E = expand * C
    p = {}

    def rnd(*shape, scale=1.0):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * scale

    p["A_log"] = rnd(E, N, scale=0.3) + torch.log(torch.arange(1, N + 1, dtype=torch.float64))
    p["D"] = rnd(E, scale=0.5) + 1
    if bidirectional:
        p["A_b_log"] = rnd(E, N, scale=0.3) + torch.log(torch.arange(1, N + 1, dtype=torch.float64))
        p["D_b"] = rnd(E, scale=0.5) + 1
    p["in_proj.weight"] = rnd(2 * E, C, scale=1 / math.sqrt(C))
    p["conv1d.weight"] = rnd(E, 1, K, scale=0.5)
    p["conv1d.bias"] = rnd(E, scale=0.2)
    p["x_proj.weight"] = rnd(R + 2 * N, E, scale=1 / math.sqrt(E))
    p["dt_proj.weight"] = rnd(E, R, scale=1 / math.sqrt(R))
    p["dt_proj.bias"] = rnd(E, scale=0.5) - 2.0
    if bidirectional:
        p["conv1d_b.weight"] = rnd(E, 1, K, scale=0.5)
        p["conv1d_b.bias"] = rnd(E, scale=0.2)
        p["x_proj_b.weight"] = rnd(R + 2 * N, E, scale=1 / math.sqrt(E))
        p["dt_proj_b.weight"] = rnd(E, R, scale=1 / math.sqrt(R))
        p["dt_proj_b.bias"] = rnd(E, scale=0.5) - 2.0
    p["out_proj.weight"] = rnd(C, E, scale=1 / math.sqrt(E))
    # round every value to float32 (what the C module holds); compute in float64
    return {prefix + k: v.float().double().requires_grad_(True) for k, v in p.items()}


def mamba_direction(p, xz, N, R, sfx):
    """mamba_inner path for one direction on xz [B, 2E, L] (already flipped for the reverse)."""
    E = xz.shape[1] // 2
    L = xz.shape[2]
    x, z = xz.chunk(2, dim=1)
    x = F.silu(F.conv1d(x, p[f"conv1d{sfx}.weight"], p[f"conv1d{sfx}.bias"], padding=p[f"conv1d{sfx}.weight"].shape[-1] - 1,
                        groups=E)[..., :L])
    x_dbl = F.linear(x.transpose(1, 2).reshape(-1, E), p[f"x_proj{sfx}.weight"])  # (b l) d
    dt, Bm, Cm = torch.split(x_dbl, [R, N, N], dim=-1)
    dt = (p[f"dt_proj{sfx}.weight"] @ dt.t()).reshape(E, xz.shape[0], L).permute(1, 0, 2)
    Bm = Bm.reshape(xz.shape[0], L, N).transpose(1, 2)
    Cm = Cm.reshape(xz.shape[0], L, N).transpose(1, 2)
    A = -torch.exp(p["A_b_log" if sfx else "A_log"])
    return selective_scan_ref(x, dt, A, Bm, Cm, p[f"D{sfx}"], z=z, delta_bias=p[f"dt_proj{sfx}.bias"],
                              delta_softplus=True)


def mamba_forward(p, h, N, R, bidirectional, prefix=""):
    """h: [B, L, C] -> [B, L, C]."""
    q = {k[len(prefix):]: v for k, v in p.items() if k.startswith(prefix)}
    xz = (q["in_proj.weight"] @ h.reshape(-1, h.shape[-1]).t()).reshape(-1, h.shape[0], h.shape[1])
    xz = xz.permute(1, 0, 2)  # b d l
    y = mamba_direction(q, xz, N, R, "")
    if bidirectional:
        y = y + mamba_direction(q, xz.flip([-1]), N, R, "_b").flip([-1])
    return F.linear(y.transpose(1, 2), q["out_proj.weight"])


def hfm_forward(p, x, N, R, cutoff, combine, eps=1e-5):
    C = x.shape[1]
    rank = x.dim() - 2
    dims = tuple(range(2, x.dim()))
    m = freq_mask(x.shape[2:], "high", "gaussian", cutoff, 0.5)
    high = torch.fft.ifftn(m * torch.fft.fftn(x, dim=dims), dim=dims).real
    perm = (0, 2, 3, 1) if rank == 2 else (0, 2, 3, 4, 1)
    tok = high.permute(*perm).reshape(x.shape[0], -1, C)
    t = F.layer_norm(tok, (C,), p["norm.weight"], p["norm.bias"], eps)
    t = mamba_forward(p, t, N, R, True, prefix="mixer.")
    grid = t.reshape(x.shape[0], *x.shape[2:], C)
    back = grid.permute(0, rank + 1, *range(1, rank + 1))
    if combine == "attention":
        return x * torch.sigmoid(back)
    return x + back


def save_case(out, name, params, inputs, y, w):
    (y * w).sum().backward()
    for k, v in inputs.items():
        out[f"{name}.{k}"] = v.detach().float()
        out[f"{name}.grad.{k}"] = v.grad
    for k, v in params.items():
        out[f"{name}.param.{k}"] = v.detach().float()
        out[f"{name}.grad.param.{k}"] = v.grad
    out[f"{name}.w"] = w.float()
    out[f"{name}.out"] = y.detach()


def main():
    g = torch.Generator().manual_seed(4321)
    out = {}
    # Mamba blocks: C=8, N=4, K=4, expand 2 (E=16), dt_rank 2, B=2, L=13
    C, N, K, R, B, L = 8, 4, 4, 2, 2, 13
    for name, bi in (("uni", False), ("bi", True)):
        params = make_params(g, C, N, K, 2, R, bi)
        h = torch.randn(B, L, C, generator=g, dtype=torch.float64).float().double().requires_grad_(True)
        y = mamba_forward(params, h, N, R, bi)
        w = torch.randn(B, L, C, generator=g, dtype=torch.float64).float().double()
        save_case(out, f"mamba_{name}", params, {"x": h}, y, w)
    # HF-Mamba modules: 2D residual and 3D attention, C=6, N=4, R=1 (auto for C=6), cutoff 0.25
    for name, shape, combine in (("hfm2d", (2, 6, 8, 10), "residual"), ("hfm3d", (1, 6, 4, 6, 5), "attention")):
        Cm = shape[1]
        params = make_params(g, Cm, N, K, 2, 1, True, prefix="mixer.")
        params["norm.weight"] = (1 + 0.3 * torch.randn(Cm, generator=g, dtype=torch.float64)).float().double().requires_grad_(True)
        params["norm.bias"] = (0.2 * torch.randn(Cm, generator=g, dtype=torch.float64)).float().double().requires_grad_(True)
        x = (torch.randn(*shape, generator=g, dtype=torch.float64) * 2).float().double().requires_grad_(True)
        y = hfm_forward(params, x, N, 1, 0.25, combine)
        w = torch.randn(*shape, generator=g, dtype=torch.float64).float().double()
        save_case(out, name, params, {"x": x}, y, w)
    path = os.path.join(os.path.dirname(__file__), "..", "fixtures", "mamba.safetensors")
    st_io.save(path, out, {"generator": "tests/reference/gen_mamba.py", "torch": torch.__version__})
    print("wrote", os.path.normpath(path), len(out), "tensors")


if __name__ == "__main__":
    main()
