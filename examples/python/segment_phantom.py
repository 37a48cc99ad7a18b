#!/usr/bin/env python3
# %% [markdown]
# # Diff-CL from Python: train on the phantom, segment held-out cases, score them
#
# A notebook-style walk through the `diffcl` package (bindings/python): pure Python over
# libdiffcl.so through ctypes, with numpy arrays lent to the library without copying.
# Run it as a script, or cell by cell (`# %%` markers) in an editor that understands them:
#
#     PYTHONPATH=bindings/python python3 examples/python/segment_phantom.py --iters 200
#
# The library is found through DIFFCL_LIBRARY (path to libdiffcl.so.0), the repository's
# build/ folder, or the system. Outputs go to --out (default: ./phantom-run).

# %%
import argparse
import os
import sys
import time

import numpy as np

import diffcl

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--iters", type=int, default=200, help="training iterations (default 200)")
ap.add_argument("--out", default="phantom-run", help="run folder (created)")
ap.add_argument("--threads", type=int, default=0, help="compute threads (0: all cores)")
ap.add_argument("--test-cases", type=int, default=4, help="held-out cases to segment")
args = ap.parse_args()

print("libdiffcl %s from %s" % (diffcl.version(), diffcl.library_path))
ctx = diffcl.Context(threads=args.threads, log_level="warn")

# %% [markdown]
# ## The data: a synthetic 2-D "left atrium" phantom
# Each case is a pure function of (seed, index, options): an image [C, H, W] (float32,
# z-scored) and a label map [H, W] (uint8: 0 background, 1 atrium).

# %%
image, label = diffcl.phantom_case(0, ctx, ndim=2)
print("image", image.shape, image.dtype, "label", label.shape, label.dtype,
      "foreground %.1f%%" % (100.0 * label.mean()))

# %% [markdown]
# ## Train Diff-CL for a few iterations
# Two networks (the CS V-Net with HF-Mamba modules and the diffusion DS) learn from
# 4 labeled and 20 unlabeled phantom slices. Every option is a field of
# `diffcl_train_options` (include/diffcl/train.h); the defaults are the method's.

# %%
os.makedirs(args.out, exist_ok=True)
trainer = diffcl.Trainer(ctx, out_dir=args.out, dims=2, labeled=4, phantom_cases=24,
                         patch=(64, 64), n_filters=8, ds_n_filters=8, iters=args.iters,
                         val_every=10 ** 9, log_every=10 ** 9)
t0 = time.time()
for it in range(args.iters):
    st = trainer.step()
    if it == 0 or (it + 1) % max(1, args.iters // 10) == 0:
        print("it %4d  loss %.3f  cs_sup %.3f  ds_sup %.3f  mu %.2f  agreement %.2f"
              % (st["iteration"], st["loss"], st["cs_sup"], st["ds_sup"], st["mu"],
                 st["agreement"]))
print("%d iterations in %.1f s" % (args.iters, time.time() - t0))

# %% [markdown]
# ## Save the segmentation network and load it back
# `model.safetensors` carries the configuration: `diffcl.load_model` needs nothing else
# (the `diffcl infer` tool and the C example `infer_nifti` read the same file).

# %%
model_path = os.path.join(args.out, "model.safetensors")
trainer.cs.save(model_path)
model = diffcl.load_model(model_path, ctx)
print(model)

# %% [markdown]
# ## Segment held-out cases and score them
# Sliding-window inference (averaged softmax over overlapping windows), then Dice and
# HD95 against the reference.

# %%
dice, hd95 = [], []
for i in range(args.test_cases):
    img, ref = diffcl.phantom_case(100000 + i, ctx, ndim=2, seed=99)
    pred = diffcl.segment(model, img, patch=(64, 64), stride=(32, 32))
    m = diffcl.metrics(pred, ref)
    dice.append(m["dice"])
    hd95.append(m["hd95"])
    print("case %d: dice %.3f  hd95 %.2f" % (i, m["dice"], m["hd95"]))
mean, std, n = diffcl.summarize(dice)
print("mean dice %.3f +- %.3f over %d cases" % (mean, std, n))

# %% [markdown]
# ## A picture: image | prediction | reference

# %%
lo, hi = np.percentile(img[0], [1, 99])
grey = np.clip((img[0] - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
montage = np.concatenate([grey, pred * 255, ref * 255], axis=1).astype(np.uint8)
png = os.path.join(args.out, "montage.png")
diffcl.write_png(montage, png)
print("wrote", png)

# %%
if not all(np.isfinite(dice)):
    sys.exit("non-finite Dice")
