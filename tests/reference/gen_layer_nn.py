#!/usr/bin/python3
"""Reference fixtures of the `layer` suite (tests/layer_nn): activations, softmax,
batch/group/instance/layer norm and linear, computed by torch 1.13 built-ins in float64.

For every op the fixture holds the input(s), the parameters, an upstream gradient `*_g`
and torch's output and input/parameter gradients of sum(out * g). Batch norm also runs
three training steps through F.batch_norm updating running statistics in place.

Run with Debian's interpreter (the python3 on PATH lacks torch):
    /usr/bin/python3 tests/reference/gen_layer_nn.py
Writes tests/fixtures/layer_nn.safetensors.
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402

torch.set_default_dtype(torch.float64)
rng = np.random.RandomState(20240611)
out = {}


def randn(*shape, scale=1.0, shift=0.0):
    return torch.tensor(rng.standard_normal(shape) * scale + shift)


def grads(fn, inputs, g):
    """Output of fn(*inputs) and d(sum(out * g))/d(input) for inputs that are tensors."""
    leaves = [t.detach().clone().requires_grad_(True) if t is not None else None for t in inputs]
    y = fn(*leaves)
    want = [t for t in leaves if t is not None]
    gs = torch.autograd.grad(y, want, grad_outputs=g)
    return y.detach(), list(gs)


# ----------------------------------------------------------------- activations ----
x = randn(2, 3, 4, 5, scale=3.0)
x.view(-1)[:6] = torch.tensor([25.0, 21.0, 19.5, -30.0, 0.5, -0.25])  # softplus threshold
g = randn(2, 3, 4, 5)
out["act_x"], out["act_g"] = x, g
acts = {
    "relu": F.relu,
    "leaky_relu": lambda t: F.leaky_relu(t, 0.01),
    "leaky_relu02": lambda t: F.leaky_relu(t, 0.2),
    "silu": F.silu,
    "gelu": F.gelu,  # exact erf form (approximate='none')
    "sigmoid": torch.sigmoid,
    "softplus": F.softplus,  # beta 1, threshold 20
}
for name, fn in acts.items():
    y, (gx,) = grads(fn, [x], g)
    out[f"{name}_y"], out[f"{name}_gx"] = y, gx

# --------------------------------------------------------------------- softmax ----
x = randn(2, 4, 3, 5, scale=2.0)
g = randn(2, 4, 3, 5)
out["sm_x"], out["sm_g"] = x, g
for dim, tag in ((1, "c"), (-1, "last")):
    y, (gx,) = grads(lambda t: F.softmax(t, dim=dim), [x], g)
    out[f"softmax_{tag}_y"], out[f"softmax_{tag}_gx"] = y, gx
    y, (gx,) = grads(lambda t: F.log_softmax(t, dim=dim), [x], g)
    out[f"log_softmax_{tag}_y"], out[f"log_softmax_{tag}_gx"] = y, gx

# ------------------------------------------------------------------ batch norm ----
C = 4
shape = (2, C, 3, 4, 5)
w, b = randn(C, scale=0.5, shift=1.0), randn(C, scale=0.5)
rm, rv = randn(C, scale=0.1), torch.tensor(rng.uniform(0.5, 1.5, C))
out["bn_w"], out["bn_b"], out["bn_rm0"], out["bn_rv0"] = w, b, rm.clone(), rv.clone()
for step in range(3):
    xs = randn(*shape, scale=1.0 + step, shift=0.5 * step)
    gs = randn(*shape)
    out[f"bn_x{step}"], out[f"bn_g{step}"] = xs, gs

    def bn_train(t, ww, bb):
        return F.batch_norm(t, rm, rv, ww, bb, training=True, momentum=0.1, eps=1e-5)

    y, (gx, gw, gb) = grads(bn_train, [xs, w, b], gs)  # updates rm, rv in place
    out[f"bn_train{step}_y"], out[f"bn_train{step}_gx"] = y, gx
    out[f"bn_train{step}_gw"], out[f"bn_train{step}_gb"] = gw, gb
    out[f"bn_rm{step + 1}"], out[f"bn_rv{step + 1}"] = rm.clone(), rv.clone()


def bn_eval(t, ww, bb):
    return F.batch_norm(t, rm, rv, ww, bb, training=False, momentum=0.1, eps=1e-5)


y, (gx, gw, gb) = grads(bn_eval, [out["bn_x0"], w, b], out["bn_g0"])
out["bn_eval_y"], out["bn_eval_gx"], out["bn_eval_gw"], out["bn_eval_gb"] = y, gx, gw, gb

# BatchNorm1d on [N, C], no affine, no running stats
x = randn(6, 5, scale=2.0, shift=1.0)
g = randn(6, 5)
y, (gx,) = grads(lambda t: F.batch_norm(t, None, None, training=True, eps=1e-5), [x], g)
out["bn1d_x"], out["bn1d_g"], out["bn1d_y"], out["bn1d_gx"] = x, g, y, gx

# ------------------------------------------------------------------ group norm ----
C, G = 6, 3
x = randn(2, C, 3, 4, 5, scale=1.5, shift=0.3)
g = randn(2, C, 3, 4, 5)
w, b = randn(C, scale=0.5, shift=1.0), randn(C, scale=0.5)
y, (gx, gw, gb) = grads(lambda t, ww, bb: F.group_norm(t, G, ww, bb, eps=1e-5), [x, w, b], g)
out.update(gn_x=x, gn_g=g, gn_w=w, gn_b=b, gn_y=y, gn_gx=gx, gn_gw=gw, gn_gb=gb)

# --------------------------------------------------------------- instance norm ----
C = 3
x = randn(2, C, 4, 5, 3, scale=2.0, shift=-0.5)
g = randn(2, C, 4, 5, 3)
w, b = randn(C, scale=0.5, shift=1.0), randn(C, scale=0.5)
y, (gx,) = grads(lambda t: F.instance_norm(t, eps=1e-5), [x], g)
out.update(in_x=x, in_g=g, in_y=y, in_gx=gx)
y, (gx, gw, gb) = grads(lambda t, ww, bb: F.instance_norm(t, weight=ww, bias=bb, eps=1e-5),
                        [x, w, b], g)
out.update(in_w=w, in_b=b, in_aff_y=y, in_aff_gx=gx, in_aff_gw=gw, in_aff_gb=gb)
# tracked running statistics (InstanceNorm3d(track_running_stats=True)), one training step
rm, rv = torch.zeros(C), torch.ones(C)
F.instance_norm(x, rm, rv, use_input_stats=True, momentum=0.1, eps=1e-5)
out["in_rm1"], out["in_rv1"] = rm, rv

# ------------------------------------------------------------------ layer norm ----
C = 8
x = randn(3, 4, C, scale=2.0, shift=1.0)
g = randn(3, 4, C)
w, b = randn(C, scale=0.5, shift=1.0), randn(C, scale=0.5)
y, (gx, gw, gb) = grads(lambda t, ww, bb: F.layer_norm(t, (C,), ww, bb, eps=1e-5), [x, w, b], g)
out.update(ln_x=x, ln_g=g, ln_w=w, ln_b=b, ln_y=y, ln_gx=gx, ln_gw=gw, ln_gb=gb)

# ---------------------------------------------------------------------- linear ----
x = randn(2, 3, 5)
w, b = randn(4, 5, scale=0.4), randn(4, scale=0.4)
g = randn(2, 3, 4)
y, (gx, gw, gb) = grads(F.linear, [x, w, b], g)
out.update(lin_x=x, lin_w=w, lin_b=b, lin_g=g, lin_y=y, lin_gx=gx, lin_gw=gw, lin_gb=gb)

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures",
                    "layer_nn.safetensors")
st_io.save(path, {k: v.detach().numpy() for k, v in out.items()},
           {"generator": "tests/reference/gen_layer_nn.py", "torch": torch.__version__})
print(f"wrote {os.path.normpath(path)}: {len(out)} tensors, {os.path.getsize(path)} bytes")
