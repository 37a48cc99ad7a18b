"""Fixtures for suite `vnet`: a small V-Net (n_filters 4) in float64 with torch built-ins.

Writes tests/fixtures/vnet3d.safetensors and vnet2d.safetensors holding
  init.<key>        the initial state dict (what our model loads)
  x, w              input and the fixed weighting of the loss  L = mean(logits * w)
  train_logits      forward in train mode (batch statistics, dropout off)
  grad.<key>        dL/dparam for every parameter
  loss_<k>          L before SGD step k (k = 0..4), SGD lr 0.01 momentum 0.9 nesterov wd 1e-4
  final.<key>       every weight and buffer after the 5 steps
  eval_logits       forward in eval mode after the 5 steps (running statistics)
Run: /usr/bin/python3 tests/reference/gen_vnet.py
"""
import os
import sys

import torch

torch.set_num_threads(1)  # oneDNN + OpenMP OpenBLAS oversubscribe 2 cores badly otherwise

sys.path.insert(0, os.path.dirname(__file__))
import st_io  # noqa: E402
from vnet_torch import VNet  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures")


def make(dims, shape, path, keep_final=True):
    torch.manual_seed(1234 + dims)
    net = VNet(n_channels=1, n_classes=2, n_filters=4, normalization="batchnorm",
               has_dropout=False, dims=dims).double()
    # non-trivial BN affine parameters so their gradients matter
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    out = {}
    for k, v in net.state_dict().items():
        out["init." + k] = v.clone()
    x = torch.randn(*shape, dtype=torch.float64)
    oshape = (shape[0], 2) + tuple(shape[2:])
    w = torch.randn(*oshape, dtype=torch.float64)
    out["x"], out["w"] = x, w
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-4)
    for step in range(5):
        opt.zero_grad()
        logits = net(x)
        loss = (logits * w).mean()
        loss.backward()
        if step == 0:
            out["train_logits"] = logits.detach().clone()
            for k, p in net.named_parameters():
                out["grad." + k] = p.grad.detach().clone()
        out["loss_%d" % step] = loss.detach().reshape(1).clone()
        opt.step()
    for k, v in net.state_dict().items():
        out["final." + k] = v.clone()
    net.eval()
    with torch.no_grad():
        out["eval_logits"] = net(x)
    if not keep_final:
        out = {k: v for k, v in out.items() if not k.startswith("final.") and k != "eval_logits"
               and not k.startswith("loss_") or k == "loss_0"}
    # Computed in float64; stored rounded to float32 (relative 6e-8, far below the 1e-4 / 1e-3
    # tolerances) to keep the committed fixtures small. Losses stay float64.
    out = {k: (v if k.startswith("loss_") or v.dtype != torch.float64 else v.float()) for k, v in out.items()}
    st_io.save(path, out, {"generator": "tests/reference/gen_vnet.py", "torch": torch.__version__})


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    make(3, (2, 1, 32, 32, 16), os.path.join(OUT, "vnet3d.safetensors"))
    make(2, (2, 1, 32, 32), os.path.join(OUT, "vnet2d.safetensors"), keep_final=False)
    print("wrote vnet fixtures")
