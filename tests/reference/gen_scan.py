"""Reference fixtures for the selective scan (suite `scan`).

`selective_scan_ref` below follows mamba_ssm's reference implementation
(mamba_ssm/ops/selective_scan_interface.py) step by step, with torch built-ins only, for the
variable-B/C case (B, C of shape [batch, N, L]). It runs in float64; the gradients of
sum(out * w) for every input come from autograd.

Run with Debian's interpreter: /usr/bin/python3 tests/reference/gen_scan.py
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import st_io  # noqa: E402


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """u, delta: (b, d, l); A: (d, n); B, C: (b, n, l); D: (d,); z: (b, d, l); delta_bias: (d,)."""
    dtype_in = u.dtype
    u = u.double()
    delta = delta.double()
    if delta_bias is not None:
        delta = delta + delta_bias[..., None].double()
    if delta_softplus:
        delta = F.softplus(delta)
    batch, dim, dstate = u.shape[0], A.shape[0], A.shape[1]
    B = B.double()
    C = C.double()
    x = A.new_zeros((batch, dim, dstate))
    ys = []
    deltaA = torch.exp(torch.einsum("bdl,dn->bdln", delta, A))
    deltaB_u = torch.einsum("bdl,bnl,bdl->bdln", delta, B, u)
    for i in range(u.shape[2]):
        x = deltaA[:, :, i] * x + deltaB_u[:, :, i]
        y = torch.einsum("bdn,bn->bd", x, C[:, :, i])
        ys.append(y)
    y = torch.stack(ys, dim=2)  # (batch dim L)
    out = y if D is None else y + u * D[:, None]
    if z is not None:
        out = out * F.silu(z)
    return out.to(dtype=dtype_in)


# name, batch, dim, L, N, has D, has z, has bias, softplus, reverse -- mirrored in tests/scan/test_scan.c
CASES = [
    ("full", 2, 5, 37, 4, True, True, True, True, False),
    ("plain", 1, 3, 20, 3, False, False, False, False, False),
    ("reverse", 2, 4, 29, 5, True, True, True, True, True),
    ("mamba16", 1, 8, 24, 16, True, False, True, True, False),
]


def make_case(g, name, b, d, L, n, has_d, has_z, has_bias, softplus, reverse):
    t = {}
    t["u"] = torch.randn(b, d, L, generator=g)
    if softplus:
        t["delta"] = torch.randn(b, d, L, generator=g) * 1.5 - 1.0
        t["delta"][0, 0, 3] = 25.0  # above softplus's threshold (linear branch)
    else:
        t["delta"] = torch.rand(b, d, L, generator=g) * 0.5 + 0.05
    a_log = torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(d, 1)
    t["A"] = -torch.exp(a_log + 0.3 * torch.randn(d, n, generator=g))
    t["B"] = torch.randn(b, n, L, generator=g)
    t["C"] = torch.randn(b, n, L, generator=g)
    if has_d:
        t["D"] = torch.randn(d, generator=g)
    if has_z:
        t["z"] = torch.randn(b, d, L, generator=g)
    if has_bias:
        t["delta_bias"] = torch.randn(d, generator=g) * 0.5
    w = torch.randn(b, d, L, generator=g)

    x = {k: v.double().requires_grad_(True) for k, v in t.items()}
    flip = (lambda v: v.flip(-1)) if reverse else (lambda v: v)
    out = selective_scan_ref(flip(x["u"]), flip(x["delta"]), x["A"], flip(x["B"]), flip(x["C"]),
                             x.get("D"), flip(x["z"]) if "z" in x else None, x.get("delta_bias"),
                             delta_softplus=softplus)
    out = flip(out)
    (out * w.double()).sum().backward()
    res = {f"{name}.{k}": v for k, v in t.items()}
    res[f"{name}.w"] = w
    res[f"{name}.out"] = out.detach()
    for k, v in x.items():
        res[f"{name}.grad.{k}"] = v.grad
    return res


def main():
    g = torch.Generator().manual_seed(1234)
    out = {}
    for case in CASES:
        out.update(make_case(g, *case))
    path = os.path.join(os.path.dirname(__file__), "..", "fixtures", "selective_scan.safetensors")
    st_io.save(path, out, {"generator": "tests/reference/gen_scan.py", "torch": torch.__version__})
    print("wrote", os.path.normpath(path), len(out), "tensors")


if __name__ == "__main__":
    main()
