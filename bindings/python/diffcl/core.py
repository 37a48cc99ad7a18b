"""Errors, the compute context, and tensors that share memory with numpy arrays."""
import ctypes
import itertools
import threading

import numpy as np

from . import _ffi
from ._ffi import fn

# ------------------------------------------------------------------------------ errors ----

STATUS_NAMES = {
    0: "DIFFCL_OK", -1: "DIFFCL_ERR_INVALID_ARGUMENT", -2: "DIFFCL_ERR_OUT_OF_MEMORY",
    -3: "DIFFCL_ERR_SHAPE", -4: "DIFFCL_ERR_DTYPE", -5: "DIFFCL_ERR_IO",
    -6: "DIFFCL_ERR_FORMAT", -7: "DIFFCL_ERR_NOT_FOUND", -8: "DIFFCL_ERR_UNSUPPORTED",
    -9: "DIFFCL_ERR_NUMERIC", -10: "DIFFCL_ERR_CANCELLED", -11: "DIFFCL_ERR_STATE",
    -12: "DIFFCL_ERR_INTERNAL", -13: "DIFFCL_ERR_DISTRIBUTED",
}


class DiffclError(RuntimeError):
    """A libdiffcl call failed.

    Attributes: ``status`` (the diffcl_status value, negative), ``code`` (its C name, e.g.
    "DIFFCL_ERR_SHAPE"), ``reason`` (diffcl_status_string, e.g. "tensor shapes do not match"),
    ``detail`` (diffcl_last_error: what and where), ``call`` (the C function)."""

    def __init__(self, status, call, detail, reason):
        self.status = status
        self.code = STATUS_NAMES.get(status, "status %d" % status)
        self.call = call
        self.detail = detail
        self.reason = reason
        msg = "%s: %s" % (call, reason)
        if detail:  # most details begin with the function's name already: say it once
            msg += ": " + (detail[len(call) + 2:] if detail.startswith(call + ": ") else detail)
        super().__init__(msg)


class NotFoundError(DiffclError, LookupError):
    """DIFFCL_ERR_NOT_FOUND (a named tensor, key, file or case is missing)."""


class IOErrorDiffcl(DiffclError, OSError):
    """DIFFCL_ERR_IO (a file could not be opened, read or written)."""


class CancelledError(DiffclError):
    """DIFFCL_ERR_CANCELLED (the progress callback asked to stop)."""


def choice(table, value, what):
    """table[value], or a ValueError naming @what and the accepted values."""
    try:
        return table[value]
    except (KeyError, TypeError):
        raise ValueError("diffcl: unknown %s %r (one of: %s)"
                         % (what, value, ", ".join(str(k) for k in table))) from None


_CLASSES = {-5: IOErrorDiffcl, -7: NotFoundError, -10: CancelledError}


def check(status, call):
    """Raise a DiffclError for a non-zero @status returned by the C function @call."""
    if status == 0:
        return
    # diffcl_last_error is per thread and valid until the next libdiffcl call: read it first.
    raw = _ffi.lib.diffcl_last_error()
    detail = raw.decode("utf-8", "replace") if raw else ""
    reason = (_ffi.lib.diffcl_status_string(status) or b"").decode("utf-8", "replace")
    cls = _CLASSES.get(status, DiffclError)
    raise cls(status, call, detail, reason)


def version():
    """Version of the loaded library, "MAJOR.MINOR.PATCH"."""
    return _ffi.version_string()


# ----------------------------------------------------------------------------- context ----

LOG_LEVELS = {"error": 0, "warn": 1, "warning": 1, "info": 2, "debug": 3}
_LEVEL_NAMES = {0: "error", 1: "warn", 2: "info", 3: "debug"}


class Context:
    """A compute context (diffcl_context): thread count, memory accounting, log and progress.

    Everything made from a context keeps it alive; the C context is released when the last
    of them is gone. Use one context per thread (the C library's rule).

    threads: 0 = all available cores. log_level: "error", "warn", "info" (the library's
    default) or "debug". log: None (lines go to stderr) or a callable (level, message)."""

    def __init__(self, threads=0, log_level="info", log=None):
        opts = _ffi.defaults("diffcl_context_options")
        opts.n_threads = int(threads)
        if isinstance(log_level, str):
            opts.log_level = choice(LOG_LEVELS, log_level, "log_level")
        else:
            opts.log_level = int(log_level)
        self._log_cb = None
        self._progress_cb = None
        if log is not None:
            def _log(level, message, user):
                log(_LEVEL_NAMES.get(level, str(level)),
                    message.decode("utf-8", "replace") if message else "")
            self._log_cb = _ffi.LOG_FN(_log)  # kept alive as long as the context
            opts.log = self._log_cb
        h = _ffi.ctx_p()
        check(fn("diffcl_context_create")(ctypes.byref(opts), ctypes.byref(h)),
              "diffcl_context_create")
        self._h = h

    def __del__(self):
        h = getattr(self, "_h", None)
        if h:
            self._h = None
            try:
                _ffi.lib.diffcl_context_free(h)
            except Exception:  # interpreter shutdown
                pass

    @property
    def handle(self):
        return self._h

    @property
    def threads(self):
        return fn("diffcl_context_threads")(self._h)

    @threads.setter
    def threads(self, n):
        check(fn("diffcl_context_set_threads")(self._h, int(n)), "diffcl_context_set_threads")

    @property
    def bytes_in_use(self):
        return fn("diffcl_context_bytes_in_use")(self._h)

    @property
    def peak_bytes(self):
        return fn("diffcl_context_peak_bytes")(self._h)

    @property
    def cached_bytes(self):
        """Bytes of freed buffers the context keeps for reuse (its block cache)."""
        return fn("diffcl_context_cached_bytes")(self._h)

    def set_caching(self, enabled):
        """Turn the block cache on or off (off also releases it)."""
        check(fn("diffcl_context_set_caching")(self._h, 1 if enabled else 0),
              "diffcl_context_set_caching")

    def release_cache(self):
        """Give every cached buffer back to the system allocator."""
        fn("diffcl_context_release_cache")(self._h)

    def set_progress(self, callback):
        """Install callback(what, done, total, message) -> truthy to cancel, or None to remove.
        Long operations (training, sliding windows) report through it; cancelling makes them
        raise CancelledError."""
        if callback is None:
            self._progress_cb = None
            check(fn("diffcl_context_set_progress")(self._h, _ffi.PROGRESS_FN(), None),
                  "diffcl_context_set_progress")
            return

        def _progress(what, done, total, message, user):
            try:
                stop = callback(what.decode() if what else "", done, total,
                                message.decode("utf-8", "replace") if message else "")
            except Exception:  # an exception cannot cross C frames: cancel instead
                import traceback
                traceback.print_exc()
                return 1
            return 1 if stop else 0

        self._progress_cb = _ffi.PROGRESS_FN(_progress)
        check(fn("diffcl_context_set_progress")(self._h, self._progress_cb, None),
              "diffcl_context_set_progress")


_default_ctx = None
_default_lock = threading.Lock()


def default_context():
    """A process-wide context (all cores, warnings and errors logged) for calls given none."""
    global _default_ctx
    with _default_lock:
        if _default_ctx is None:
            _default_ctx = Context(log_level="warn")
        return _default_ctx


# ----------------------------------------------------------------------------- tensors ----

_NP_TO_DT = {np.dtype(np.float32): 0, np.dtype(np.float64): 1, np.dtype(np.uint8): 2,
             np.dtype(np.int32): 3, np.dtype(np.int64): 4}
_DT_TO_NP = {v: k for k, v in _NP_TO_DT.items()}

# Arrays lent to the library: key -> array, dropped by the deleter the library calls when
# the last tensor viewing the memory is released (possibly much later than the Tensor object
# that wrapped it, e.g. when a module keeps a reference).
_lent = {}
_lent_lock = threading.Lock()
_lent_keys = itertools.count(1)


def _release(data, user):
    try:
        with _lent_lock:
            _lent.pop(user, None)
    except Exception:  # interpreter shutdown
        pass


_DELETER = _ffi.DELETER_FN(_release)


def lent_arrays():
    """Number of numpy arrays the library currently holds (for tests and leak hunting)."""
    with _lent_lock:
        return len(_lent)


def wrappable(arr):
    """True when @arr can be lent to the library as it is (no copy): a dtype of float32,
    float64, uint8, int32, int64 or bool, native byte order, aligned memory (C reads its
    elements as such; a field of a packed structured array is not), non-negative strides
    that are whole elements."""
    dt = arr.dtype
    if dt == np.bool_:
        dt = np.dtype(np.uint8)
    if not dt.isnative or dt not in _NP_TO_DT or not arr.flags.aligned:
        return False
    return all(s >= 0 and s % dt.itemsize == 0
               for s, n in zip(arr.strides, arr.shape) if n > 1)


class Tensor:
    """A libdiffcl tensor (diffcl_tensor), owning one reference to the C object.

    Tensor.from_numpy() wraps an array without copying (the library sees the same memory);
    Tensor.numpy() returns an array viewing the tensor's memory without copying."""

    __slots__ = ("_h", "_ctx", "_src", "__weakref__")

    def __init__(self, handle, ctx, src=None):
        """Take ownership of one reference to @handle (a diffcl_tensor*), made in @ctx."""
        if not handle:
            raise ValueError("NULL tensor")
        self._h = handle
        self._ctx = ctx
        self._src = src

    def __del__(self):
        h = getattr(self, "_h", None)
        if h:
            self._h = None
            try:
                _ffi.lib.diffcl_tensor_free(h)
            except Exception:
                pass

    @classmethod
    def from_numpy(cls, arr, ctx=None, copy=False):
        """Lend @arr to the library. Without @copy the tensor views the array's own memory
        (writes on either side are seen by the other) and the array is kept alive until the
        library releases its last view; arrays the library cannot view as they are (see
        wrappable()) are copied once into a contiguous array of a supported dtype. bool
        arrays are viewed as uint8."""
        ctx = ctx or default_context()
        arr = np.asarray(arr) if not isinstance(arr, np.ndarray) else arr
        if copy or not wrappable(arr):
            target = arr.dtype
            if target == np.bool_:
                target = np.uint8
            elif np.dtype(target).newbyteorder("=") in _NP_TO_DT:
                target = np.dtype(target).newbyteorder("=")
            elif np.issubdtype(target, np.floating):
                target = np.float64 if np.dtype(target).itemsize > 4 else np.float32
            elif np.issubdtype(target, np.integer) or np.issubdtype(target, np.bool_):
                target = np.int64
            else:
                raise TypeError("diffcl: no tensor dtype for numpy dtype %s" % arr.dtype)
            arr = np.ascontiguousarray(arr, dtype=target)
        if arr.dtype == np.bool_:
            arr = arr.view(np.uint8)
        dt = _NP_TO_DT[arr.dtype]
        nd = arr.ndim
        shape = (_ffi.c_i64 * max(nd, 1))(*arr.shape)
        isz = arr.dtype.itemsize
        strides = (_ffi.c_i64 * max(nd, 1))(*[(s // isz) if n > 1 else 0
                                              for s, n in zip(arr.strides, arr.shape)])
        ptr = arr.ctypes.data
        if not ptr:  # an empty array may have no memory; the library needs an address
            arr = np.empty(max(arr.size, 1), dtype=arr.dtype)[:0].reshape(arr.shape)
            ptr = arr.ctypes.data
        with _lent_lock:
            key = next(_lent_keys)
            _lent[key] = arr
        h = _ffi.tensor_p()
        try:
            check(fn("diffcl_tensor_wrap")(ctx.handle, dt, nd, shape, strides, ptr, _DELETER,
                                           key, ctypes.byref(h)), "diffcl_tensor_wrap")
        except BaseException:
            with _lent_lock:  # the library took nothing: it will not call the deleter
                _lent.pop(key, None)
            raise
        return cls(h, ctx, src=arr)

    @classmethod
    def zeros(cls, shape, dtype=np.float32, ctx=None):
        """A new tensor of zeros in memory the library owns."""
        ctx = ctx or default_context()
        shape = tuple(int(n) for n in shape)
        dims = (_ffi.c_i64 * max(len(shape), 1))(*shape)
        h = _ffi.tensor_p()
        dt = choice(_NP_TO_DT, np.dtype(dtype), "tensor dtype")
        check(fn("diffcl_tensor_new")(ctx.handle, dt, len(shape), dims,
                                      ctypes.byref(h)), "diffcl_tensor_new")
        return cls(h, ctx)

    @property
    def handle(self):
        return self._h

    @property
    def context(self):
        return self._ctx

    @property
    def ndim(self):
        return fn("diffcl_tensor_ndim")(self._h)

    @property
    def shape(self):
        buf = (_ffi.c_i64 * _ffi.MAX_DIMS)()
        n = fn("diffcl_tensor_shape")(self._h, buf)
        return tuple(buf[i] for i in range(n))

    @property
    def dtype(self):
        return _DT_TO_NP[fn("diffcl_tensor_dtype")(self._h)]

    @property
    def size(self):
        return fn("diffcl_tensor_numel")(self._h)

    def numpy(self):
        """An array viewing this tensor's memory (no copy); it keeps the tensor alive.
        Arrays lent with from_numpy() come back as views of the same memory."""
        shape = self.shape
        dtype = self.dtype
        if self.size == 0:
            return np.empty(shape, dtype=dtype)
        sbuf = (_ffi.c_i64 * _ffi.MAX_DIMS)()
        n = fn("diffcl_tensor_strides")(self._h, sbuf)
        strides = tuple(sbuf[i] * dtype.itemsize for i in range(n))
        ptr = fn("diffcl_tensor_data")(self._h)
        readonly = self._src is not None and not self._src.flags.writeable
        return np.asarray(_ArrayView(self, ptr, shape, strides, dtype.str, readonly))

    def __array__(self, dtype=None):
        a = self.numpy()
        return a if dtype is None else a.astype(dtype, copy=False)

    def __repr__(self):
        return "diffcl.Tensor(shape=%s, dtype=%s)" % (self.shape, self.dtype)


class _ArrayView:
    """Carries __array_interface__ for np.asarray and keeps the tensor alive as the array's base."""

    __slots__ = ("__array_interface__", "_tensor")

    def __init__(self, tensor, ptr, shape, strides, typestr, readonly):
        self._tensor = tensor
        self.__array_interface__ = {"version": 3, "shape": shape, "typestr": typestr,
                                    "data": (ptr, readonly), "strides": strides}


def as_tensor(x, ctx=None, dtype=None):
    """@x as a Tensor: a Tensor is returned as is, an array is lent without copying (converted
    once when @dtype is given and differs, or when the library cannot view it)."""
    if isinstance(x, Tensor):
        if dtype is not None and x.dtype != np.dtype(dtype):
            return Tensor.from_numpy(x.numpy().astype(dtype), ctx or x.context)
        return x
    arr = np.asarray(x)
    if dtype is not None and arr.dtype != np.dtype(dtype):
        arr = arr.astype(dtype)
    return Tensor.from_numpy(arr, ctx)


