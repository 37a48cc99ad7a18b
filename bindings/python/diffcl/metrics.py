"""Segmentation metrics (include/diffcl/metrics.h): Dice, Jaccard, HD95, ASD, ASSD, HD."""
import ctypes

import numpy as np

from . import _ffi
from ._ffi import fn
from .core import Tensor, as_tensor, check, choice

EMPTY_POLICIES = {"nan": 0, "value": 1, "diagonal": 2}
_FIELDS = [k for k, _ in _ffi.SegMetrics._fields_]


def _options(spacing, connectivity, empty, empty_value, ndim):
    o = _ffi.defaults("diffcl_metric_options")
    if spacing is not None:
        s = [float(x) for x in spacing]
        if len(s) != ndim:
            raise ValueError("spacing has %d values for %d-axis label maps: give one per axis"
                             % (len(s), ndim))
        o.spacing[:] = s + [0.0] * (3 - len(s))
    o.connectivity = int(connectivity)
    if isinstance(empty, str):
        o.empty_policy = choice(EMPTY_POLICIES, empty, "empty policy")
    else:  # a number: that value
        o.empty_policy = EMPTY_POLICIES["value"]
        empty_value = float(empty)
    o.empty_value = float(empty_value)
    return o


def _dict(m):
    return {k: getattr(m, k) for k in _FIELDS}


def metrics(pred, ref, spacing=None, connectivity=1, empty="nan", empty_value=0.0, ctx=None):
    """Metrics of a binary prediction against a reference (non-zero = foreground), arrays of
    one shape with 1 to 3 axes and any dtype (lent without copying when possible).
    spacing: one value per axis (voxel units by default); empty: "nan" (default),
    "diagonal", or a number, for the distances when exactly one mask is empty.
    Returns {dice, jaccard, hd95, asd, assd, hd, n_pred, n_ref}."""
    p = as_tensor(pred, ctx)
    r = as_tensor(ref, ctx or p.context)
    o = _options(spacing, connectivity, empty, empty_value, p.ndim)
    out = _ffi.SegMetrics()
    check(fn("diffcl_metrics_binary")(p.handle, r.handle, ctypes.byref(o), ctypes.byref(out)),
          "diffcl_metrics_binary")
    return _dict(out)


def metrics_per_class(pred, ref, n_classes, spacing=None, connectivity=1, empty="nan",
                      empty_value=0.0, ctx=None):
    """Per-class metrics of two label maps: a list whose entry k-1 is class k's dict
    (k = 1 .. n_classes-1; the background is not scored)."""
    if n_classes < 2:
        raise ValueError("n_classes must be >= 2")
    p = as_tensor(pred, ctx)
    r = as_tensor(ref, ctx or p.context)
    o = _options(spacing, connectivity, empty, empty_value, p.ndim)
    out = (_ffi.SegMetrics * (n_classes - 1))()
    check(fn("diffcl_metrics_per_class")(p.handle, r.handle, int(n_classes), ctypes.byref(o),
                                         out), "diffcl_metrics_per_class")
    return [_dict(m) for m in out]


def summarize(values):
    """(mean, std, n_valid) of the finite values (NaN skipped), as diffcl_metrics_summarize."""
    v = np.ascontiguousarray(values, dtype=np.float64).ravel()
    mean, std, n = _ffi.c_double(), _ffi.c_double(), _ffi.c_i64()
    check(fn("diffcl_metrics_summarize")(v.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
                                         v.size, 1, ctypes.byref(mean), ctypes.byref(std),
                                         ctypes.byref(n)), "diffcl_metrics_summarize")
    return mean.value, std.value, n.value


def distance_transform(mask, spacing=None, ctx=None):
    """Exact Euclidean distance transform (as scipy.ndimage.distance_transform_edt)."""
    t = as_tensor(mask, ctx)
    sp = None
    if spacing is not None:
        sp = (ctypes.c_double * len(spacing))(*[float(x) for x in spacing])
    out = _ffi.tensor_p()
    check(fn("diffcl_distance_transform")(t.handle, sp, ctypes.byref(out)),
          "diffcl_distance_transform")
    return Tensor(out, t.context).numpy()
