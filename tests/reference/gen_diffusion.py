"""Fixtures for suite `diffusion`: the Diff-CL denoiser (DS) reimplemented with torch built-ins
in float64, plus the guided-diffusion schedule tables and timestep respacing.

The network follows the public PyTorch `DenoiseModel` (TimeStepEmbedding + Encoder_denoise +
Decoder_denoise): every conv stage is Conv(k3,p1) -> ReLU -> BatchNorm -> Dropout(0.1) and then,
for all but the last stage of its block, + temb_proj(SiLU(temb)) per channel; down/up-sampling
blocks are Conv(k2,s2)/ConvTranspose(k2,s2) -> ReLU -> BatchNorm -> TembFusion. The parameter
names are those of that module, so the state dict loads into libdiffcl unchanged.

Writes tests/fixtures/diffusion2d.safetensors and diffusion3d.safetensors holding
  init.<key>          initial state dict (weights rounded to float32 values, buffers)
  image, x_t, t       inputs ([N,1,...], [N,2,...], [N] int64)
  w                   fixed weighting of the objective L = sum(out * w)
  out                 denoiser output in train mode (batch statistics; stage dropout off)
(float64, out and the gradients stored as float64). 2D: 2x1x64x64, 4 filters; 3D:
2x1x32x32x32, 2 filters; time MLP 32/64 and 16/32 wide; fixed seeds. The sizes give every
BatchNorm channel >= 16 values (a 1x1x1 bottleneck with batch 2 normalises 2 values, and
float32 then amplifies round-off without bound); conditioning.study checks that and the float64
ReLU margin, and records torch's own float32 gradient error under reroundings in the metadata
(torch_f32_grad_err, from which the float32 test's network-level bound follows).
  grad.<key>          dL/dparam for every parameter (zeros where unused: last-stage temb_proj)
  grad_image, grad_x_t
  after.<key>         BatchNorm running statistics after that forward
  eval_out            output in eval mode after it (running statistics)
and tests/fixtures/diffusion_schedule.safetensors with linear / cosine betas and alpha_bar
(T = 1000 and T = 50) and respaced timestep lists.
Run: /usr/bin/python3 tests/reference/gen_diffusion.py
"""
import copy
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import conditioning  # noqa: E402
import st_io  # noqa: E402

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "fixtures")


# ------------------------------------------------------------------ network ----

def timestep_embedding(t, dim):
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float64) * -(math.log(10000.0) / (half - 1)))
    a = t.double()[:, None] * freqs[None, :]
    return torch.cat([torch.sin(a), torch.cos(a)], dim=1)


class TembFusion(nn.Module):
    def __init__(self, hidden, c):
        super().__init__()
        self.temb_proj = nn.Linear(hidden, c)

    def forward(self, x, silu_temb):
        b = self.temb_proj(silu_temb)
        return x + b.reshape(b.shape + (1,) * (x.dim() - 2))


class Stage(nn.Module):  # ConvBlockTembOneStage
    def __init__(self, dims, cin, cout, hidden, temb_flag, p):
        super().__init__()
        Conv = nn.Conv3d if dims == 3 else nn.Conv2d
        BN = nn.BatchNorm3d if dims == 3 else nn.BatchNorm2d
        Drop = nn.Dropout3d if dims == 3 else nn.Dropout2d
        self.temb_flag = temb_flag
        self.conv = Conv(cin, cout, 3, padding=1)
        self.relu = nn.ReLU()
        self.dropout = Drop(p=p)
        self.norm = BN(cout)
        self.temb_fusion = TembFusion(hidden, cout)

    def forward(self, x, st):
        h = self.dropout(self.norm(self.relu(self.conv(x))))
        return self.temb_fusion(h, st) if self.temb_flag else h


class Block(nn.Module):  # ConvBlockTemb
    def __init__(self, dims, n, cin, cout, hidden, p):
        super().__init__()
        self.ops = nn.ModuleList([Stage(dims, cin if i == 0 else cout, cout, hidden, i < n - 1, p)
                                  for i in range(n)])

    def forward(self, x, st):
        for s in self.ops:
            x = s(x, st)
        return x


class UpDown(nn.Module):  # DownsamplingConvBlockTemb / UpsamplingDeconvBlockTemb
    def __init__(self, dims, cin, cout, hidden, up):
        super().__init__()
        if up:
            Conv = nn.ConvTranspose3d if dims == 3 else nn.ConvTranspose2d
        else:
            Conv = nn.Conv3d if dims == 3 else nn.Conv2d
        BN = nn.BatchNorm3d if dims == 3 else nn.BatchNorm2d
        self.ops = nn.ModuleList([Conv(cin, cout, 2, stride=2, padding=0), nn.ReLU(), BN(cout),
                                  TembFusion(hidden, cout)])

    def forward(self, x, st):
        return self.ops[3](self.ops[2](self.ops[1](self.ops[0](x))), st)


class TimeMLP(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.dense = nn.ModuleList([nn.Linear(dim, hidden), nn.Linear(hidden, hidden)])

    def forward(self, e):
        return self.dense[1](F.silu(self.dense[0](e)))


class Embedding(nn.Module):  # TimeStepEmbedding
    def __init__(self, dims, cin, F_, dim, hidden, p):
        super().__init__()
        self.dim = dim
        self.temb = TimeMLP(dim, hidden)
        self.emb = Block(dims, 1, cin, F_, hidden, p)


class Encoder(nn.Module):
    def __init__(self, dims, F_, hidden, p):
        super().__init__()
        self.block_one_dw = UpDown(dims, F_, 2 * F_, hidden, False)
        self.block_two = Block(dims, 2, 2 * F_, 2 * F_, hidden, p)
        self.block_two_dw = UpDown(dims, 2 * F_, 4 * F_, hidden, False)
        self.block_three = Block(dims, 3, 4 * F_, 4 * F_, hidden, p)
        self.block_three_dw = UpDown(dims, 4 * F_, 8 * F_, hidden, False)
        self.block_four = Block(dims, 3, 8 * F_, 8 * F_, hidden, p)
        self.block_four_dw = UpDown(dims, 8 * F_, 16 * F_, hidden, False)
        self.block_five = Block(dims, 3, 16 * F_, 16 * F_, hidden, p)

    def forward(self, x1, st):
        x2 = self.block_two(self.block_one_dw(x1, st), st)
        x3 = self.block_three(self.block_two_dw(x2, st), st)
        x4 = self.block_four(self.block_three_dw(x3, st), st)
        x5 = self.block_five(self.block_four_dw(x4, st), st)
        return x1, x2, x3, x4, x5


class Decoder(nn.Module):
    def __init__(self, dims, F_, n_classes, hidden, p):
        super().__init__()
        Conv = nn.Conv3d if dims == 3 else nn.Conv2d
        self.block_five_up = UpDown(dims, 16 * F_, 8 * F_, hidden, True)
        self.block_six = Block(dims, 3, 8 * F_, 8 * F_, hidden, p)
        self.block_six_up = UpDown(dims, 8 * F_, 4 * F_, hidden, True)
        self.block_seven = Block(dims, 3, 4 * F_, 4 * F_, hidden, p)
        self.block_seven_up = UpDown(dims, 4 * F_, 2 * F_, hidden, True)
        self.block_eight = Block(dims, 2, 2 * F_, 2 * F_, hidden, p)
        self.block_eight_up = UpDown(dims, 2 * F_, F_, hidden, True)
        self.block_nine = Block(dims, 1, F_, F_, hidden, p)
        self.out_conv = Conv(F_, n_classes, 1, padding=0)

    def forward(self, x1, x2, x3, x4, x5, st):
        h = self.block_six(self.block_five_up(x5, st) + x4, st)
        h = self.block_seven(self.block_six_up(h, st) + x3, st)
        h = self.block_eight(self.block_seven_up(h, st) + x2, st)
        h = self.block_nine(self.block_eight_up(h, st) + x1, st)
        return self.out_conv(h)


class DenoiseModel(nn.Module):
    def __init__(self, dims, in_channels, n_classes, F_, dim=128, hidden=512, p=0.1):
        super().__init__()
        self.embedding_diffusion = Embedding(dims, in_channels + n_classes, F_, dim, hidden, p)
        self.encoder = Encoder(dims, F_, hidden, p)
        self.decoder = Decoder(dims, F_, n_classes, hidden, p)

    def forward(self, x_t, t, image):
        e = self.embedding_diffusion
        temb = e.temb(timestep_embedding(t, e.dim))
        st = F.silu(temb)
        x1 = e.emb(torch.cat([image, x_t], dim=1), st)
        return self.decoder(*self.encoder(x1, st), st)


def make_net(dims, shape, F_, dim, hidden, path, seed):
    torch.manual_seed(seed)
    n_classes = 2
    net = DenoiseModel(dims, 1, n_classes, F_, dim, hidden, p=0.0).double()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        for p in net.parameters():  # the values our float32 model holds exactly
            p.copy_(p.float().double())
    out = {}
    for k, v in net.state_dict().items():
        out["init." + k] = v.float() if v.is_floating_point() else v.clone()
    image = torch.randn(*shape, dtype=torch.float64).float().double().requires_grad_(True)
    xshape = (shape[0], n_classes) + tuple(shape[2:])
    x_t = torch.randn(*xshape, dtype=torch.float64).float().double().requires_grad_(True)
    t = torch.tensor([17, 803][: shape[0]], dtype=torch.int64)
    w = torch.randn(*xshape, dtype=torch.float64).float().double()
    out.update(image=image.detach().float(), x_t=x_t.detach().float(), t=t, w=w.float())

    def forward(n, j=0):
        global timestep_embedding
        n.train()
        n.zero_grad()
        dt = n.decoder.out_conv.weight.dtype
        f64 = timestep_embedding
        timestep_embedding = lambda tt, d: f64(tt, d).to(dt)  # noqa: E731
        try:
            yy = n(conditioning.reround(x_t.detach(), j).to(dt), t,
                   conditioning.reround(image.detach(), j).to(dt))
        finally:
            timestep_embedding = f64
        return (yy.double() * w).sum()

    meta = conditioning.study(net, forward, lambda n: {k: (p.grad if p.grad is not None else
                                                          torch.zeros_like(p)).double()
                                                      for k, p in n.named_parameters()},
                              os.path.basename(path))
    net.train()
    y = net(x_t, t, image)
    loss = (y * w).sum()
    loss.backward()
    out["out"] = y.detach()
    for k, p in net.named_parameters():
        g = p.grad if p.grad is not None else torch.zeros_like(p)
        out["grad." + k] = g.detach()
    out["grad_image"] = image.grad.detach()
    out["grad_x_t"] = x_t.grad.detach()
    for k, v in net.state_dict().items():
        if "running" in k:
            out["after." + k] = v.float()
    net.eval()
    with torch.no_grad():
        out["eval_out"] = net(x_t, t, image).float()
    meta.update({"generator": "tests/reference/gen_diffusion.py", "torch": torch.__version__,
                 "dims": dims, "n_filters": F_, "time_embed_dim": dim, "time_hidden_dim": hidden,
                 "seed": seed})
    st_io.save(path, out, meta)


# ----------------------------------------------------------------- schedule ----
# guided-diffusion gaussian_diffusion.get_named_beta_schedule / respace.space_timesteps

def linear_betas(T):
    scale = 1000 / T
    return np.linspace(scale * 0.0001, scale * 0.02, T, dtype=np.float64)


def cosine_betas(T, max_beta=0.999):
    f = lambda s: math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    return np.array([min(1 - f((i + 1) / T) / f(i / T), max_beta) for i in range(T)],
                    dtype=np.float64)


def space_timesteps(T, count):
    frac_stride = 1 if count <= 1 else (T - 1) / (count - 1)
    cur, taken = 0.0, []
    for _ in range(count):
        taken.append(round(cur))
        cur += frac_stride
    return sorted(set(taken))


def space_ddim(T, count):
    for i in range(1, T):
        if len(range(0, T, i)) == count:
            return list(range(0, T, i))
    raise ValueError


def make_schedule(path):
    out = {}
    for T in (1000, 50):
        for name, fn in (("linear", linear_betas), ("cosine", cosine_betas)):
            b = fn(T)
            out["%s_%d.betas" % (name, T)] = b
            out["%s_%d.alpha_bar" % (name, T)] = np.cumprod(1.0 - b)
    for T, k in ((1000, 10), (1000, 4), (1000, 7), (1000, 1000), (50, 3), (1000, 333)):
        out["even_%d_%d" % (T, k)] = np.array(space_timesteps(T, k), dtype=np.int64)
    for T, k in ((1000, 10), (1000, 50), (50, 5)):
        out["stride_%d_%d" % (T, k)] = np.array(space_ddim(T, k), dtype=np.int64)
    st_io.save(path, out, {"generator": "tests/reference/gen_diffusion.py"})


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    make_schedule(os.path.join(OUT, "diffusion_schedule.safetensors"))
    make_net(2, (2, 1, 64, 64), 4, 32, 64, os.path.join(OUT, "diffusion2d.safetensors"), 20)
    make_net(3, (2, 1, 32, 32, 32), 2, 16, 32, os.path.join(OUT, "diffusion3d.safetensors"), 30)
