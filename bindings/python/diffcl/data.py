"""The built-in phantom data set and image files (include/diffcl/data.h, image_io.h)."""
import ctypes
import os

import numpy as np

from . import _ffi
from ._ffi import fn
from .core import Tensor, as_tensor, check, default_context


def phantom_case(index, ctx=None, **options):
    """Phantom case @index: (image float32 [C, D, H, W] or [C, H, W], label uint8 [D, H, W] or
    [H, W]). Options are diffcl_phantom_options fields: seed (1234), ndim (3), depth,
    height, width, channels (1), max_tubes, tube_class, distractors, noise, bias,
    blur_sigma, normalize. A case is a pure function of (seed, index, options)."""
    ctx = ctx or default_context()
    o = _ffi.defaults("diffcl_phantom_options")
    fields = dict(_ffi.PhantomOptions._fields_)
    for k, v in options.items():
        if k not in fields or k == "struct_size":
            raise TypeError("phantom_case: unknown option %r" % k)
        setattr(o, k, int(v) if isinstance(v, bool) else v)
    img, lab = _ffi.tensor_p(), _ffi.tensor_p()
    check(fn("diffcl_phantom_case")(ctx.handle, ctypes.byref(o), int(index), ctypes.byref(img),
                                    ctypes.byref(lab)), "diffcl_phantom_case")
    return Tensor(img, ctx).numpy(), Tensor(lab, ctx).numpy()


class ImageMeta:
    """Geometry of an image (diffcl_image_meta): spacing, affine and, for NIfTI input, the
    original header, so a prediction written with it carries the input's geometry."""

    def __init__(self, raw=None):
        self.raw = raw if raw is not None else _ffi.defaults("diffcl_image_meta")

    @property
    def spacing(self):
        return tuple(self.raw.spacing[i] for i in range(max(self.raw.ndim, 0) or 3))

    @property
    def affine(self):
        return np.array([[self.raw.affine[i][j] for j in range(4)] for i in range(4)])

    @property
    def has_nifti_header(self):
        return bool(self.raw.has_nifti_header)

    @property
    def has_nifti2_header(self):
        """The input was NIfTI-2: write_nifti with this meta writes NIfTI-2."""
        return bool(self.raw.has_nifti2_header)


def has_nifti():
    return bool(fn("diffcl_io_has_nifti")())


def read_nifti(path, label=False, ctx=None):
    """Read .nii / .nii.gz as nibabel shows it ((x, y, z[, t])); float32 image (scaling
    applied) or, with label=True, uint8 class indices. Returns (array, ImageMeta)."""
    ctx = ctx or default_context()
    meta = ImageMeta()
    out = _ffi.tensor_p()
    check(fn("diffcl_nifti_read")(ctx.handle, os.fsencode(path), 1 if label else 0,
                                  ctypes.byref(out), ctypes.byref(meta.raw)), "diffcl_nifti_read")
    return Tensor(out, ctx).numpy(), meta


def write_nifti(array, path, meta=None, ctx=None):
    """Write a 2-D/3-D/4-D array to .nii / .nii.gz, keeping @meta's geometry when given."""
    t = as_tensor(array, ctx)
    check(fn("diffcl_nifti_write")(t.handle, os.fsencode(path),
                                   ctypes.byref(meta.raw) if meta is not None else None),
          "diffcl_nifti_write")


def read_png(path, label=False, ctx=None):
    """Read a PNG: float32 [H, W] raw values, or with label=True uint8 class indices."""
    ctx = ctx or default_context()
    out = _ffi.tensor_p()
    if label:
        check(fn("diffcl_png_read_label")(ctx.handle, os.fsencode(path), ctypes.byref(out)),
              "diffcl_png_read_label")
    else:
        check(fn("diffcl_png_read_image")(ctx.handle, os.fsencode(path), ctypes.byref(out), None),
              "diffcl_png_read_image")
    return Tensor(out, ctx).numpy()


def write_png(array, path, bit_depth=8, ctx=None):
    """Write [H, W] (grey) or uint8 [H, W, 3] (RGB) as PNG."""
    t = as_tensor(array, ctx)
    check(fn("diffcl_png_write")(t.handle, os.fsencode(path), int(bit_depth)), "diffcl_png_write")
