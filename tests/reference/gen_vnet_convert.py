#!/usr/bin/python3
"""Fixtures for the test vnet-pth-convert (suite vnet): UA-MT V-Nets saved by PyTorch, which
tools/pth2safetensors.py --vnet converts and diffcl_model_load must then reproduce.

Builds the repository's torch reference V-Net (vnet_torch.py: UA-MT's networks/vnet.py with
torch built-ins) as UA-MT trains it (batch norm, has_dropout=True), gives its batch norms
non-trivial affine parameters and running statistics (an eval-mode forward uses them), and
writes into tests/fixtures/:

  vnet_uamt3d.pth   torch.save(model.state_dict()) of a 3-D V-Net: 1 channel, 2 classes,
                    n_filters 2
  vnet_uamt2d.pth   the same of a 2-D V-Net: 2 channels, 3 classes, n_filters 2
  vnet_uamt_expected.safetensors
                    x3d [1,1,32,32,32], logits3d [1,2,32,32,32], x2d [1,2,32,32],
                    logits2d [1,3,32,32]: one eval-mode forward of each network, computed in
                    float64 from the stored float32 weights and input, stored as float32;
                    metadata "spec3d" / "spec2d": the --vnet SPEC of each file.

Small on purpose (the .pth files are committed): n_filters 2, one 32^3 / 32^2 window.
Run with Debian's torch: /usr/bin/python3 tests/reference/gen_vnet_convert.py [output dir]
"""
import os
import sys

import torch

torch.set_num_threads(1)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import st_io  # noqa: E402
from vnet_torch import VNet  # noqa: E402

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "fixtures")
NETS = {  # dims: (in_channels, classes, n_filters, seed)
    3: (1, 2, 2, 19001),
    2: (2, 3, 2, 19002),
}


def build(dims, cin, classes, nf, seed):
    torch.manual_seed(seed)
    net = VNet(n_channels=cin, n_classes=classes, n_filters=nf, normalization="batchnorm",
               has_dropout=True, dims=dims)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(6000)  # a UA-MT run's iterations
    return net.eval()


def main():
    os.makedirs(OUT, exist_ok=True)
    expected, meta = {}, {"generator": "tests/reference/gen_vnet_convert.py", "torch": torch.__version__}
    for dims, (cin, classes, nf, seed) in NETS.items():
        net = build(dims, cin, classes, nf, seed)
        path = os.path.join(OUT, "vnet_uamt%dd.pth" % dims)
        torch.save(net.state_dict(), path)  # as UA-MT saves its iter_N.pth
        x = torch.randn((1, cin) + (32,) * dims, generator=torch.Generator().manual_seed(seed + 1))
        ref = net.double()
        with torch.no_grad():
            y = ref(x.double())
        expected["x%dd" % dims] = x
        expected["logits%dd" % dims] = y.float()
        meta["spec%dd" % dims] = "dims=%d,classes=%d,n_filters=%d,in_channels=%d" % (dims, classes, nf, cin)
        print("%s: %d bytes, |logits| max %.3f" % (os.path.basename(path), os.path.getsize(path),
                                                   y.abs().max().item()))
    st_io.save(os.path.join(OUT, "vnet_uamt_expected.safetensors"), expected, meta)
    print("wrote vnet_uamt_expected.safetensors")


if __name__ == "__main__":
    main()
