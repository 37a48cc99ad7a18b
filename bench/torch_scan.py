#!/usr/bin/python3
"""PyTorch anchor for bench/bench_scan.c (run by it in the same invocation).

Scan at B=2, D=128, N=16, L = 1960 and 15680, float32 (mamba_ssm's CUDA kernel does not
run on a CPU):
- forward: mamba_ssm's selective_scan_ref as it is (no grad);
- forward+backward: the same recurrence written so that autograd's backward is linear in L
  (`scan_unbind`: per-token tensors from unbind() instead of indexing the precomputed
  [B,D,L,N] deltaA / deltaB_u; selective_scan_ref's `deltaA[:, :, i]` makes every step's
  backward allocate a zero [B,D,L,N] gradient, so its backward is quadratic in L: about an
  hour at L = 15680). Gradients for every input.
FFT split: torch.fft.rfftn / irfftn of a 2x64x28x28x20 tensor with the same Gaussian
high-pass mask, forward (high and low) and forward+backward of the high band.

Prints human-readable lines and "RESULT key value" lines (milliseconds, medians).
Run with Debian's interpreter: /usr/bin/python3 bench/torch_scan.py [--threads N] [--reps N]
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    # mamba_ssm/ops/selective_scan_interface.py, variable B/C ([b, n, l])
    dtype_in = u.dtype
    u = u.float()
    delta = delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias[..., None].float()
    if delta_softplus:
        delta = F.softplus(delta)
    batch, dim, dstate = u.shape[0], A.shape[0], A.shape[1]
    B = B.float()
    C = C.float()
    x = A.new_zeros((batch, dim, dstate))
    ys = []
    deltaA = torch.exp(torch.einsum("bdl,dn->bdln", delta, A))
    deltaB_u = torch.einsum("bdl,bnl,bdl->bdln", delta, B, u)
    for i in range(u.shape[2]):
        x = deltaA[:, :, i] * x + deltaB_u[:, :, i]
        y = torch.einsum("bdn,bn->bd", x, C[:, :, i])
        ys.append(y)
    y = torch.stack(ys, dim=2)
    out = y if D is None else y + u * D[:, None]
    if z is not None:
        out = out * F.silu(z)
    return out.to(dtype=dtype_in)


def scan_unbind(u, delta, A, B, C, D, z, delta_bias, delta_softplus=True):
    """selective_scan_ref's recurrence with per-token tensors (linear-time autograd)."""
    delta = delta + delta_bias[..., None]
    if delta_softplus:
        delta = F.softplus(delta)
    x = A.new_zeros((u.shape[0], A.shape[0], A.shape[1]))
    ys = []
    for dl, ut, bt, ct in zip(delta.unbind(2), u.unbind(2), B.unbind(2), C.unbind(2)):
        x = torch.exp(dl[..., None] * A) * x + (dl * ut)[..., None] * bt[:, None, :]
        ys.append(torch.einsum("bdn,bn->bd", x, ct))
    y = torch.stack(ys, dim=2) + u * D[:, None]
    return y * F.silu(z)


def median_ms(fn, reps, warm=1):
    for _ in range(warm):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


def bench_scan(L, reps):
    b, d, n = 2, 128, 16
    g = torch.Generator().manual_seed(0)
    u = torch.randn(b, d, L, generator=g)
    delta = torch.randn(b, d, L, generator=g) - 2
    A = -torch.exp(torch.randn(d, n, generator=g) * 0.3)
    B = torch.randn(b, n, L, generator=g)
    C = torch.randn(b, n, L, generator=g)
    D = torch.randn(d, generator=g) * 0.1 + 1
    z = torch.randn(b, d, L, generator=g)
    bias = torch.randn(d, generator=g) * 0.1
    ins = [u, delta, A, B, C, D, z, bias]

    def fwd():
        with torch.no_grad():
            selective_scan_ref(*ins, delta_softplus=True)

    def fwdbwd():
        xs = [t.clone().requires_grad_(True) for t in ins]
        scan_unbind(*xs, delta_softplus=True).sum().backward()

    with torch.no_grad():  # the two formulations agree
        a = selective_scan_ref(*ins, delta_softplus=True)
        b = scan_unbind(*ins, delta_softplus=True)
        assert (a - b).abs().max() <= 1e-4 * a.abs().max(), "scan_unbind != selective_scan_ref"
    return median_ms(fwd, reps, warm=0), median_ms(fwdbwd, reps, warm=0)


def bench_fft(reps):
    x = torch.randn(2, 64, 28, 28, 20)
    dims = (2, 3, 4)
    nus = [2.0 * torch.fft.fftfreq(n, dtype=torch.float64) for n in (28, 28)]
    nus.append(2.0 * torch.fft.rfftfreq(20, dtype=torch.float64))
    g = torch.meshgrid(*nus, indexing="ij")
    r2 = g[0] ** 2 + g[1] ** 2 + g[2] ** 2
    m = (1.0 - torch.exp(-r2 / (2 * 0.25 ** 2))).float()

    def split(t):
        hi = torch.fft.irfftn(m * torch.fft.rfftn(t, dim=dims), s=t.shape[2:], dim=dims)
        return hi, t - hi

    def fwd():
        with torch.no_grad():
            split(x)

    def fwdbwd():
        xr = x.clone().requires_grad_(True)
        split(xr)[0].sum().backward()

    return median_ms(fwd, reps), median_ms(fwdbwd, reps)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="only L = 1960")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, reps {args.reps}")
    for L in ([1960] if args.quick else [1960, 15680]):
        f, fb = bench_scan(L, args.reps)
        print(f"RESULT scan_fwd_{L} {f:.3f}")
        print(f"RESULT scan_fwdbwd_{L} {fb:.3f}")
    f, fb = bench_fft(max(args.reps, 5))
    print(f"RESULT fft_fwd {f:.3f}")
    print(f"RESULT fft_fwdbwd {fb:.3f}")


if __name__ == "__main__":
    main()
