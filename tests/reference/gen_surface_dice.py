#!/usr/bin/python3
"""Reference normalised surface Dice (NSD) for the `metrics` suite.

The definition is MONAI's `monai.metrics.compute_surface_dice` with its defaults
(use_subvoxels=False, distance_metric="euclidean", include_background=False). MONAI is not
installed on Debian, so the definition is written here on numpy/scipy, as MONAI computes it:

- edges (monai.metrics.utils.get_mask_edges, spacing None): mask XOR binary_erosion(mask) with
  scipy's default structuring element (the connectivity-1 cross) and border_value 0; MONAI
  first crops both masks to the bounding box of their union plus a one-voxel margin padded
  with zeros, which changes nothing (`monai_style` below does it that way and must agree);
- distances (get_surface_distance): distance_transform_edt(~edges_other, sampling=spacing)
  at the voxels of one edge set, kept as float32, compared `<= tau` in float32 (a torch
  float32 tensor against a Python float);
- NSD = (#{pred-edge distances <= tau} + #{ref-edge distances <= tau}) / (#pred edges +
  #ref edges); NaN when both masks are empty (nothing to count), 0 when exactly one is
  (every distance to an empty edge set is inf).

Run with /usr/bin/python3 (Debian's numpy/scipy, nibabel for the `diffcl eval` cases):
    /usr/bin/python3 tests/reference/gen_surface_dice.py
Writes tests/fixtures/surface_dice_ref.safetensors.
"""
import os
import sys

import numpy as np
from scipy.ndimage import binary_erosion, distance_transform_edt

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen_metrics as gm  # noqa: E402
import st_io  # noqa: E402

FIX = os.path.normpath(os.path.join(HERE, "..", "fixtures"))


def edges(mask):
    """Boundary voxels: the mask less its erosion by the cross, outside = background."""
    return mask & ~binary_erosion(mask)


def surface_dice(pred, ref, tol, spacing=None):
    """NSD of two binary masks (non-zero = foreground) at tolerance tol (spacing units)."""
    p, r = pred.astype(bool), ref.astype(bool)
    ep, er = edges(p), edges(r)
    if not ep.any() and not er.any():
        return np.nan
    if not ep.any() or not er.any():
        return 0.0
    d_pr = distance_transform_edt(~er, sampling=spacing)[ep].astype(np.float32)
    d_rp = distance_transform_edt(~ep, sampling=spacing)[er].astype(np.float32)
    t = np.float32(tol)
    return float(np.count_nonzero(d_pr <= t) + np.count_nonzero(d_rp <= t)) / (d_pr.size + d_rp.size)


def monai_style(pred, ref, tol, spacing=None):
    """The same number the way MONAI's code path gets it: crop to the union's bounding box with
    a zero-padded one-voxel margin, erode the crop, and the inf distance arrays of the empty
    cases (get_surface_distance returns |S(ref)| infs when the prediction's edges are empty)."""
    p, r = pred.astype(bool), ref.astype(bool)
    union = p | r
    if not union.any():
        ep = er = np.zeros(p.shape, bool)
    else:
        idx = np.nonzero(union)
        lo = [int(i.min()) - 1 for i in idx]
        hi = [int(i.max()) + 2 for i in idx]
        shape = [h - l for l, h in zip(lo, hi)]
        cp, cr = np.zeros(shape, bool), np.zeros(shape, bool)
        src = tuple(slice(max(l, 0), min(h, n)) for l, h, n in zip(lo, hi, p.shape))
        dst = tuple(slice(s.start - l, s.stop - l) for s, l in zip(src, lo))
        cp[dst], cr[dst] = p[src], r[src]
        ep, er = cp ^ binary_erosion(cp), cr ^ binary_erosion(cr)

    def dist(a, b):  # distances from the voxels of edge set a to edge set b
        if not b.any():
            return np.full(np.count_nonzero(a), np.inf, np.float32)
        if not a.any():
            return np.full(np.count_nonzero(b), np.inf, np.float32)
        return distance_transform_edt(~b, sampling=spacing).astype(np.float32)[a]

    d1, d2 = dist(ep, er), dist(er, ep)
    total = d1.size + d2.size
    if total == 0:
        return np.nan
    t = np.float32(tol)
    return float(np.count_nonzero(d1 <= t) + np.count_nonzero(d2 <= t)) / total


def per_class(pred, ref, n_classes, tol, spacing):
    rows = []
    for k in range(1, n_classes):
        a = surface_dice(pred == k, ref == k, tol, spacing)
        b = monai_style(pred == k, ref == k, tol, spacing)
        assert (np.isnan(a) and np.isnan(b)) or a == b, (k, a, b)
        rows.append(a)
    return np.array(rows, np.float64)


def empty_classes(rng, shape):
    """Class 1 in both maps, 2 in the reference only, 3 in the prediction only, 4 in neither."""
    pred, ref = gm.pair(rng, shape, 2, False)
    sl = tuple(slice(1, s // 3) for s in shape)
    ref[sl] = 2
    sl = tuple(slice(s // 3 * 2, s - 1) for s in shape)
    pred[sl] = 3
    return pred, ref


def main():
    rng = np.random.default_rng(20250619)
    out = {}
    cases = [
        # shape, n_classes, spacing (None = voxel units), tolerance, touches the border
        ((40, 36, 28), 2, (1.25, 0.8, 2.0), 2.0, True),
        ((32, 30, 26), 3, (0.7, 0.7, 1.5), 1.4, False),   # tau = 2 * 0.7: ties up to rounding
        ((30, 28, 24), 2, (1.5, 0.5, 2.0), 1.5, True),    # ties at exactly representable tau
        ((30, 28, 24), 2, None, 0.0, False),               # only coinciding boundary voxels
        ((30, 28, 24), 2, (2.0, 1.0, 0.5), 100.0, True),  # everything within: 1
        ((64, 56), 2, (0.5, 1.5), 1.5, True),
        ((64, 56), 3, None, 1.0, False),
        ((70, 50), 2, (0.9, 1.1), 2.5, True),
        ((24, 22, 20), 5, (1.0, 0.6, 2.5), 1.2, False),   # empty classes: 0, 0 and NaN
        ((48, 40), 5, (0.8, 1.3), 2.0, False),
        ((60, 50), 2, (0.1, 0.3), 0.3, True),  # float64 and float32 comparisons differ here
    ]
    for i, (shape, ncls, spacing, tol, border) in enumerate(cases):
        if ncls == 5:
            pred, ref = empty_classes(rng, shape)
        else:
            pred, ref = gm.pair(rng, shape, ncls, border)
        out[f"case{i}.pred"] = pred
        out[f"case{i}.ref"] = ref
        out[f"case{i}.spacing"] = np.zeros(len(shape)) if spacing is None else np.array(spacing)
        out[f"case{i}.tolerance"] = np.array([tol], np.float64)
        out[f"case{i}.n_classes"] = np.array([ncls], np.int64)
        out[f"case{i}.nsd"] = per_class(pred, ref, ncls, tol, spacing)
    # binary masks with an empty side: a mask against an empty one (0), two empty masks (NaN)
    m = gm.pair(rng, (16, 18, 12), 2, False)[1]
    z = np.zeros_like(m)
    assert surface_dice(m, z, 1.0) == 0.0 and surface_dice(z, m, 1.0) == 0.0
    assert np.isnan(surface_dice(z, z, 1.0)) and np.isnan(monai_style(z, z, 1.0))
    assert monai_style(m, z, 1.0) == 0.0 and monai_style(z, m, 1.0) == 0.0
    out["empty.mask"] = m

    # `diffcl eval --nsd-tol 2` on tests/fixtures/data/eval (gen_data.py), in the reference's mm
    import nibabel as nib
    ev = os.path.join(FIX, "data", "eval")
    rows = []
    for cid in ("e01", "e02"):
        pi = nib.load(os.path.join(ev, "pred", cid + ".nii.gz"))
        li = nib.load(os.path.join(ev, "label", cid + ".nii.gz"))
        pred = np.asarray(pi.dataobj).astype(np.uint8)
        lab = np.asarray(li.dataobj).astype(np.uint8)
        sp = [float(z) for z in li.header.get_zooms()[:3]]
        rows.append(per_class(pred, lab, 3, 2.0, sp))
    out["eval.nsd_tol"] = np.array([2.0])
    out["eval.nsd"] = np.array(rows, np.float64)

    path = os.path.join(FIX, "surface_dice_ref.safetensors")
    st_io.save(path, out, {"generator": "tests/reference/gen_surface_dice.py",
                           "definition": "MONAI compute_surface_dice, use_subvoxels=False",
                           "n_cases": str(len(cases))})
    print("wrote", path)
    for i in range(len(cases)):
        print(i, out[f"case{i}.nsd"].round(6).tolist())
    print("eval", out["eval.nsd"].round(6).tolist())


if __name__ == "__main__":
    main()
