"""Python binding of libdiffcl (Diff-CL semi-supervised medical image segmentation).

Pure Python: the shared library is loaded with ctypes (no compiled extension) and numpy
arrays are lent to it without copying. The library is found through, in order, the
DIFFCL_LIBRARY environment variable (a path to libdiffcl.so.0), $DIFFCL_BUILD_ROOT/lib,
the repository's build/ folder, and the system (ctypes.util.find_library, ld.so).

    import diffcl
    ctx = diffcl.Context(threads=4)
    image, label = diffcl.phantom_case(0, ctx, ndim=2)
    model = diffcl.load_model("run/model.safetensors", ctx)
    pred = diffcl.segment(model, image, patch=(96, 96), stride=(48, 48))
    print(diffcl.metrics(pred, label)["dice"])

Errors raise diffcl.DiffclError (status, code, reason, detail). See docs/python.md.
"""
from ._ffi import library_path
from .core import (CancelledError, Context, DiffclError, IOErrorDiffcl, NotFoundError,
                   Tensor, as_tensor, default_context, lent_arrays, version, wrappable)
from .data import ImageMeta, has_nifti, phantom_case, read_nifti, read_png, write_nifti, write_png
from .metrics import distance_transform, metrics, metrics_per_class, summarize
from .models import (HFM_DEFAULT_LEVELS, Model, ensemble, largest_component, level, load_model,
                     probs_to_label, save_probs, segment, sliding_window, vnet)
from .train import Trainer

__version__ = "0.1.0"  # of this binding; version() is the loaded library's

__all__ = [
    "CancelledError", "Context", "DiffclError", "HFM_DEFAULT_LEVELS", "IOErrorDiffcl",
    "ImageMeta", "Model", "NotFoundError", "Tensor", "Trainer", "as_tensor", "default_context",
    "distance_transform", "ensemble", "has_nifti", "largest_component", "lent_arrays", "level",
    "library_path", "load_model", "metrics", "metrics_per_class", "phantom_case",
    "probs_to_label", "read_nifti", "read_png", "save_probs", "segment", "sliding_window", "summarize", "version", "vnet", "wrappable",
    "write_nifti", "write_png",
]
