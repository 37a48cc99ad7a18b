"""Models (V-Net, checkpoints) and whole-volume inference (include/diffcl/model.h, infer.h)."""
import ctypes
import os

import numpy as np

from . import _ffi
from ._ffi import fn
from .core import Tensor, as_tensor, check, choice, default_context

NORMS = {"none": 0, "batch": 1, "instance": 2, "group": 3, "layer": 4}


def level(n):
    """DIFFCL_LEVEL(n): the bit of encoder level n (1 = full resolution .. 5 = bottleneck)."""
    return 1 << (n - 1)


HFM_DEFAULT_LEVELS = level(3) | level(4) | level(5)


class Model:
    """A network (diffcl_module): a V-Net made here, one loaded from a checkpoint, or a
    trainer's network (then it belongs to the trainer, which this object keeps alive)."""

    def __init__(self, handle, ctx, owner=None):
        self._h = handle
        self._ctx = ctx
        self._owner = owner  # None: this object owns the module

    def __del__(self):
        h = getattr(self, "_h", None)
        if h and self._owner is None:
            self._h = None
            try:
                _ffi.lib.diffcl_module_free(h)
            except Exception:
                pass

    @property
    def handle(self):
        return self._h

    @property
    def context(self):
        return self._ctx

    @property
    def type(self):
        return fn("diffcl_module_type")(self._h).decode()

    @property
    def num_parameters(self):
        return fn("diffcl_module_num_parameters")(self._h)

    @property
    def training(self):
        return bool(fn("diffcl_module_is_training")(self._h))

    def train(self, mode=True):
        """Training mode (batch statistics, dropout) or evaluation mode (mode=False)."""
        fn("diffcl_module_train")(self._h, 1 if mode else 0)
        return self

    def eval(self):
        return self.train(False)

    def state_names(self, params=True, buffers=True):
        """Full dotted names of the parameters and/or buffers (PyTorch state-dict keys)."""
        kinds = (1 if params else 0) | (2 if buffers else 0)
        n = fn("diffcl_module_state_count")(self._h, kinds)
        out = []
        for i in range(n):
            name = _ffi.c_char_p()
            check(fn("diffcl_module_state_entry")(self._h, kinds, i, ctypes.byref(name), None,
                                                  None), "diffcl_module_state_entry")
            out.append(name.value.decode())
        return out

    def state(self, name):
        """The parameter or buffer @name as an array viewing the module's own memory."""
        h = fn("diffcl_module_find")(self._h, name.encode())
        if not h:
            raise KeyError(name)
        t = Tensor(fn("diffcl_tensor_retain")(h), self._ctx)
        return t.numpy()

    def forward(self, x):
        """Run the network on a batch [N, C, (D), H, W] (float32); returns the logits."""
        xt = as_tensor(x, self._ctx, np.float32)
        out = _ffi.tensor_p()
        check(fn("diffcl_module_forward")(self._h, xt.handle, ctypes.byref(out)),
              "diffcl_module_forward")
        return Tensor(out, self._ctx).numpy()

    __call__ = forward

    def options(self):
        """The V-Net's creation options as a dict (DIFFCL_ERR_INVALID_ARGUMENT otherwise)."""
        o = _ffi.defaults("diffcl_vnet_options")
        check(fn("diffcl_vnet_get_options")(self._h, ctypes.byref(o)), "diffcl_vnet_get_options")
        return {k: getattr(o, k) for k, _ in _ffi.VnetOptions._fields_ if k != "struct_size"}

    def save(self, path):
        """Save weights and configuration (diffcl_model_save; load with load_model)."""
        check(fn("diffcl_model_save")(self._h, os.fsencode(path)), "diffcl_model_save")

    def segment(self, image, **kw):
        """segment(self, image, **kw): see diffcl.segment."""
        return segment(self, image, **kw)

    def __repr__(self):
        return "diffcl.Model(%s, %d parameters)" % (self.type, self.num_parameters)


def vnet(ctx=None, **options):
    """Create a V-Net (diffcl_vnet_create). Options are the fields of diffcl_vnet_options:
    dims (3), in_channels (1), n_classes (2), n_filters (16), normalization ("batch"),
    has_dropout (True), dropout_p (0.5), hf_mamba_levels (0; see HFM_DEFAULT_LEVELS), seed."""
    ctx = ctx or default_context()
    o = _ffi.defaults("diffcl_vnet_options")
    for k, v in options.items():
        if k == "normalization" and isinstance(v, str):
            v = choice(NORMS, v, "normalization")
        if k not in dict(_ffi.VnetOptions._fields_) or k == "struct_size":
            raise TypeError("vnet: unknown option %r" % k)
        setattr(o, k, int(v) if isinstance(v, bool) else v)
    h = _ffi.module_p()
    check(fn("diffcl_vnet_create")(ctx.handle, ctypes.byref(o), ctypes.byref(h)),
          "diffcl_vnet_create")
    return Model(h, ctx)


def load_model(path, ctx=None):
    """Rebuild a model saved by Model.save / diffcl_model_save / a training run's
    model.safetensors (diffcl_model_load), in evaluation mode."""
    ctx = ctx or default_context()
    h = _ffi.module_p()
    check(fn("diffcl_model_load")(ctx.handle, os.fsencode(path), ctypes.byref(h)),
          "diffcl_model_load")
    m = Model(h, ctx)
    m.eval()
    return m


def _window_options(patch, stride, gaussian, tta_flips, batch, largest_cc):
    o = _ffi.defaults("diffcl_sliding_window_options")

    def three(v, what):
        v = tuple(int(x) for x in v)
        if len(v) == 2:
            return (1,) + v  # 2-D: D is ignored
        if len(v) != 3:
            raise ValueError("%s needs 2 or 3 entries, got %r" % (what, v))
        return v

    if patch is not None:
        o.patch[:] = three(patch, "patch")
    if stride is not None:
        o.stride[:] = three(stride, "stride")
    o.gaussian = int(bool(gaussian))
    o.tta_flips = int(bool(tta_flips))
    o.batch = int(batch)
    o.largest_cc = int(bool(largest_cc))
    return o


def segment(model, image, patch=None, stride=None, gaussian=False, tta_flips=False, batch=1,
            largest_cc=False, return_probs=False):
    """Segment a whole image with the sliding window (diffcl_segment).

    image: float32 [C, D, H, W] or [C, H, W] (add the channel axis: image[None]); lent to the
    library without copying when it is float32. patch / stride: window and step, 3 entries
    (D, H, W) or 2 for 2-D images; default the library's (LA: 112x112x80, 18x18x4).
    Returns the uint8 label map of the image's spatial shape, and with return_probs also the
    float32 probabilities [K, ...]. The model is put in evaluation mode."""
    t = as_tensor(image, model.context, np.float32)
    o = _window_options(patch, stride, gaussian, tta_flips, batch, largest_cc)
    model.eval()
    lab = _ffi.tensor_p()
    probs = _ffi.tensor_p()
    check(fn("diffcl_segment")(model.handle, t.handle, ctypes.byref(o), ctypes.byref(lab),
                               ctypes.byref(probs) if return_probs else None),
          "diffcl_segment")
    label = Tensor(lab, model.context).numpy()
    if return_probs:
        return label, Tensor(probs, model.context).numpy()
    return label


def sliding_window(model, image, patch=None, stride=None, gaussian=False, tta_flips=False,
                   batch=1):
    """Averaged softmax probabilities [K, ...] of @model over @image (diffcl_sliding_window)."""
    t = as_tensor(image, model.context, np.float32)
    o = _window_options(patch, stride, gaussian, tta_flips, batch, False)
    model.eval()
    out = _ffi.tensor_p()
    check(fn("diffcl_sliding_window")(model.handle, t.handle, ctypes.byref(o), ctypes.byref(out)),
          "diffcl_sliding_window")
    return Tensor(out, model.context).numpy()


def largest_component(label, connectivity=0, ctx=None):
    """Keep each class's largest connected component of a uint8 label map."""
    t = as_tensor(label, ctx, np.uint8)
    out = _ffi.tensor_p()
    check(fn("diffcl_largest_component")(t.handle, int(connectivity), ctypes.byref(out)),
          "diffcl_largest_component")
    return Tensor(out, t.context).numpy()


def ensemble(models):
    """One model that segments with the mean of the softmaxes of @models
    (diffcl_ensemble_create): segment() and sliding_window() with it give the mean of the
    members' probabilities, with the same windows, flips and weights. The models are taken:
    each Model passed is emptied (its network now belongs to the ensemble), so load them for
    the ensemble, e.g. ensemble([load_model(a), load_model(b)])."""
    models = list(models)
    if not models or any(m.handle is None or m._owner is not None for m in models):
        raise ValueError("ensemble() takes loaded models it may own (not a trainer's networks)")
    ctx = models[0].context
    arr = (_ffi.module_p * len(models))(*[m.handle for m in models])
    for m in models:  # taken by the call, whether it succeeds or not
        m._h = None
    out = _ffi.module_p()
    check(fn("diffcl_ensemble_create")(ctx.handle, arr, len(models), ctypes.byref(out)),
          "diffcl_ensemble_create")
    return Model(out, ctx)


def probs_to_label(probs, ctx=None):
    """The argmax over the class axis of float32 probabilities [K, ...] (diffcl_probs_to_label),
    e.g. of the mean of several models' saved probabilities; a uint8 label map."""
    ctx = ctx or default_context()
    t = as_tensor(probs, ctx, np.float32)
    out = _ffi.tensor_p()
    check(fn("diffcl_probs_to_label")(t.handle, ctypes.byref(out)), "diffcl_probs_to_label")
    return Tensor(out, ctx).numpy()


def save_probs(path, probs):
    """Save probabilities [K, ...] as a compressed .npz (key "probabilities", float32), the
    binding's counterpart of `diffcl infer --save-probs`."""
    np.savez_compressed(path, probabilities=np.asarray(probs, dtype=np.float32))
