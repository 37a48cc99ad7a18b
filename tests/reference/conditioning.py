"""Conditioning checks shared by the network fixture generators (gen_vnet.py, gen_diffusion.py).

A float32 gradient check against a float64 reference only measures the implementation when the
problem itself is well conditioned in float32. Two things break that in ReLU/BatchNorm nets:
  * a ReLU input closer to its kink than float32's own error on it: another summation order
    (another BLAS kernel, another CPU) puts it on the other side and the gradient jumps;
  * a BatchNorm channel normalised over very few values (a 1x1x1 bottleneck with batch 2 holds
    2 values per channel): the normalised output is then +-1 whatever the inputs, and float32
    round-off in their difference is amplified without bound.
The generators use fixed seeds. They do not search for a lucky seed: they size the problem so
that every BatchNorm channel sees at least MIN_BN_VALUES values (checked: a fixture that misses
it is not written). ReLU inputs near the kink cannot be avoided at any useful size (with ~1e6
ReLU inputs, a few always lie within float32's error of 0), so they are counted, not refused:
one flipped ReLU moves a whole tensor's gradient by ~1/(voxels of the layer), which the
norm-wise metric below sees as noise, while a per-element max error can jump by 1e-2. The
float32 bound comes from torch's own float32 error under N_JITTER reroundings, which includes
such flips. The float64 check needs every ReLU input MIN_RELU_F64 from its kink (checked).
The measured values are stored in the fixture's metadata and printed.

The error metric is the one of tests/common/test_util.c (test_check_module_grads): per tensor,
||g - r||_2 / ||r||_2, where a tensor whose reference is near zero (RMS below NEAR_ZERO of the
network's gradient RMS, e.g. the bias of a convolution followed by BatchNorm) is measured
against the network's gradient scale (network RMS * sqrt(numel)) instead.
"""
import copy

import torch

# BatchNorm channels must be normalised over at least this many values (see above).
MIN_BN_VALUES = 16
# A ReLU input within this many times float32's own error at that ReLU is counted "at risk".
RELU_AT_RISK = 4.0
# Every ReLU input must lie this far from 0 for the float64 check (its round-off is ~1e-14).
MIN_RELU_F64 = 1e-9
# Same definition as NEAR_ZERO in tests/common/test_util.c.
NEAR_ZERO = 1e-2
# Reroundings of torch's float32 run: the parameters moved by +-1 ulp and the inputs by up to
# +-4 ulp at random, which moves every rounding as another summation order does (and, in some
# runs, flips a ReLU decision as another machine may).
N_JITTER = 23


def grad_errors(ref, got):
    """{name: error} with the tests' metric; ref and got map names to float64 tensors."""
    total = sum(r.numel() for r in ref.values())
    net_rms = (sum((r * r).sum().item() for r in ref.values()) / total) ** 0.5
    out = {}
    for k, r in ref.items():
        n = r.numel()
        rn = r.norm().item()
        scale = rn if rn >= NEAR_ZERO * net_rms * n ** 0.5 else net_rms * n ** 0.5
        out[k] = (got[k] - r).norm().item() / scale if scale > 0 else 0.0
    return out


def reround(t, seed):
    """t (float64 holding float32 values) moved by up to +-4 float32 ulp; seed 0: unchanged."""
    if not seed:
        return t
    g = torch.Generator().manual_seed(1000 + seed)
    return t * (1 + (torch.rand(t.shape, generator=g, dtype=torch.float64) - 0.5) * 8 * 2.0 ** -23)


def _jitter(net, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            ulp = torch.randint(-1, 2, p.shape, generator=g).to(p.dtype) * 2.0 ** -23
            p.mul_(1 + ulp)


def _relu_inputs(net, run):
    """The input of every nn.ReLU of net during run(net), in module order."""
    seen = []
    hooks = [m.register_forward_pre_hook(lambda _m, i: seen.append(i[0].detach().double().clone()))
             for m in net.modules() if isinstance(m, torch.nn.ReLU)]
    try:
        run(net)
    finally:
        for h in hooks:
            h.remove()
    return seen


def bn_min_values(net, run):
    """Smallest number of values any BatchNorm channel is normalised over in run(net)."""
    sizes = []
    hooks = [m.register_forward_pre_hook(lambda _m, i: sizes.append(i[0].numel() // i[0].shape[1]))
             for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    try:
        run(net)
    finally:
        for h in hooks:
            h.remove()
    return min(sizes)


def network_error(ref, got):
    """||got - ref|| / ||ref|| over all parameters at once (the float32 gradient metric)."""
    num = sum((got[k] - r).norm().item() ** 2 for k, r in ref.items())
    den = sum(r.norm().item() ** 2 for r in ref.values())
    return (num / den) ** 0.5


def study(net64, run, grads_of, label):
    """Measure the float32 conditioning of a fixture; raise when a margin is missed.

    net64: the float64 network; run(net, j=0) does the forward in net's dtype on its inputs
    rerounded by reround(input, j) and returns the loss (float64 scalar); grads_of(net)
    returns {name: float64 gradient} after a backward.
    Returns the metadata entries to store with the fixture, among them torch_f32_grad_err: the
    worst network-level error of torch's float32 gradients over N_JITTER + 1 reroundings (the
    float32 test's bound is max(1e-3, 3 x that)).
    """
    bn = bn_min_values(copy.deepcopy(net64), run)
    if bn < MIN_BN_VALUES:
        raise SystemExit("%s: a BatchNorm channel sees %d values (< %d): make the input larger"
                         % (label, bn, MIN_BN_VALUES))
    pre64 = _relu_inputs(copy.deepcopy(net64), run)
    pre32 = _relu_inputs(copy.deepcopy(net64).float(), run)
    at_risk = sum(int((a.abs() < RELU_AT_RISK * (a - b).abs().max()).sum()) for a, b in zip(pre64, pre32))
    n_relu = sum(a.numel() for a in pre64)
    kink64 = min((a.abs().min().item() for a in pre64), default=float("inf"))
    if kink64 < MIN_RELU_F64:
        raise SystemExit("%s: a ReLU input is %.1e from its kink (< %g): the float64 check would "
                         "depend on round-off" % (label, kink64, MIN_RELU_F64))
    ref = copy.deepcopy(net64)
    run(ref).backward()
    g64 = grads_of(ref)
    errs = []
    for j in range(N_JITTER + 1):
        n32 = copy.deepcopy(net64).float()
        if j:
            _jitter(n32, j)
        run(n32, j).backward()
        errs.append(network_error(g64, grads_of(n32)))
    print("%s: BatchNorm >= %d values per channel; %d of %d ReLU inputs within %g x float32's error "
          "of the kink; smallest |ReLU input| %.1e; torch float32 network gradient error over %d "
          "reroundings: median %.2e, max %.2e"
          % (label, bn, at_risk, n_relu, RELU_AT_RISK, kink64, len(errs), sorted(errs)[len(errs) // 2],
             max(errs)))
    return {"min_bn_values": str(bn), "relu_inputs_at_risk_f32": "%d of %d" % (at_risk, n_relu),
            "min_abs_relu_input": "%.2e" % kink64, "torch_f32_grad_err": "%.3e" % max(errs),
            "torch_f32_grad_errs": " ".join("%.2e" % e for e in errs)}
