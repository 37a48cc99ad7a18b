"""Fixtures for suite `vnet`: a small V-Net (n_filters 4) in float64 with torch built-ins.

Writes tests/fixtures/vnet3d.safetensors and vnet2d.safetensors holding
  init.<key>        the initial state dict (what our model loads)
  x, w              input and the fixed weighting of the loss  L = mean(logits * w)
  train_logits      forward in train mode (batch statistics, dropout off)
  grad.<key>        dL/dparam for every parameter, float64
  loss_<k>          L before SGD step k (k = 0..4), SGD lr 0.01 momentum 0.9 nesterov wd 1e-4
  final.<key>       every weight and buffer after the 5 steps
  eval_logits       forward in eval mode after the 5 steps (running statistics)
The inputs (init, x, w) are rounded to float32 BEFORE the float64 reference is computed, so a
float64 run from the stored inputs reproduces it to round-off; the gradients are stored in
float64 for the float64 check, the other results rounded to float32.
Fixed seeds; the sizes give every BatchNorm channel >= 16 values (a 2x2x2 bottleneck with
batch 2). conditioning.study checks the margins and measures torch's own float32 gradient
error under reroundings (metadata torch_f32_grad_err, from which the float32 bound follows); the
five-step float64 trajectory must keep every ReLU input RELU_MARGIN_F64 away from its kink.
A fixture that misses a margin is not written.
Run: /usr/bin/python3 tests/reference/gen_vnet.py [output dir]
"""
import copy
import os
import sys

import torch

torch.set_num_threads(1)  # oneDNN + OpenMP OpenBLAS oversubscribe 2 cores badly otherwise

sys.path.insert(0, os.path.dirname(__file__))
import conditioning  # noqa: E402
import st_io  # noqa: E402
from vnet_torch import VNet  # noqa: E402

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "fixtures")
# ReLU inputs of the float64 five-step trajectory must lie this far from 0 (round-off ~1e-13)
RELU_MARGIN_F64 = 1e-9
SEEDS = {3: 1234, 2: 1235}  # fixed: see the module docstring


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


def make(dims, shape, path, keep_final=True):
    seed = SEEDS[dims]
    net, x, w = build(dims, shape, seed)
    label = os.path.basename(path)

    def forward(n, j=0):
        n.train()
        n.zero_grad()
        return (n(conditioning.reround(x, j).to(n.out_conv.weight.dtype)).double() * w).mean()

    meta = conditioning.study(net, forward, lambda n: {k: p.grad.double() for k, p in n.named_parameters()},
                              label)
    margins = relu_margins(copy.deepcopy(net))
    run(copy.deepcopy(net), x, w, margins)
    if min(margins) < RELU_MARGIN_F64:
        raise SystemExit("%s: a ReLU input of the five-step trajectory is %.1e from its kink (< %g)"
                         % (label, min(margins), RELU_MARGIN_F64))
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
    out["train_logits"] = out["train_logits"].double()
    # Computed in float64; stored as float32 (the inputs exactly, the results rounded: relative
    # 6e-8, far below the tolerances) to keep the committed fixtures small. Losses stay float64.
    keep64 = ("loss_", "grad.", "train_logits")
    out = {k: (v if k.startswith(keep64) or v.dtype != torch.float64 else v.float()) for k, v in out.items()}
    meta.update({"generator": "tests/reference/gen_vnet.py", "torch": torch.__version__, "seed": str(seed)})
    st_io.save(path, out, meta)
    print("%s: seed %d" % (os.path.basename(path), seed))


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    make(3, (2, 1, 32, 32, 32), os.path.join(OUT, "vnet3d.safetensors"))
    make(2, (2, 1, 64, 64), os.path.join(OUT, "vnet2d.safetensors"), keep_final=False)
    print("wrote vnet fixtures")
