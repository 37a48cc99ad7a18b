"""Fixtures for suite `vnet`: a small V-Net (n_filters 4) in float64 with torch built-ins.

Writes tests/fixtures/vnet3d.safetensors and vnet2d.safetensors holding
  init.<key>        the initial state dict (what our model loads)
  x, w              input and the fixed weighting of the loss  L = mean(logits * w)
  train_logits      forward in train mode (batch statistics, dropout off)
  grad.<key>        dL/dparam for every parameter
  loss_<k>          L before SGD step k (k = 0..4), SGD lr 0.01 momentum 0.9 nesterov wd 1e-4
  final.<key>       every weight and buffer after the 5 steps
  eval_logits       forward in eval mode after the 5 steps (running statistics)
The tensors are stored as float32; the inputs (init, x, w) are rounded to float32 BEFORE the
float64 reference is computed, so a float64 run from the stored inputs reproduces it to
round-off. The seed is the first one (from 1234 + dims) whose problem is well conditioned
for a float32 check (see well_conditioned); it is recorded in the metadata.
Run: /usr/bin/python3 tests/reference/gen_vnet.py [output dir]
"""
import copy
import os
import sys

import torch

torch.set_num_threads(1)  # oneDNN + OpenMP OpenBLAS oversubscribe 2 cores badly otherwise

sys.path.insert(0, os.path.dirname(__file__))
import st_io  # noqa: E402
from vnet_torch import VNet  # noqa: E402

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "fixtures")
# ReLU inputs closer than this to 0 at the first forward: float32 round-off (~1e-6 there) may
# put them on the other side of the kink, and the float32 gradient check fails by ~1e-2
RELU_MARGIN_F32 = 4e-6
# the same for the float64 five-step trajectory (round-off ~1e-13)
RELU_MARGIN_F64 = 1e-9


def f32(t):
    """t rounded to float32, kept float64 (what the fixture stores is what torch computes on)"""
    return t.float().double()


def build(dims, shape, seed):
    torch.manual_seed(seed)
    net = VNet(n_channels=1, n_classes=2, n_filters=4, normalization="batchnorm",
               has_dropout=False, dims=dims).double()
    with torch.no_grad():
        # non-trivial BN affine parameters so their gradients matter
        for m in net.modules():
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        for v in net.state_dict().values():
            if v.is_floating_point():
                v.copy_(f32(v))
    x = f32(torch.randn(*shape, dtype=torch.float64))
    oshape = (shape[0], 2) + tuple(shape[2:])
    w = f32(torch.randn(*oshape, dtype=torch.float64))
    return net, x, w


def relu_margins(net):
    """Hooks recording min |input| of every ReLU per forward into the returned list."""
    margins = []

    def hook(_m, inp):
        margins[-1] = min(margins[-1], inp[0].detach().abs().min().item())

    for m in net.modules():
        if isinstance(m, torch.nn.ReLU):
            m.register_forward_pre_hook(hook)
    return margins


def grad_errors(net, x, w):
    """Worst error of torch's own float32 gradients against float64, with the test's metric."""
    def grads(n, xx, ww):
        n.train()
        n.zero_grad()
        (n(xx) * ww).mean().backward()
        return {k: p.grad.detach().double() for k, p in n.named_parameters()}
    g64 = grads(copy.deepcopy(net), x, w)
    g32 = grads(copy.deepcopy(net).float(), x.float(), w.float())
    scale = max(g.abs().max().item() for g in g64.values())
    worst = 0.0
    for k, g in g64.items():
        ref = g.abs().max().item()
        worst = max(worst, (g32[k] - g).abs().max().item() / (ref if ref >= 1e-6 * scale else scale))
    return worst


def run(net, x, w, margins):
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-4)
    out = {}
    for step in range(5):
        opt.zero_grad()
        margins.append(float("inf"))
        logits = net(x)
        loss = (logits * w).mean()
        loss.backward()
        if step == 0:
            out["train_logits"] = logits.detach().clone()
            for k, p in net.named_parameters():
                out["grad." + k] = p.grad.detach().clone()
        out["loss_%d" % step] = loss.detach().reshape(1).clone()
        opt.step()
    return out


def well_conditioned(dims, shape, seed):
    """The loss is not differentiable where a ReLU input is 0: a check against a reference
    is only meaningful when no ReLU input lies within round-off of its kink (then float32
    and float64 gradients agree to ~1e-5; one input across the kink moves them ~1e-2)."""
    net, x, w = build(dims, shape, seed)
    if grad_errors(net, x, w) > 1e-4:
        return False
    margins = relu_margins(net)
    run(net, x, w, margins)
    return margins[0] >= RELU_MARGIN_F32 and min(margins) >= RELU_MARGIN_F64


def make(dims, shape, path, keep_final=True):
    seed = 1234 + dims
    while not well_conditioned(dims, shape, seed):
        seed += 1
    net, x, w = build(dims, shape, seed)
    out = {}
    for k, v in net.state_dict().items():
        out["init." + k] = v.clone()
    out["x"], out["w"] = x, w
    out.update(run(net, x, w, []))
    for k, v in net.state_dict().items():
        out["final." + k] = v.clone()
    net.eval()
    with torch.no_grad():
        out["eval_logits"] = net(x)
    if not keep_final:
        out = {k: v for k, v in out.items() if not k.startswith("final.") and k != "eval_logits"
               and not k.startswith("loss_") or k == "loss_0"}
    # Computed in float64; stored as float32 (the inputs exactly, the results rounded: relative
    # 6e-8, far below the tolerances) to keep the committed fixtures small. Losses stay float64.
    out = {k: (v if k.startswith("loss_") or v.dtype != torch.float64 else v.float()) for k, v in out.items()}
    st_io.save(path, out, {"generator": "tests/reference/gen_vnet.py", "torch": torch.__version__,
                           "seed": seed})
    print("%s: seed %d" % (os.path.basename(path), seed))


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    make(3, (2, 1, 32, 32, 16), os.path.join(OUT, "vnet3d.safetensors"))
    make(2, (2, 1, 32, 32), os.path.join(OUT, "vnet2d.safetensors"), keep_final=False)
    print("wrote vnet fixtures")
