"""The Diff-CL trainer (include/diffcl/train.h)."""
import ctypes
import os

from . import _ffi
from ._ffi import fn
from .core import check, choice, default_context
from .models import Model

METHODS = {"diffcl": 0, "supervised": 1}
_STRINGS = ("layout", "data_dir", "train_list", "val_list", "labeled_list", "out_dir",
            "init_weights", "label_map")


def train_options(**options):
    """diffcl_train_options filled with the library's defaults and @options (field names of
    the C struct; `method` may be "diffcl" or "supervised", `patch` 2 or 3 entries)."""
    o = _ffi.defaults("diffcl_train_options")
    keep = []  # bytes objects the struct points into, alive until the call returns
    fields = dict(_ffi.TrainOptions._fields_)
    for k, v in options.items():
        if k not in fields or k == "struct_size":
            raise TypeError("Trainer: unknown option %r (see include/diffcl/train.h)" % k)
        if k in _STRINGS:
            b = None if v is None else os.fsencode(v)
            keep.append(b)
            setattr(o, k, b)
        elif k == "method":
            setattr(o, k, choice(METHODS, v, "method") if isinstance(v, str) else int(v))
        elif k == "patch":
            p = [int(x) for x in v]
            if len(p) == 2:
                p = [0] + p
            o.patch[:] = p
        else:
            setattr(o, k, int(v) if isinstance(v, bool) else v)
    return o, keep


class Trainer:
    """A Diff-CL (or supervised) training run: Trainer(out_dir=..., **options).

    Options are diffcl_train_options fields; the defaults are the library's (the method
    brief's). step() runs one iteration and returns its statistics as a dict; run() trains
    to the configured number of iterations writing checkpoints, log.csv and curves.png into
    out_dir. The networks are available as Model objects (cs, ds)."""

    def __init__(self, ctx=None, **options):
        self._ctx = ctx or default_context()
        o, keep = train_options(**options)
        h = _ffi.trainer_p()
        check(fn("diffcl_trainer_create")(self._ctx.handle, ctypes.byref(o), ctypes.byref(h)),
              "diffcl_trainer_create")
        del keep  # the trainer copied the strings
        self._h = h

    @classmethod
    def resume(cls, run_dir, iters=0, ctx=None):
        """Re-open a run from its last.safetensors (diffcl_trainer_resume)."""
        self = cls.__new__(cls)
        self._ctx = ctx or default_context()
        h = _ffi.trainer_p()
        check(fn("diffcl_trainer_resume")(self._ctx.handle, os.fsencode(run_dir), int(iters),
                                          ctypes.byref(h)), "diffcl_trainer_resume")
        self._h = h
        return self

    def __del__(self):
        h = getattr(self, "_h", None)
        if h:
            self._h = None
            try:
                _ffi.lib.diffcl_trainer_free(h)
            except Exception:
                pass

    def step(self):
        """One iteration; its losses and state as a dict (diffcl_train_stats fields)."""
        st = _ffi.TrainStats()
        st.struct_size = ctypes.sizeof(st)
        check(fn("diffcl_trainer_step")(self._h, ctypes.byref(st)), "diffcl_trainer_step")
        return {k: getattr(st, k) for k, _ in _ffi.TrainStats._fields_ if k != "struct_size"}

    def run(self):
        """Train to the configured number of iterations (validation, checkpoints, curves)."""
        check(fn("diffcl_trainer_run")(self._h), "diffcl_trainer_run")

    def save(self, path):
        """Write the full trainer state (resumable) to @path."""
        check(fn("diffcl_trainer_save")(self._h, os.fsencode(path)), "diffcl_trainer_save")

    @property
    def iteration(self):
        return fn("diffcl_trainer_iteration")(self._h)

    @property
    def best_dice(self):
        return fn("diffcl_trainer_best_dice")(self._h)

    @property
    def cs(self):
        """The segmentation network (V-Net, HF-Mamba), owned by the trainer."""
        return Model(fn("diffcl_trainer_cs")(self._h), self._ctx, owner=self)

    @property
    def ds(self):
        """The diffusion segmentation network, or None (supervised method)."""
        h = fn("diffcl_trainer_ds")(self._h)
        return Model(h, self._ctx, owner=self) if h else None
