#!/usr/bin/python3
"""Reference segmentation metrics for the `metrics` suite.

medpy is not installed on Debian; its metric functions (medpy.metric.binary: dc, jc, hd95,
asd, assd and the private __surface_distances) are re-implemented here line by line on
scipy.ndimage, exactly as medpy 0.4 does them, and applied to masks made with numpy.

Run with /usr/bin/python3 (Debian's numpy/scipy):
    /usr/bin/python3 tests/reference/gen_metrics.py
Writes tests/fixtures/metrics_ref.safetensors.
"""
import os
import sys

import numpy as np
from scipy.ndimage import (binary_erosion, distance_transform_edt, gaussian_filter,
                           generate_binary_structure)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402


# ---- medpy.metric.binary, verbatim logic ------------------------------------------------
def dc(result, reference):
    result = np.atleast_1d(result.astype(bool))
    reference = np.atleast_1d(reference.astype(bool))
    intersection = np.count_nonzero(result & reference)
    size_i1 = np.count_nonzero(result)
    size_i2 = np.count_nonzero(reference)
    try:
        return 2. * intersection / float(size_i1 + size_i2)
    except ZeroDivisionError:
        return 0.0


def jc(result, reference):
    result = np.atleast_1d(result.astype(bool))
    reference = np.atleast_1d(reference.astype(bool))
    intersection = np.count_nonzero(result & reference)
    union = np.count_nonzero(result | reference)
    return float(intersection) / float(union)


def __surface_distances(result, reference, voxelspacing=None, connectivity=1):
    result = np.atleast_1d(result.astype(bool))
    reference = np.atleast_1d(reference.astype(bool))
    if voxelspacing is not None:
        voxelspacing = np.asarray(voxelspacing, dtype=np.float64)
        if not voxelspacing.flags.contiguous:
            voxelspacing = voxelspacing.copy()
    footprint = generate_binary_structure(result.ndim, connectivity)
    if 0 == np.count_nonzero(result):
        raise RuntimeError('The first supplied array does not contain any binary object.')
    if 0 == np.count_nonzero(reference):
        raise RuntimeError('The second supplied array does not contain any binary object.')
    result_border = result ^ binary_erosion(result, structure=footprint, iterations=1)
    reference_border = reference ^ binary_erosion(reference, structure=footprint, iterations=1)
    dt = distance_transform_edt(~reference_border, sampling=voxelspacing)
    sds = dt[result_border]
    return sds


def hd(result, reference, voxelspacing=None, connectivity=1):
    hd1 = __surface_distances(result, reference, voxelspacing, connectivity).max()
    hd2 = __surface_distances(reference, result, voxelspacing, connectivity).max()
    return max(hd1, hd2)


def hd95(result, reference, voxelspacing=None, connectivity=1):
    hd1 = __surface_distances(result, reference, voxelspacing, connectivity)
    hd2 = __surface_distances(reference, result, voxelspacing, connectivity)
    return np.percentile(np.hstack((hd1, hd2)), 95)


def asd(result, reference, voxelspacing=None, connectivity=1):
    sds = __surface_distances(result, reference, voxelspacing, connectivity)
    return sds.mean()


def assd(result, reference, voxelspacing=None, connectivity=1):
    return np.mean((asd(result, reference, voxelspacing, connectivity),
                    asd(reference, result, voxelspacing, connectivity)))
# -----------------------------------------------------------------------------------------


def smooth_field(rng, shape, sigma, border):
    f = gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap" if border else "reflect")
    f /= f.std()
    if not border:  # keep the objects away from the image edge
        sl = tuple(slice(2, s - 2) for s in shape)
        g = np.full(shape, f.min())
        g[sl] = f[sl]
        f = g
    return f


def classes(f, n_classes):
    """Threshold a field into n_classes-1 nested classes."""
    lab = np.zeros(f.shape, np.uint8)
    qs = np.quantile(f, np.linspace(0.7, 0.93, n_classes - 1))
    for k, q in enumerate(qs):
        lab[f > q] = k + 1
    return lab


def pair(rng, shape, n_classes, border):
    """Reference and 'prediction': the prediction thresholds the reference's field plus a
    second smooth field (boundaries move by a few voxels), with a few random flips."""
    f = smooth_field(rng, shape, 3.0, border)
    g = smooth_field(rng, shape, 4.0, True)
    ref = classes(f, n_classes)
    pred = classes(f + 0.35 * g, n_classes)
    if not border:
        pred[f == f.min()] = 0
    flips = rng.random(shape) < 0.001
    pred[flips] = rng.integers(0, n_classes, size=int(flips.sum()))
    return pred, ref


def metrics_rows(pred, ref, n_classes, spacing, conn):
    rows = []
    for k in range(1, n_classes):
        p, r = pred == k, ref == k
        rows.append([dc(p, r), jc(p, r), hd95(p, r, spacing, conn), asd(p, r, spacing, conn),
                     assd(p, r, spacing, conn), hd(p, r, spacing, conn)])
    return np.array(rows, np.float64)


def main():
    rng = np.random.default_rng(20250311)
    out = {}
    cases = [
        # shape, n_classes, spacing (None = voxel units), connectivity, touches the border
        ((40, 36, 28), 2, None, 1, False),
        ((40, 36, 28), 2, (1.25, 0.8, 2.0), 1, True),
        ((32, 30, 26), 3, (0.7, 0.7, 1.5), 1, True),
        ((30, 28, 24), 2, None, 2, True),
        ((30, 28, 24), 2, (1.0, 2.0, 0.5), 3, False),
        ((64, 56), 2, None, 1, True),
        ((64, 56), 3, (0.5, 1.5), 2, False),
        ((48, 44, 20), 2, None, 1, True),
    ]
    for i, (shape, ncls, spacing, conn, border) in enumerate(cases):
        pred, ref = pair(rng, shape, ncls, border)
        out[f"case{i}.pred"] = pred
        out[f"case{i}.ref"] = ref
        sp = np.zeros(len(shape)) if spacing is None else np.array(spacing, np.float64)
        out[f"case{i}.spacing"] = sp
        out[f"case{i}.conn"] = np.array([conn], np.int64)
        out[f"case{i}.n_classes"] = np.array([ncls], np.int64)
        out[f"case{i}.metrics"] = metrics_rows(pred, ref, ncls, spacing, conn)

    # distance transforms straight from scipy
    m3 = rng.random((21, 17, 13)) > 0.03
    out["edt3.mask"] = m3.astype(np.uint8)
    out["edt3.spacing"] = np.array([1.5, 0.75, 2.25])
    out["edt3.dist"] = distance_transform_edt(m3, sampling=[1.5, 0.75, 2.25])
    m2 = np.ones((33, 40), bool)
    m2[5, 7] = m2[30, 2] = m2[17, 39] = False
    out["edt2.mask"] = m2.astype(np.uint8)
    out["edt2.dist"] = distance_transform_edt(m2)

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures",
                        "metrics_ref.safetensors")
    st_io.save(os.path.normpath(path), out, {"generator": "tests/reference/gen_metrics.py",
                                             "n_cases": str(len(cases))})
    print("wrote", os.path.normpath(path))
    for i in range(len(cases)):
        print(i, out[f"case{i}.metrics"].round(4).tolist())


if __name__ == "__main__":
    main()
