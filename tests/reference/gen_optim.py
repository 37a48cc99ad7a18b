#!/usr/bin/python3
"""Reference fixtures of the `optim` suite (tests/optim), computed by torch 1.13 in float64.

Three parameters p0 [4,3], p1 [5], p2 [2,3,2] in two parameter groups ({p0, p2} and {p1})
are stepped 5 times on given gradients `grad.<step>.<i>` by
  - sgd:   torch.optim.SGD, group 0 Nesterov (momentum 0.9, weight decay 3e-5, lr 0.01),
           group 1 momentum 0.9 with dampening 0.1 (lr 0.02); before each step every group's
           lr is set to the poly schedule base * (1 - it / 10)^0.9;
  - adam:  torch.optim.Adam, group 0 lr 1e-3 weight decay 1e-2, group 1 lr 2e-3 AMSGrad;
  - adamw: torch.optim.AdamW, group 0 lr 1e-3 weight decay 1e-2, group 1 lr 5e-3 weight
           decay 0.1, betas (0.8, 0.99), eps 1e-6, AMSGrad.
For each: the parameters after step 3 and after step 5 (`<opt>.p3.<i>`, `<opt>.p5.<i>`) and
the optimizer buffers after step 5 (`<opt>.<buffer>.<i>`).
Also: learning rates of StepLR / CosineAnnealingLR / PolynomialLR per iteration, and
torch.nn.utils.clip_grad_norm_ results (2-norm and inf-norm).

Run with Debian's interpreter (the python3 on PATH lacks torch):
    /usr/bin/python3 tests/reference/gen_optim.py
Writes tests/fixtures/optim.safetensors.
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402

torch.set_default_dtype(torch.float64)
rng = np.random.RandomState(20240613)
out = {}
SHAPES = [(4, 3), (5,), (2, 3, 2)]
STEPS = 5

init = [torch.tensor(rng.standard_normal(s)) for s in SHAPES]
grads = [[torch.tensor(rng.standard_normal(s) * 0.5) for s in SHAPES] for _ in range(STEPS)]
for i, t in enumerate(init):
    out[f"init.{i}"] = t
for k in range(STEPS):
    for i, g in enumerate(grads[k]):
        out[f"grad.{k}.{i}"] = g


def run(name, make, schedule=None):
    ps = [t.clone().requires_grad_(True) for t in init]
    opt = make(ps)
    base = [g["lr"] for g in opt.param_groups]
    for k in range(STEPS):
        if schedule:
            for g, b in zip(opt.param_groups, base):
                g["lr"] = schedule(b, k)
        for p, g in zip(ps, grads[k]):
            p.grad = g.clone()
        opt.step()
        if k + 1 in (3, 5):
            for i, p in enumerate(ps):
                out[f"{name}.p{k + 1}.{i}"] = p.detach().clone()
    for i, p in enumerate(ps):
        for key, v in opt.state[p].items():
            if torch.is_tensor(v) and v.dim() > 0:
                out[f"{name}.{key}.{i}"] = v.detach().clone()


def poly(base, it):
    return base * (1 - it / 10) ** 0.9


run("sgd", lambda ps: torch.optim.SGD(
    [{"params": [ps[0], ps[2]], "lr": 0.01, "momentum": 0.9, "nesterov": True, "weight_decay": 3e-5},
     {"params": [ps[1]], "lr": 0.02, "momentum": 0.9, "dampening": 0.1}]), schedule=poly)
run("adam", lambda ps: torch.optim.Adam(
    [{"params": [ps[0], ps[2]], "lr": 1e-3, "weight_decay": 1e-2},
     {"params": [ps[1]], "lr": 2e-3, "amsgrad": True}]))
run("adamw", lambda ps: torch.optim.AdamW(
    [{"params": [ps[0], ps[2]], "lr": 1e-3, "weight_decay": 1e-2},
     {"params": [ps[1]], "lr": 5e-3, "weight_decay": 0.1, "betas": (0.8, 0.99), "eps": 1e-6,
      "amsgrad": True}]))

# ---------------------------------------------------------------- LR schedules ----
ITERS = 13


def lrs(make):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.1)
    sched = make(opt)
    v = []
    for _ in range(ITERS):
        v.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return torch.tensor(v)


S = torch.optim.lr_scheduler
out["lr_step"] = lrs(lambda o: S.StepLR(o, step_size=3, gamma=0.5))
out["lr_cosine"] = lrs(lambda o: S.CosineAnnealingLR(o, T_max=10, eta_min=1e-3))[:11]
out["lr_poly"] = lrs(lambda o: S.PolynomialLR(o, total_iters=10, power=0.9))

# ------------------------------------------------------------------- clipping ----
for tag, norm_type, max_norm in (("clip2", 2.0, 1.0), ("clipinf", float("inf"), 0.5),
                                 ("clipnone", 2.0, 100.0)):
    ps = [t.clone().requires_grad_(True) for t in init]
    for p, g in zip(ps, grads[0]):
        p.grad = g.clone()
    total = torch.nn.utils.clip_grad_norm_(ps, max_norm, norm_type=norm_type)
    out[f"{tag}.norm"] = total.detach().reshape(())
    for i, p in enumerate(ps):
        out[f"{tag}.{i}"] = p.grad.detach().clone()

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "optim.safetensors")
st_io.save(path, out, {"generator": "tests/reference/gen_optim.py", "torch": torch.__version__})
print("wrote", os.path.normpath(path), len(out), "tensors")
