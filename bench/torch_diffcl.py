#!/usr/bin/python3
"""PyTorch side of bench/bench_train.c: the full Diff-CL training iteration (and the CS step)
written with torch built-ins, at the shapes and with the passes of libdiffcl's trainer.

--mode diffcl   one Diff-CL iteration as diffcl_trainer_step runs it with warm-up and ramp-up 0
                (mu = 1, every term at full weight), on 2 labeled + 2 unlabeled 2-D patches:
  CS fwd    CS = the 2-D V-Net of tests/reference/vnet_torch.py (n_filters 16, batch norm,
            Dropout2d(0.5)) with an HF-Mamba module after encoder levels 3, 4 and 5 (the
            library's DIFFCL_HFM_DEFAULT_LEVELS), on the whole batch of 4; returns the logits and
            the last decoder feature (before dropout) for the contrastive loss.
  DS fwd    DS = tests/reference/gen_diffusion.py's DenoiseModel (imported by path; n_filters
            16, time embedding 128 -> 512, stage dropout 0.1, train mode), two passes with
            gradients: the supervised one on the labeled half (t ~ U{0..999}, x_t = q_sample(
            2 one_hot(label) - 1, t)) and L^d_p's on the unlabeled half (x_t from the CS's argmax).
  DDIM      without gradients, on the weak views of the unlabeled patches, both networks in
            eval mode: the CS argmax (one more CS forward), and the DS's pseudo label, DDIM
            (eta 0) from pure noise over --ddim-steps (4, the trainer's ddim_steps_train)
            evenly respaced timesteps, as diffcl_diffusion_sample; then softmax, 3-tap Gaussian
            smoothing (sigma 1, renormalised at the borders), argmax and the confidence
            (diffcl_diffusion_pseudo_label).
  losses    CS supervised Dice+CE, DS supervised Dice+CE, L^d_p Dice+CE, L^c_p: CE weighted by
            the DS confidence + Dice on the whole pseudo label (the trainer's default
            cps_variant), L_cl: class prototypes of the detached labeled features -> EMA memory
            bank (0.99) -> InfoNCE (tau 0.1) on <= 4096 unlabeled voxels, an equal quota per
            class, drawn without replacement; total = sum (eta = 0.1 on L_cl).
--iteration 0.1 the 0.1.0 iteration instead: pseudo labels from the one (strong) view in train
            mode, L^c_p and L_cl on the agreement mask, voxels drawn uniformly.
  backward  one backward of the total through both networks.
  step      one SGD (lr 0.01 poly, momentum 0.9, Nesterov, weight decay 3e-5) over both nets.
--mode cs       the CS step: the same V-Net + HF-Mamba on the 2 labeled patches, Dice+CE,
                backward, the same SGD (libdiffcl's supervised iteration / bench_train cs_step).

HF-Mamba (lib/model/hf_mamba.c, include/diffcl/mamba.h defaults): Gaussian high-pass at 0.25
Nyquist with torch.fft.rfftn / irfftn, voxel tokens [B, H*W, C] (row-major), LayerNorm, then a
bidirectional Mamba block (Vision Mamba "v2": in_proj C -> 2E shared, per direction causal
depthwise conv1d k=4 -> SiLU -> x_proj -> dt_proj -> selective scan with z gating, delta bias
and softplus; the reverse direction on the flipped sequence with its own _b weights; sum ->
out_proj), d_state 16, expand 2, dt_rank ceil(C/16), mamba_ssm's initialisation; residual.

The selective scan is vectorised over batch, channels and state; only the walk along the
sequence is a Python loop (one in-place torch.addcmul per token). Formulations (--scan):
  chunked   (default) a custom autograd.Function in torch ops, the layout of libdiffcl's own
            scan: exp(delta A) and delta u B expanded for --chunk tokens at a time ([T, B, E, N],
            cache-sized), only chunk-boundary states kept, the backward recomputes each chunk
            and runs the reverse recurrence (dh_t = g_t C_t + exp(delta_{t+1} A) dh_{t+1}), every
            reduction an einsum;
  loop      the same recurrence Function over [L, B, E, N] tensors expanded for every token at
            once (mamba_ssm's selective_scan_ref layout, without its quadratic autograd);
  autograd  plain autograd over the per-token addcmul (an autograd node per token).
All three match selective_scan_ref in value and gradients (--check). The two directions of
a bidirectional block go through one scan call (the reverse one, on the flipped sequence,
stacked behind the forward one on the batch axis with its own A, D and dt bias per row), so
the Python loop runs once per token, not twice. The CS step at 224x192 takes about 0.75 s
with chunked (chunk 16; 8, 32, 64 were slower), 1.2 s with loop and 1.6 s with autograd at
1 thread. The causal depthwise conv1d is written as K shifted addcmuls (--conv1d shifts,
default): torch 1.13's nn.Conv1d(groups=E) backward takes seconds on a CPU at L = 2688
(--conv1d torch keeps it, as mamba_ssm's fallback path).

What is not mirrored exactly (see docs/performance.md): the input is random (x ~ N(0,1),
label x > 0.5) instead of the trainer's sampler output (phantom slices with augmentation; the
trainer's sampler runs in a prefetch thread); random draws (timesteps, noise, voxel sample)
come from torch's generator, not libdiffcl's keyed RNG, so the losses' values differ; the
reverse Mamba direction flips the sequence (Vision Mamba) where libdiffcl runs an anti-causal
conv and a reverse scan in place.

Prints "RESULT key value" lines (medians of --reps iterations after one discarded; part_*_ms
are medians of each part's wall time) which bench_train reads, and a per-part table.
Run with Debian's interpreter:
    /usr/bin/python3 bench/torch_diffcl.py --mode diffcl --size 224,192 --reps 3 --threads 2
"""
import argparse
import math
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))
import gen_diffusion  # noqa: E402
from vnet_torch import VNet  # noqa: E402

# gen_diffusion's sinusoidal embedding is float64 (its fixtures run in float64): cast for a
# float32 network, as its own float32_run does.
_temb64 = gen_diffusion.timestep_embedding
gen_diffusion.timestep_embedding = lambda t, d: _temb64(t, d).float()


sys.path.insert(0, HERE)
from torch_common import add_run_args, report_times, result, rss_mib, sizes, start  # noqa: E402


# ------------------------------------------------------------- selective scan ----

class _LinearRecurrence(torch.autograd.Function):
    """H[t] = dA[t] * H[t-1] + dBu[t] (H[-1] = 0) over the first axis of [L, ...] tensors: one
    in-place addcmul per token, forward and backward (the backward is the reverse recurrence
    dH[t] = gH[t] + dA[t+1] dH[t+1]; then gdA[t] = dH[t] H[t-1], gdBu = dH), with no autograd
    node per token."""

    @staticmethod
    def forward(ctx, dA, dBu):
        H = torch.empty_like(dBu)
        H[0].copy_(dBu[0])
        for t in range(1, H.shape[0]):
            torch.addcmul(dBu[t], dA[t], H[t - 1], out=H[t])
        ctx.save_for_backward(dA, H)
        return H

    @staticmethod
    def backward(ctx, gH):
        dA, H = ctx.saved_tensors
        dH = torch.empty_like(H)
        L = H.shape[0]
        dH[L - 1].copy_(gH[L - 1])
        for t in range(L - 2, -1, -1):
            torch.addcmul(gH[t], dA[t + 1], dH[t + 1], out=dH[t])
        gdA = torch.zeros_like(dA)
        torch.mul(dH[1:], H[:-1], out=gdA[1:])
        return gdA, dH


def _expand(u, delta, A, Bm):
    """dA = exp(delta A), dBu = delta u B for every token at once: [L, B, E, N] each."""
    dlt = delta.permute(2, 0, 1)                                   # [L, B, E]
    dA = torch.exp(dlt.unsqueeze(-1) * A)
    dBu = (dlt * u.permute(2, 0, 1)).unsqueeze(-1) * Bm.permute(1, 0, 2).unsqueeze(2)
    return dA, dBu


def _finish(H, u, Cm, D, z):
    y = torch.einsum("lben,bln->bel", H, Cm)
    return (y + u * D[..., None]) * F.silu(z)


def scan_loop(u, delta, A, Bm, Cm, D, z, bias):
    """u, delta, z [B, E, L]; A [E, N]; Bm, Cm [B, L, N]; D, bias [E] -> [B, E, L]."""
    delta = F.softplus(delta + bias[..., None])
    dA, dBu = _expand(u, delta, A, Bm)
    return _finish(_LinearRecurrence.apply(dA, dBu), u, Cm, D, z)


def _loop(u, delta, A, Bm, Cm, D, z):
    """The scan on delta after softplus with plain autograd: one addcmul node per token."""
    dA, dBu = _expand(u, delta, A, Bm)
    h = torch.zeros_like(dA[0])
    hs = []
    for a, b in zip(dA.unbind(0), dBu.unbind(0)):
        h = torch.addcmul(b, a, h)
        hs.append(h)
    return _finish(torch.stack(hs, 0), u, Cm, D, z)


def scan_autograd(u, delta, A, Bm, Cm, D, z, bias):
    return _loop(u, F.softplus(delta + bias[..., None]), A, Bm, Cm, D, z)


class _ChunkedScan(torch.autograd.Function):
    """The selective scan's state recurrence and output, y[b,e,t] = sum_n C[b,t,n] h[b,e,t,n]
    with h_t = exp(delta_t A) h_{t-1} + delta_t u_t B_t, processed --chunk tokens at a time:
    exp(delta A) and delta u B are expanded for one chunk only ([T, B, E, N], cache-sized), the
    state is walked with one in-place addcmul per token, and only the chunk-boundary states are
    kept; the backward recomputes each chunk and runs the reverse recurrence the same way, with
    every reduction vectorised (einsum). The layout libdiffcl's own scan uses, in torch ops."""

    @staticmethod
    def _expand(d, u, A, Bm, s):
        dT = d[:, :, s].permute(2, 0, 1)                           # [T, B, E]
        duT = dT * u[:, :, s].permute(2, 0, 1)
        dA = torch.exp(dT.unsqueeze(-1) * A)                       # [T, B, E, N]
        Bt = Bm[:, s].permute(1, 0, 2)                             # [T, B, N]
        dBu = duT.unsqueeze(-1) * Bt.unsqueeze(2)
        return dT, duT, dA, Bt, dBu

    @staticmethod
    def _walk(dA, dBu, h0):
        H = torch.empty_like(dBu)
        torch.addcmul(dBu[0], dA[0], h0, out=H[0])
        for t in range(1, H.shape[0]):
            torch.addcmul(dBu[t], dA[t], H[t - 1], out=H[t])
        return H

    @staticmethod
    def forward(ctx, u, delta, A, Bm, Cm, T):
        Bsz, E, L = u.shape
        N = A.shape[-1]
        y = torch.empty_like(u)
        h = u.new_zeros(Bsz, E, N)
        starts = []
        for c0 in range(0, L, T):
            s = slice(c0, min(c0 + T, L))
            _, _, dA, _, dBu = _ChunkedScan._expand(delta, u, A, Bm, s)
            starts.append(h)
            H = _ChunkedScan._walk(dA, dBu, h)
            y[:, :, s] = torch.einsum("tben,btn->bet", H, Cm[:, s])
            h = H[-1].clone()
        ctx.save_for_backward(u, delta, A, Bm, Cm, torch.stack(starts))
        ctx.T = T
        return y

    @staticmethod
    def backward(ctx, gy):
        u, delta, A, Bm, Cm, starts = ctx.saved_tensors
        T = ctx.T
        L = u.shape[2]
        gu, gdelta = torch.empty_like(u), torch.empty_like(delta)
        gA = torch.zeros_like(A)
        gB, gC = torch.empty_like(Bm), torch.empty_like(Cm)
        carry = torch.zeros_like(starts[0])                        # dLoss/dh at the chunk's end
        for ci in range((L + T - 1) // T - 1, -1, -1):
            c0 = ci * T
            s = slice(c0, min(c0 + T, L))
            dT, duT, dA, Bt, dBu = _ChunkedScan._expand(delta, u, A, Bm, s)
            h0 = starts[ci]
            H = _ChunkedScan._walk(dA, dBu, h0)
            g = gy[:, :, s]
            gC[:, s] = torch.einsum("tben,bet->btn", H, g)
            gH = torch.einsum("bet,btn->tben", g, Cm[:, s])
            n = gH.shape[0]
            gH[n - 1] += carry
            for t in range(n - 2, -1, -1):                         # dH[t] = gH[t] + dA[t+1] dH[t+1]
                gH[t].addcmul_(dA[t + 1], gH[t + 1])
            dH = gH
            carry = dA[0] * dH[0]
            Hprev = torch.cat([h0.unsqueeze(0), H[:-1]], 0)
            gl = dH * Hprev * dA                                   # dLoss/d(delta A)
            gA += torch.einsum("tben,tbe->" + ("ben" if A.dim() == 3 else "en"), gl, dT)
            gdu = torch.einsum("tben,tbn->tbe", dH, Bt)
            gB[:, s] = torch.einsum("tben,tbe->btn", dH, duT)
            gd = torch.einsum("tben," + ("ben" if A.dim() == 3 else "en") + "->tbe", gl, A) + gdu * u[:, :, s].permute(2, 0, 1)
            gdelta[:, :, s] = gd.permute(1, 2, 0)
            gu[:, :, s] = (gdu * dT).permute(1, 2, 0)
        return gu, gdelta, gA, gB, gC, None


def scan_chunked(u, delta, A, Bm, Cm, D, z, bias):
    delta = F.softplus(delta + bias[..., None])
    y = _ChunkedScan.apply(u, delta, A, Bm, Cm, CHUNK)
    return (y + u * D[..., None]) * F.silu(z)


CONV1D = "shifts"  # --conv1d
CHUNK = 16  # --chunk

SCAN = {"loop": scan_loop, "autograd": scan_autograd, "chunked": scan_chunked}


# ---------------------------------------------------------------- HF-Mamba ----

class MambaDir(nn.Module):
    """The per-direction weights (conv1d, x_proj, dt_proj, A_log, D) of a Mamba block."""

    def __init__(self, E, N, K, R):
        super().__init__()
        self.conv1d = nn.Conv1d(E, E, K, groups=E, padding=K - 1, bias=True)
        self.x_proj = nn.Linear(E, R + 2 * N, bias=False)
        self.dt_proj = nn.Linear(R, E, bias=True)
        nn.init.uniform_(self.dt_proj.weight, -R ** -0.5, R ** -0.5)
        dt = torch.exp(torch.rand(E) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3)).clamp(min=1e-4)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, N + 1, dtype=torch.float32)).repeat(E, 1))
        self.D = nn.Parameter(torch.ones(E))
        self.N, self.R = N, R

    def forward(self, x):
        """x [B, E, L] -> the scan's inputs u, delta [B, E, L] and B, C [B, L, N]."""
        L = x.shape[2]
        if CONV1D == "torch":  # nn.Conv1d as mamba_ssm's fallback path
            x = F.silu(self.conv1d(x)[..., :L])
        else:  # the same causal depthwise conv as K shifted multiply-adds
            K = self.conv1d.weight.shape[-1]
            xp = F.pad(x, (K - 1, 0))
            w = self.conv1d.weight[:, 0]                           # [E, K]
            acc = torch.addcmul(self.conv1d.bias[:, None], w[:, 0, None], xp[..., :L])
            for k in range(1, K):
                acc = torch.addcmul(acc, w[:, k, None], xp[..., k:k + L])
            x = F.silu(acc)
        xd = self.x_proj(x.transpose(1, 2))                        # [B, L, R + 2N]
        dt, Bm, Cm = torch.split(xd, [self.R, self.N, self.N], dim=-1)
        delta = F.linear(dt, self.dt_proj.weight).transpose(1, 2)  # [B, E, L]; bias in the scan
        return x, delta, Bm, Cm


class BiMamba(nn.Module):
    def __init__(self, C, N=16, K=4, expand=2):
        super().__init__()
        E, R = expand * C, (C + 15) // 16
        self.E = E
        self.in_proj = nn.Linear(C, 2 * E, bias=False)
        self.fwd = MambaDir(E, N, K, R)
        self.bwd = MambaDir(E, N, K, R)
        self.out_proj = nn.Linear(E, C, bias=False)

    def forward(self, h, scan):
        """h [B, L, C] -> [B, L, C]."""
        xz = self.in_proj(h).transpose(1, 2)                       # [B, 2E, L]
        x, z = xz.split(self.E, dim=1)
        # both directions in one scan call: the reverse one (flipped sequence, its own weights)
        # stacked behind the forward one on the batch axis, A / D / dt bias per batch row
        Bsz = x.shape[0]
        ins = [torch.cat(pair) for pair in zip(self.fwd(x), self.bwd(x.flip(-1)))]
        A = _per_row(Bsz, -torch.exp(self.fwd.A_log), -torch.exp(self.bwd.A_log))
        D = _per_row(Bsz, self.fwd.D, self.bwd.D)
        bias = _per_row(Bsz, self.fwd.dt_proj.bias, self.bwd.dt_proj.bias)
        y = scan(ins[0], ins[1], A, ins[2], ins[3], D, torch.cat([z, z.flip(-1)]), bias)
        y = y[:Bsz] + y[Bsz:].flip(-1)
        return self.out_proj(y.transpose(1, 2))


def _per_row(Bsz, f, b):
    """[2 Bsz, ...]: the forward direction's tensor for the first Bsz rows, then the reverse's."""
    return torch.cat([f.expand(Bsz, *f.shape), b.expand(Bsz, *b.shape)])


def highpass_mask(shape, cutoff=0.25):
    """Gaussian high-pass on the rfftn grid (fraction of Nyquist), as gen_fft.mask."""
    nus = [2.0 * torch.fft.fftfreq(n, dtype=torch.float64) for n in shape[:-1]]
    nus.append(2.0 * torch.fft.rfftfreq(shape[-1], dtype=torch.float64))
    r2 = sum(g * g for g in torch.meshgrid(*nus, indexing="ij"))
    return (1.0 - torch.exp(-r2 / (2 * cutoff * cutoff))).float()


class HFMamba(nn.Module):
    def __init__(self, C, scan):
        super().__init__()
        self.norm = nn.LayerNorm(C, eps=1e-5)
        self.mixer = BiMamba(C)
        self.scan = scan
        self.masks = {}

    def forward(self, x):
        sp = tuple(x.shape[2:])
        if sp not in self.masks:
            self.masks[sp] = highpass_mask(sp)
        dims = tuple(range(2, x.dim()))
        high = torch.fft.irfftn(self.masks[sp] * torch.fft.rfftn(x, dim=dims), s=sp, dim=dims)
        Bsz, C = x.shape[:2]
        tok = high.permute(0, *range(2, x.dim()), 1).reshape(Bsz, -1, C)
        t = self.mixer(self.norm(tok), self.scan)
        back = t.reshape(Bsz, *sp, C).permute(0, x.dim() - 1, *range(1, x.dim() - 1))
        return x + back


class CSNet(nn.Module):
    """tests/reference/vnet_torch.py's V-Net with HF-Mamba after the chosen encoder levels;
    returns the logits and the last decoder feature before dropout."""

    def __init__(self, n_filters, levels, scan, dims=2):
        super().__init__()
        self.v = VNet(n_channels=1, n_classes=2, n_filters=n_filters, normalization="batchnorm",
                      has_dropout=True, dims=dims)
        self.hfm = nn.ModuleDict({str(lv): HFMamba(n_filters << (lv - 1), scan)
                                  for lv in range(1, 6) if levels & (1 << (lv - 1))})

    def _h(self, lv, x):
        return self.hfm[str(lv)](x) if str(lv) in self.hfm else x

    def forward(self, x):
        v = self.v
        x1 = self._h(1, v.block_one(x))
        x2 = self._h(2, v.block_two(v.block_one_dw(x1)))
        x3 = self._h(3, v.block_three(v.block_two_dw(x2)))
        x4 = self._h(4, v.block_four(v.block_three_dw(x3)))
        x5 = self._h(5, v.block_five(v.block_four_dw(x4)))
        x5 = v.dropout(x5)
        x6 = v.block_six(v.block_five_up(x5) + x4)
        x7 = v.block_seven(v.block_six_up(x6) + x3)
        x8 = v.block_eight(v.block_seven_up(x7) + x2)
        feat = v.block_nine(v.block_eight_up(x8) + x1)
        return v.out_conv(v.dropout(feat)), feat


# ------------------------------------------------------------------ losses ----

def dice_ce(logits, y, mask=None, smooth=1e-5):
    """libdiffcl's diffcl_dice_ce_loss: CE (weighted mean) + soft Dice on the foreground
    class (squared denominators, smooth 1e-5), both with the voxel mask when given."""
    logp = F.log_softmax(logits, dim=1)
    nll = -logp.gather(1, y.unsqueeze(1)).squeeze(1)
    p = logp[:, 1].exp()
    g = (y == 1).float()
    if mask is None:
        ce = nll.mean()
        inter, zz, yy = (p * g).sum(), (p * p).sum(), g.sum()
    else:
        ce = (nll * mask).sum() / mask.sum().clamp(min=1e-12)
        inter, zz, yy = (mask * p * g).sum(), (mask * p * p).sum(), (mask * g).sum()
    return ce + 1 - (2 * inter + smooth) / (zz + yy + smooth)


def dice_ce_weighted(logits, y, ce_w, smooth=1e-5):
    """CE weighted per voxel by ce_w (weighted mean) + soft Dice on the whole label
    (the trainer's confidence variant of L^c_p)."""
    logp = F.log_softmax(logits, dim=1)
    nll = -logp.gather(1, y.unsqueeze(1)).squeeze(1)
    ce = (nll * ce_w).sum() / ce_w.sum().clamp(min=1e-12)
    p = logp[:, 1].exp()
    g = (y == 1).float()
    return ce + 1 - (2 * (p * g).sum() + smooth) / ((p * p).sum() + g.sum() + smooth)


def gaussian_smooth(p):
    """3-tap Gaussian (sigma 1) along each spatial axis, renormalised at the borders."""
    w1 = math.exp(-0.5)
    C = p.shape[1]
    k = torch.tensor([w1, 1.0, w1])
    out = p
    for ax in range(2, p.dim()):
        shape = [1] * (p.dim() - 2)
        shape[ax - 2] = 3
        kk = k.reshape(1, 1, *shape).repeat(C, 1, *([1] * (p.dim() - 2)))
        pad = [0] * (p.dim() - 2)
        pad[ax - 2] = 1
        conv = F.conv2d if p.dim() == 4 else F.conv3d
        num = conv(out, kk, padding=tuple(pad), groups=C)
        den = conv(torch.ones_like(out[:, :1]), kk[:1], padding=tuple(pad))
        out = num / den
    return out


class Diffusion:
    def __init__(self, T=1000):
        betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
        self.ab = torch.cumprod(1 - betas, 0)
        self.T = T

    def q_sample(self, x0, t):
        ab = self.ab[t].float().reshape(-1, *([1] * (x0.dim() - 1)))
        return ab.sqrt() * x0 + (1 - ab).sqrt() * torch.randn_like(x0)

    def forward(self, ds, image, label):
        """The denoiser output of the training objective: t ~ U{0..T-1}, x_t = q_sample(x_0, t)."""
        t = torch.randint(0, self.T, (image.shape[0],))
        x0 = F.one_hot(label, 2).movedim(-1, 1).float() * 2 - 1
        return ds(self.q_sample(x0, t), t, image)

    def ddim(self, ds, image, steps):
        """DDIM, eta 0, from pure noise over evenly respaced timesteps; x_0 logits."""
        ts = gen_diffusion.space_timesteps(self.T, steps)
        x = torch.randn(image.shape[0], 2, *image.shape[2:])
        for j in range(len(ts) - 1, -1, -1):
            t = torch.full((image.shape[0],), ts[j], dtype=torch.int64)
            out = ds(x, t, image)
            if j == 0:
                return out
            ab, abp = float(self.ab[ts[j]]), float(self.ab[ts[j - 1]])
            x0 = 2 * torch.softmax(out, 1) - 1
            eps = (math.sqrt(1 / ab) * x - x0) / math.sqrt(1 / ab - 1)
            x = x0 * math.sqrt(abp) + math.sqrt(1 - abp) * eps
        return None


def prototypes(feat, label, nc=2):
    """Masked mean feature per class, L2-normalised ([C, F]), and the class counts."""
    Fd = feat.shape[1]
    f = feat.movedim(1, -1).reshape(-1, Fd)
    lab = label.reshape(-1)
    sums = torch.zeros(nc, Fd).index_add_(0, lab, f)
    counts = torch.bincount(lab, minlength=nc).float()
    return F.normalize(sums / counts.clamp(min=1)[:, None], dim=1), counts


def bank_update(bank, protos, counts, m=0.99):
    for c in range(bank.shape[0]):
        if counts[c] <= 0:
            continue
        if bank[c].abs().sum() == 0:
            bank[c] = protos[c]
        else:
            bank[c] = F.normalize(m * bank[c] + (1 - m) * protos[c], dim=0)


def proto_contrast(feat_u, bank, target, idx, tau=0.1):
    Fd = feat_u.shape[1]
    f = F.normalize(feat_u.movedim(1, -1).reshape(-1, Fd)[idx], dim=1)
    s = f @ F.normalize(bank, dim=1).t() / tau
    return F.cross_entropy(s, target.reshape(-1)[idx])


# -------------------------------------------------------------- iterations ----

PARTS_DIFFCL = ["cs_fwd", "ds_fwd", "ddim", "losses", "backward", "step"]
PARTS_CS = ["cs_fwd", "losses", "backward", "step"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["diffcl", "cs"], default="diffcl")
    ap.add_argument("--size", default="224,192")
    ap.add_argument("--bl", type=int, default=2)
    ap.add_argument("--bu", type=int, default=2)
    add_run_args(ap)
    ap.add_argument("--hfm-levels", default="0x1c", help="bit mask of encoder levels (0x1c: 3,4,5)")
    ap.add_argument("--ddim-steps", type=int, default=4)
    ap.add_argument("--iteration", choices=["current", "0.1"], default="current",
                    help="the trainer's current Diff-CL iteration or 0.1.0's")
    ap.add_argument("--contrast-voxels", type=int, default=4096)
    ap.add_argument("--scan", choices=sorted(SCAN), default="chunked")
    ap.add_argument("--conv1d", choices=["shifts", "torch"], default="shifts",
                    help="causal depthwise conv: K shifted addcmul (default) or nn.Conv1d")
    ap.add_argument("--chunk", type=int, default=16, help="tokens per chunk of --scan chunked")
    ap.add_argument("--check", action="store_true", help="compare the scans with selective_scan_ref")
    args = ap.parse_args()
    start(args)
    size = sizes(args.size)
    assert len(size) == 2, "--size H,W"
    levels = int(args.hfm_levels, 0)
    scan = SCAN[args.scan]
    global CONV1D, CHUNK
    CONV1D, CHUNK = args.conv1d, args.chunk
    if args.check:
        check_scans()

    cs = CSNet(args.n_filters, levels, scan)
    params = list(cs.parameters())
    diffcl = args.mode == "diffcl"
    if diffcl:
        ds = gen_diffusion.DenoiseModel(2, 1, 2, args.n_filters, 128, 512, p=0.1)
        params += list(ds.parameters())
        ds.train()
        diff = Diffusion()
        bank = torch.zeros(2, args.n_filters)
    cs.train()
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, nesterov=True, weight_decay=3e-5)
    nb = args.bl + (args.bu if diffcl else 0)
    x = torch.randn(nb, 1, *size)
    x_weak = x[args.bl:] * 0.9  # the weak views (same shape; values do not matter for timing)
    y = (x[: args.bl, 0] > 0.5).long()
    new = args.iteration == "current"

    def iteration(it, pt):
        def lap(name, t0):
            t1 = time.perf_counter()
            pt[name] = pt.get(name, 0.0) + (t1 - t0) * 1e3
            return t1

        for g in opt.param_groups:
            g["lr"] = 0.01 * (1 - it / 1000) ** 0.9
        t0 = time.perf_counter()
        logits, feat = cs(x)
        t0 = lap("cs_fwd", t0)
        if not diffcl:
            total = dice_ce(logits[: args.bl], y)
            t0 = lap("losses", t0)
        else:
            img_l, img_u = x[: args.bl], x[args.bl:]
            unl = logits[args.bl:]
            ds_out_l = diff.forward(ds, img_l, y)
            t0 = lap("ds_fwd", t0)
            with torch.no_grad():
                if new:  # the weak view, both networks in eval mode
                    cs.eval()
                    ds.eval()
                    pseudo_cs = cs(x_weak)[0].argmax(1)
                    ds_logits = diff.ddim(ds, x_weak, args.ddim_steps)
                    cs.train()
                    ds.train()
                else:
                    pseudo_cs = unl.argmax(1)
                    ds_logits = diff.ddim(ds, img_u, args.ddim_steps)
                probs = gaussian_smooth(torch.softmax(ds_logits, 1))
                pseudo_ds = probs.argmax(1)
                conf = probs.gather(1, pseudo_ds.unsqueeze(1)).squeeze(1)
                agree = (pseudo_cs == pseudo_ds).float()
            t0 = lap("ddim", t0)
            ds_out_u = diff.forward(ds, img_u, pseudo_cs)
            t0 = lap("ds_fwd", t0)
            cs_sup = dice_ce(logits[: args.bl], y)
            ds_sup = dice_ce(ds_out_l, y)
            ds_pseudo = dice_ce(ds_out_u, pseudo_cs)
            cs_pseudo = dice_ce_weighted(unl, pseudo_ds, conf) if new else dice_ce(unl, pseudo_ds, agree)
            with torch.no_grad():
                protos, counts = prototypes(feat[: args.bl].detach(), y)
                bank_update(bank, protos, counts)
                if new:  # an equal quota per class
                    parts = []
                    for c in range(2):
                        cand = (pseudo_ds == c).reshape(-1).nonzero().squeeze(1)
                        parts.append(cand[torch.randperm(cand.numel())[: args.contrast_voxels // 2]])
                    idx = torch.cat(parts).sort().values
                else:
                    cand = agree.reshape(-1).nonzero().squeeze(1)
                    idx = cand[torch.randperm(cand.numel())[: args.contrast_voxels]].sort().values
            contrast = proto_contrast(feat[args.bl:], bank, pseudo_ds, idx) if idx.numel() else 0.0
            total = cs_sup + ds_sup + ds_pseudo + cs_pseudo + 0.1 * contrast
            t0 = lap("losses", t0)
        opt.zero_grad()
        total.backward()
        t0 = lap("backward", t0)
        opt.step()
        lap("step", t0)
        return total.item()

    rss0 = rss_mib()
    tw, tc = [], []
    parts = {p: [] for p in (PARTS_DIFFCL if diffcl else PARTS_CS)}
    loss = float("nan")
    for r in range(-1, args.reps):
        pt = {}
        w0, c0 = time.perf_counter(), time.process_time()
        loss = iteration(r + 1, pt)
        if r >= 0:
            tw.append((time.perf_counter() - w0) * 1e3)
            tc.append((time.process_time() - c0) * 1e3)
            for p in parts:
                parts[p].append(pt.get(p, 0.0))
    report_times(tw, tc, rss0)
    result("threads", torch.get_num_threads())
    result("loss", loss)
    for p, v in parts.items():
        result(f"part_{p}_ms", statistics.median(v))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, mode {args.mode} "
          f"(iteration {args.iteration}), "
          f"scan {args.scan}, conv1d {args.conv1d}, batch {nb}, HF-Mamba levels 0x{levels:x}", flush=True)
    print("per part (median ms): " + ", ".join(f"{p} {statistics.median(v):.1f}" for p, v in parts.items()),
          flush=True)


def check_scans():
    """Both scans against mamba_ssm's selective_scan_ref (bench/torch_scan.py's copy)."""
    from torch_scan import selective_scan_ref
    g = torch.Generator().manual_seed(1)
    Bsz, E, N, L = 2, 8, 16, 50
    u = torch.randn(Bsz, E, L, generator=g)
    delta = torch.randn(Bsz, E, L, generator=g) - 2
    A = -torch.exp(torch.randn(E, N, generator=g) * 0.3) * torch.arange(1, N + 1)
    Bm = torch.randn(Bsz, L, N, generator=g)
    Cm = torch.randn(Bsz, L, N, generator=g)
    D = torch.randn(E, generator=g)
    z = torch.randn(Bsz, E, L, generator=g)
    bias = torch.randn(E, generator=g) * 0.1
    w = torch.randn(Bsz, E, L, generator=g)
    xs = [t.clone().requires_grad_(True) for t in (u, delta, A, Bm, Cm, D, z, bias)]
    ref = selective_scan_ref(xs[0], xs[1], xs[2], xs[3].transpose(1, 2), xs[4].transpose(1, 2), xs[5], xs[6],
                             xs[7], True)
    (ref * w).sum().backward()
    gref = [t.grad for t in xs]
    ref = ref.detach()
    for name, fn in SCAN.items():
        ya = fn(u, delta, A.expand(Bsz, E, N), Bm, Cm, D.expand(Bsz, E), z, bias.expand(Bsz, E))
        assert (ya - ref).abs().max() <= 1e-4 * ref.abs().max(), name + " with per-row A"
        xs = [t.clone().requires_grad_(True) for t in (u, delta, A, Bm, Cm, D, z, bias)]
        y = fn(*xs)
        (y * w).sum().backward()
        err = ((y - ref).abs().max() / ref.abs().max()).item()
        gerr = max(((a.grad - b).abs().max() / b.abs().max()).item() for a, b in zip(xs, gref))
        print(f"scan {name}: max rel error vs selective_scan_ref {err:.2e}, gradients {gerr:.2e}",
              flush=True)
        assert err < 1e-4 and gerr < 1e-3, name


if __name__ == "__main__":
    main()
