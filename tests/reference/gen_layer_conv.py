#!/usr/bin/python3
"""Reference fixtures for the `layer` suite's convolution tests (tests/layer_conv).

Torch built-ins only (F.conv2d/3d, F.conv_transpose2d/3d, F.max_pool2d/3d, F.avg_pool2d/3d,
F.interpolate), computed in float64. For every case NAME the file holds NAME.x (input),
NAME.w / NAME.b (weight / bias where the op has them), NAME.y (output), NAME.gy (a random
upstream gradient) and NAME.gx / NAME.gw / NAME.gb: the gradients of sum(y * gy).
The geometry of each case is repeated in tests/layer_conv/test_layer_conv.c (CASES table)
and stored in the metadata as a cross-check.

Run: /usr/bin/python3 tests/reference/gen_layer_conv.py  (writes
tests/fixtures/layer_conv.safetensors)
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402

torch.manual_seed(20240611)
DT = torch.float64

# kind, name, N, Cin, Cout, spatial, kernel, stride, padding, dilation, output_padding, bias
CONV = [
    ("conv", "c3d_basic", 2, 3, 4, (6, 5, 7), 3, 1, 1, 1, 0, True),
    ("conv", "c3d_s2", 1, 2, 3, (7, 6, 5), 3, 2, 1, 1, 0, True),
    ("conv", "c3d_dil", 1, 2, 2, (7, 7, 6), 3, 1, 2, 2, 0, False),
    ("conv", "c3d_aniso", 2, 2, 3, (5, 6, 7), (3, 1, 2), (1, 2, 1), (1, 0, 1), 1, 0, True),
    ("conv", "c3d_k2s2", 2, 4, 6, (6, 4, 8), 2, 2, 0, 1, 0, True),
    ("conv", "c3d_k2s2_odd", 1, 3, 5, (5, 5, 7), 2, 2, 0, 1, 0, True),
    ("conv", "c3d_k3s3", 1, 2, 3, (6, 7, 9), 3, 3, 0, 1, 0, True),
    ("conv", "c3d_1x1", 2, 5, 3, (4, 3, 5), 1, 1, 0, 1, 0, True),
    ("conv", "c3d_big", 1, 8, 8, (10, 9, 12), 3, 1, 1, 1, 0, True),
    ("conv", "c3d_pad2", 1, 2, 3, (4, 5, 3), 3, 1, 2, 1, 0, True),
    ("conv", "c3d_pad3", 1, 2, 2, (3, 4, 5), 3, 1, 3, 1, 0, False),
    ("conv", "c2d_basic", 2, 3, 4, (9, 8), 3, 1, 1, 1, 0, True),
    ("conv", "c2d_s2", 2, 3, 2, (9, 10), 3, 2, 0, 1, 0, False),
    ("convT", "t3d_k2s2", 2, 6, 4, (3, 2, 4), 2, 2, 0, 1, 0, True),
    ("convT", "t3d_general", 1, 3, 2, (4, 3, 5), 3, 2, 1, 1, 1, True),
    ("convT", "t3d_k3s3", 1, 3, 2, (2, 3, 2), 3, 3, 0, 1, 0, True),
    ("convT", "t3d_s1", 2, 3, 4, (4, 5, 3), 3, 1, 1, 1, 0, True),
    ("convT", "t3d_dil_op", 1, 2, 3, (4, 3, 4), 2, 1, 0, 2, 1, False),
    ("convT", "t3d_dil_op2", 1, 2, 3, (5, 4, 5), 2, 1, 2, 2, 1, True),
    ("convT", "t2d_k2s2", 2, 4, 3, (4, 5), 2, 2, 0, 1, 0, True),
    ("convT", "t2d_general", 1, 3, 2, (5, 4), 4, 2, 1, 1, 0, True),
]
# kind, name, N, C, spatial, kernel, stride, padding, dilation
POOL = [
    ("max", "max3d", 2, 3, (6, 6, 4), 2, 2, 0, 1),
    ("max", "max3d_pad", 1, 2, (7, 6, 5), 3, 2, 1, 1),
    ("max", "max3d_dil", 1, 2, (6, 7, 6), 2, 1, 0, 2),
    ("max", "max2d", 2, 3, (9, 8), 3, 2, 1, 1),
    ("avg", "avg3d", 2, 3, (6, 6, 4), 2, 2, 0, 1),
    ("avg", "avg3d_pad", 1, 2, (7, 6, 5), 3, 2, 1, 1),
    ("avg", "avg2d", 2, 3, (7, 6), 3, 1, 1, 1),
]
# name, N, C, spatial, scale, mode
UP = [
    ("up3d_nearest", 2, 2, (3, 4, 2), 2, "nearest"),
    ("up3d_linear", 2, 2, (3, 4, 2), 2, "trilinear"),
    ("up3d_linear_s3", 1, 2, (2, 3, 4), 3, "trilinear"),
    ("up2d_nearest", 2, 3, (4, 3), 3, "nearest"),
    ("up2d_linear", 2, 3, (4, 3), 2, "bilinear"),
]


def tup(v, d):
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * d


def record(out, name, fn, tensors):
    for t in tensors.values():
        t.requires_grad_(True)
    y = fn(**tensors)
    gy = torch.randn_like(y)
    (y * gy).sum().backward()
    for k, t in tensors.items():
        out[f"{name}.{k}"] = t.detach()
        out[f"{name}.g{k}"] = t.grad.detach()
    out[f"{name}.y"] = y.detach()
    out[f"{name}.gy"] = gy


def main():
    out, meta = {}, {}
    for kind, name, n, ci, co, sp, k, s, p, d, op, bias in CONV:
        dims = len(sp)
        k, s, p, d, op = (tup(v, dims) for v in (k, s, p, d, op))
        x = torch.randn(n, ci, *sp, dtype=DT)
        wshape = (co, ci) + k if kind == "conv" else (ci, co) + k
        t = {"x": x, "w": torch.randn(*wshape, dtype=DT) * 0.3}
        if bias:
            t["b"] = torch.randn(co, dtype=DT)
        if kind == "conv":
            f = F.conv3d if dims == 3 else F.conv2d
            fn = lambda x, w, b=None: f(x, w, b, s, p, d)
        else:
            f = F.conv_transpose3d if dims == 3 else F.conv_transpose2d
            fn = lambda x, w, b=None: f(x, w, b, s, p, op, 1, d)
        record(out, name, fn, t)
        meta[name] = f"{kind} k={k} s={s} p={p} d={d} op={op} bias={bias}"
    for kind, name, n, c, sp, k, s, p, d in POOL:
        dims = len(sp)
        x = torch.randn(n, c, *sp, dtype=DT)
        if kind == "max":
            f = F.max_pool3d if dims == 3 else F.max_pool2d
            fn = lambda x: f(x, k, s, p, d)
        else:
            f = F.avg_pool3d if dims == 3 else F.avg_pool2d
            fn = lambda x: f(x, k, s, p, count_include_pad=True)
        record(out, name, fn, {"x": x})
        meta[name] = f"{kind} k={k} s={s} p={p} d={d}"
    for name, n, c, sp, scale, mode in UP:
        x = torch.randn(n, c, *sp, dtype=DT)
        if mode == "nearest":
            fn = lambda x: F.interpolate(x, scale_factor=scale, mode=mode)
        else:
            fn = lambda x: F.interpolate(x, scale_factor=scale, mode=mode, align_corners=False)
        record(out, name, fn, {"x": x})
        meta[name] = f"{mode} scale={scale}"
    meta["generator"] = "tests/reference/gen_layer_conv.py"
    meta["torch"] = torch.__version__
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(root, "fixtures", "layer_conv.safetensors")
    st_io.save(path, out, meta)
    print(f"wrote {path}: {len(out)} tensors, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
