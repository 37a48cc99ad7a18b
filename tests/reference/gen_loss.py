#!/usr/bin/python3
"""Reference fixtures of the `loss` suite (tests/loss), computed by torch 1.13 in float64.

Every case stores its inputs and torch's loss value `<case>_loss` and gradient(s)
`<case>_gx` (logits / input), `<case>_gt` (MSE target), `<case>_gf` / `<case>_gp`
(InfoNCE features / prototypes) of the scalar loss. References use torch built-ins:
F.cross_entropy (weight, ignore_index, reduction='none' for voxel masks), the SSL4MIS
`DiceLoss` and UA-MT `dice_loss` verbatim (plus the same formula with torch ops for the
per-sample / masked / plain-denominator variants), F.mse_loss, F.cosine_similarity +
F.cross_entropy for the prototype InfoNCE, F.normalize for the prototypes.

Run with Debian's interpreter (the python3 on PATH lacks torch):
    /usr/bin/python3 tests/reference/gen_loss.py
Writes tests/fixtures/loss.safetensors.
"""
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402

torch.set_default_dtype(torch.float64)
rng = np.random.RandomState(20240612)
out = {}


def randn(*shape, scale=1.0):
    return torch.tensor(rng.standard_normal(shape) * scale)


def labels(shape, n_classes, dtype=np.int64):
    return torch.tensor(rng.randint(0, n_classes, size=shape).astype(dtype))


def run(fn, *inputs):
    """Loss and its gradients wrt every input (all require grad)."""
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    loss = fn(*leaves)
    gs = torch.autograd.grad(loss, leaves)
    return loss.detach(), [g.detach() for g in gs]


# ----------------------------------------------------- SSL4MIS / UA-MT Dice verbatim ----
class DiceLoss(nn.Module):
    """SSL4MIS code/utils/losses.py DiceLoss (softmax=True path)."""

    def __init__(self, n_classes):
        super().__init__()
        self.n_classes = n_classes

    def _one_hot_encoder(self, input_tensor):
        tensor_list = []
        for i in range(self.n_classes):
            temp_prob = input_tensor == i * torch.ones_like(input_tensor)
            tensor_list.append(temp_prob)
        output_tensor = torch.cat(tensor_list, dim=1)
        return output_tensor.double()

    def _dice_loss(self, score, target):
        target = target.double()
        smooth = 1e-5
        intersect = torch.sum(score * target)
        y_sum = torch.sum(target * target)
        z_sum = torch.sum(score * score)
        loss = (2 * intersect + smooth) / (z_sum + y_sum + smooth)
        loss = 1 - loss
        return loss

    def forward(self, inputs, target, weight=None, softmax=False):
        if softmax:
            inputs = torch.softmax(inputs, dim=1)
        target = self._one_hot_encoder(target)
        if weight is None:
            weight = [1] * self.n_classes
        assert inputs.size() == target.size()
        loss = 0.0
        for i in range(0, self.n_classes):
            dice = self._dice_loss(inputs[:, i], target[:, i])
            loss += dice * weight[i]
        return loss / self.n_classes


def uamt_dice_loss(score, target):
    """UA-MT code/utils/losses.py dice_loss."""
    target = target.double()
    smooth = 1e-5
    intersect = torch.sum(score * target)
    y_sum = torch.sum(target * target)
    z_sum = torch.sum(score * score)
    loss = (2 * intersect + smooth) / (z_sum + y_sum + smooth)
    loss = 1 - loss
    return loss


def dice_general(x, y, n_classes, include_bg=False, per_sample=False, squared=True,
                 smooth=1e-5, weight=None, mask=None, ignore_index=-100):
    """The documented formula with torch ops (variants SSL4MIS does not have)."""
    p = torch.softmax(x, dim=1)
    valid = (y != ignore_index)
    yc = torch.where(valid, y, torch.zeros_like(y))
    g = F.one_hot(yc.long(), n_classes).movedim(-1, 1).double()
    m = valid.double() if mask is None else mask * valid.double()
    m = m.unsqueeze(1)
    dims = tuple(range(2, x.dim())) if per_sample else (0,) + tuple(range(2, x.dim()))
    inter = (m * p * g).sum(dims)
    z = (m * p * p).sum(dims) if squared else (m * p).sum(dims)
    ys = (m * g * g).sum(dims) if squared else (m * g).sum(dims)
    dice = (2 * inter + smooth) / (z + ys + smooth)  # [C] or [N,C]
    c0 = 0 if include_bg else 1
    w = torch.ones(n_classes) if weight is None else weight
    terms = (1 - dice) * w
    terms = terms[..., c0:]
    return terms.sum(-1).mean() / (n_classes - c0) if per_sample else terms.sum() / (n_classes - c0)


def ce_masked(x, y, mask, weight=None, ignore_index=-100):
    nll = F.cross_entropy(x, y, weight=weight, ignore_index=ignore_index, reduction="none")
    yc = torch.where(y == ignore_index, torch.zeros_like(y), y)
    w = torch.ones(x.shape[1]) if weight is None else weight
    wv = w[yc] * (y != ignore_index).double() * mask
    return (nll * mask).sum() / wv.sum()


# ------------------------------------------------------------- cross-entropy ----
x3 = randn(2, 3, 4, 5, 6, scale=2.0)      # 3D: N=2, C=3, D=4, H=5, W=6
y3 = labels((2, 4, 5, 6), 3)
m3 = torch.tensor((rng.rand(2, 4, 5, 6) > 0.4).astype(np.float64))
cw3 = torch.tensor([0.3, 1.0, 2.5])
x2 = randn(3, 4, 7, 9, scale=2.0)         # 2D: N=3, C=4, H=7, W=9
y2 = labels((3, 7, 9), 4)
out["x3"], out["y3"], out["m3"], out["cw3"] = x3, y3, m3, cw3
out["x2"], out["y2_i32"] = x2, y2.to(torch.int32)

loss, (gx,) = run(lambda a: F.cross_entropy(a, y3), x3)
out["ce_plain_loss"], out["ce_plain_gx"] = loss, gx

y3i = y3.clone()
y3i.view(-1)[::7] = 255  # ignored voxels
out["y3_ign_u8"] = y3i.to(torch.uint8)
loss, (gx,) = run(lambda a: F.cross_entropy(a, y3i, weight=cw3, ignore_index=255), x3)
out["ce_wign_loss"], out["ce_wign_gx"] = loss, gx

loss, (gx,) = run(lambda a: ce_masked(a, y3, m3), x3)
out["ce_mask_loss"], out["ce_mask_gx"] = loss, gx

loss, (gx,) = run(lambda a: ce_masked(a, y3i, m3, weight=cw3, ignore_index=255), x3)
out["ce_all_loss"], out["ce_all_gx"] = loss, gx

loss, (gx,) = run(lambda a: F.cross_entropy(a, y2.long()), x2)
out["ce_2d_loss"], out["ce_2d_gx"] = loss, gx

# ---------------------------------------------------------------------- Dice ----
# SSL4MIS DiceLoss(softmax=True): all classes, batch sums, squared denominators
loss, (gx,) = run(lambda a: DiceLoss(3)(a, y3.unsqueeze(1), softmax=True), x3)
out["dice_ssl4mis_loss"], out["dice_ssl4mis_gx"] = loss, gx
loss, (gx,) = run(lambda a: DiceLoss(3)(a, y3.unsqueeze(1), weight=[0.5, 1.0, 2.0], softmax=True), x3)
out["dice_ssl4mis_w_loss"], out["dice_ssl4mis_w_gx"] = loss, gx
out["dice_w"] = torch.tensor([0.5, 1.0, 2.0])

# UA-MT: two classes, foreground only: dice_loss(softmax(x)[:, 1], y == 1)
xb = randn(2, 2, 4, 5, 6, scale=2.0)
yb = labels((2, 4, 5, 6), 2)
out["xb"], out["yb_u8"] = xb, yb.to(torch.uint8)
loss, (gx,) = run(lambda a: uamt_dice_loss(torch.softmax(a, 1)[:, 1], yb == 1), xb)
out["dice_uamt_loss"], out["dice_uamt_gx"] = loss, gx

# default options of ours: foreground classes, batch, squared, smooth 1e-5
loss, (gx,) = run(lambda a: dice_general(a, y3, 3), x3)
out["dice_fg_loss"], out["dice_fg_gx"] = loss, gx
loss, (gx,) = run(lambda a: dice_general(a, y3, 3, per_sample=True, squared=False, smooth=1.0), x3)
out["dice_ps_loss"], out["dice_ps_gx"] = loss, gx
loss, (gx,) = run(lambda a: dice_general(a, y3i, 3, include_bg=True, mask=m3, ignore_index=255), x3)
out["dice_mask_loss"], out["dice_mask_gx"] = loss, gx
loss, (gx,) = run(lambda a: dice_general(a, y2, 4, include_bg=False, per_sample=True), x2)
out["dice_2d_loss"], out["dice_2d_gx"] = loss, gx

# -------------------------------------------------------------------- DiceCE ----
loss, (gx,) = run(lambda a: dice_general(a, y3, 3) + F.cross_entropy(a, y3), x3)
out["dce_loss"], out["dce_gx"] = loss, gx
loss, (gx,) = run(lambda a: 0.5 * dice_general(a, y3, 3, mask=m3) + 2.0 * ce_masked(a, y3, m3), x3)
out["dce_mask_loss"], out["dce_mask_gx"] = loss, gx

# ----------------------------------------------------------------------- MSE ----
a = randn(2, 3, 4, 5)
b = randn(2, 3, 4, 5)
mv = torch.tensor((rng.rand(2, 4, 5) > 0.5).astype(np.float64))
out["mse_a"], out["mse_b"], out["mse_m"] = a, b, mv
loss, (ga, gb) = run(lambda p, q: F.mse_loss(p, q), a, b)
out["mse_loss"], out["mse_gx"], out["mse_gt"] = loss, ga, gb
loss, (ga, gb) = run(lambda p, q: (F.mse_loss(p, q, reduction="none") * mv.unsqueeze(1)).sum()
                     / (mv.sum() * p.shape[1]), a, b)
out["mse_mask_loss"], out["mse_mask_gx"], out["mse_mask_gt"] = loss, ga, gb

# ------------------------------------------------------ prototype InfoNCE ----
Fd, C = 8, 3
feat = randn(2, Fd, 3, 4, 5)
protos = randn(C, Fd)
yf = labels((2, 3, 4, 5), C)
mf = torch.tensor((rng.rand(2, 3, 4, 5) > 0.3).astype(np.float64))
nvox = 2 * 3 * 4 * 5
idx = torch.tensor(np.concatenate([rng.choice(nvox, 40, replace=False), [5, 5, 17]]).astype(np.int64))
tau = 0.1
out["pc_f"], out["pc_p"], out["pc_y"], out["pc_m"], out["pc_idx"] = feat, protos, yf, mf, idx


def infonce(f, p, sel, mask=None):
    flat = f.movedim(1, -1).reshape(-1, Fd)[sel]                      # [K, F]
    cos = F.cosine_similarity(flat[:, None, :], p[None, :, :], dim=-1)  # [K, C]
    tgt = yf.reshape(-1)[sel]
    if mask is None:
        return F.cross_entropy(cos / tau, tgt)
    w = mask.reshape(-1)[sel]
    return (F.cross_entropy(cos / tau, tgt, reduction="none") * w).sum() / w.sum()


all_sel = torch.arange(nvox)
loss, (gf, gp) = run(lambda f, p: infonce(f, p, all_sel), feat, protos)
out["pc_all_loss"], out["pc_all_gf"], out["pc_all_gp"] = loss, gf, gp
loss, (gf, gp) = run(lambda f, p: infonce(f, p, idx, mf), feat, protos)
out["pc_idx_loss"], out["pc_idx_gf"], out["pc_idx_gp"] = loss, gf, gp

# class prototypes: masked average of the features over each label region, L2-normalised
fl = feat.movedim(1, -1).reshape(-1, Fd)
protos_ref = []
for c in range(C):
    w = ((yf.reshape(-1) == c).double() * mf.reshape(-1))[:, None]
    protos_ref.append((fl * w).sum(0) / w.sum())
out["proto_ref"] = F.normalize(torch.stack(protos_ref), dim=1)
out["proto_counts"] = torch.stack([((yf == c).double() * mf).sum() for c in range(C)])
# EMA bank update from a normalised bank
bank = F.normalize(randn(C, Fd), dim=1)
out["bank0"] = bank
out["bank1"] = F.normalize(0.99 * bank + 0.01 * out["proto_ref"], dim=1)

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "loss.safetensors")
st_io.save(path, out, {"generator": "tests/reference/gen_loss.py", "torch": torch.__version__})
print("wrote", os.path.normpath(path), len(out), "tensors")
