"""Low-level access to libdiffcl through ctypes: finding and loading the shared object, the
C structs of the public headers, and argtypes/restype for every function the package calls.

Nothing here is compiled: the layouts below mirror include/diffcl/*.h (0.1.0, plus fields
appended since). Option structs are versioned by size (their first field, struct_size), so the package passes
the size of the layout it knows and a newer library reads only that much; the `python` test
suite compares every layout with the C compiler's offsetof/sizeof.
"""
import ctypes
import ctypes.util
import os

# ----------------------------------------------------------------- finding the library ----

_SONAME = "libdiffcl.so.0"  # the ABI major this package speaks


def _candidates():
    """Paths (or names) to try, in order: $DIFFCL_LIBRARY, the build tree, the system."""
    env = os.environ.get("DIFFCL_LIBRARY")
    if env:
        # An explicit choice: use it or fail, never silently fall back to another library.
        return [env], True
    out = []
    build_root = os.environ.get("DIFFCL_BUILD_ROOT")
    if build_root:
        out.append(os.path.join(build_root, "lib", _SONAME))
    # bindings/python/diffcl/_ffi.py -> the repository root, and its default build folder
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.normpath(os.path.join(here, "..", "..", ".."))
    out.append(os.path.join(root, "build", "lib", _SONAME))
    found = ctypes.util.find_library("diffcl")
    if found:
        out.append(found)
    out.append(_SONAME)  # the dynamic loader's own search (LD_LIBRARY_PATH, ld.so.cache)
    return out, False


def _mapped_files():
    """The files mapped into this process (/proc/self/maps); None where it cannot be read."""
    try:
        with open("/proc/self/maps") as f:
            return [line.split(None, 5)[-1].strip() for line in f]
    except OSError:
        return None


def _loaded_file(name):
    """The file the dynamic loader mapped for @name (a bare soname says nothing about which
    copy was found): the libdiffcl line of /proc/self/maps, else @name itself."""
    if os.sep in name:
        return os.path.abspath(name)
    for path in _mapped_files() or []:
        if os.path.basename(path).startswith("libdiffcl.so"):
            return path
    return name


def _default_wait_policy():
    """The spin count the diffcl tool uses (tools/diffcl.c, docs/performance.md "Shared machines
    and containers"): OpenMP threads wait briefly and then sleep, so that a busy neighbour process
    does not make every parallel region wait for a descheduled thread. libgomp reads it once,
    when it is loaded, so it is set only when libgomp is not in the process yet and the user has
    set neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT."""
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return
    mapped = _mapped_files()
    if mapped is None or any("libgomp" in os.path.basename(p) for p in mapped):
        return  # libgomp is loaded (or we cannot tell): too late to set it
    os.environ["GOMP_SPINCOUNT"] = "10000"


def _load():
    _default_wait_policy()
    paths, explicit = _candidates()
    errors = []
    for p in paths:
        if os.sep in p and not os.path.exists(p):
            errors.append("%s: no such file" % p)
            if explicit:
                break
            continue
        try:
            return ctypes.CDLL(p), _loaded_file(p)
        except OSError as e:
            errors.append("%s: %s" % (p, e))
            if explicit:
                break
    raise ImportError(
        "diffcl: cannot load libdiffcl (set DIFFCL_LIBRARY to the path of libdiffcl.so.0, "
        "build the repository in build/, or install it):\n  " + "\n  ".join(errors))


lib, library_path = _load()

# ----------------------------------------------------------------------------- types ----

c_status = ctypes.c_int          # diffcl_status
c_size = ctypes.c_size_t
c_i64 = ctypes.c_int64
c_u64 = ctypes.c_uint64
c_u32 = ctypes.c_uint32
c_int = ctypes.c_int
c_uint = ctypes.c_uint
c_double = ctypes.c_double
c_float = ctypes.c_float
c_char_p = ctypes.c_char_p
c_void_p = ctypes.c_void_p
P = ctypes.POINTER


class _Opaque(ctypes.Structure):
    pass


class Context_(_Opaque):
    pass


class Tensor_(_Opaque):
    pass


class Module_(_Opaque):
    pass


class Trainer_(_Opaque):
    pass


ctx_p = P(Context_)
tensor_p = P(Tensor_)
module_p = P(Module_)
trainer_p = P(Trainer_)

MAX_DIMS = 5
DTYPES = {0: "float32", 1: "float64", 2: "uint8", 3: "int32", 4: "int64"}  # diffcl_dtype

LOG_FN = ctypes.CFUNCTYPE(None, c_int, c_char_p, c_void_p)
PROGRESS_FN = ctypes.CFUNCTYPE(c_int, c_char_p, c_i64, c_i64, c_char_p, c_void_p)
DELETER_FN = ctypes.CFUNCTYPE(None, c_void_p, c_void_p)
ALLOC_FN = ctypes.CFUNCTYPE(c_void_p, c_size, c_size, c_void_p)
FREE_FN = ctypes.CFUNCTYPE(None, c_void_p, c_void_p)


class RngKey(ctypes.Structure):
    _fields_ = [("seed", c_u64), ("stream", c_u32), ("index", c_u32), ("iteration", c_u32),
                ("reserved", c_u32)]


class ContextOptions(ctypes.Structure):
    _fields_ = [("struct_size", c_size), ("n_threads", c_int), ("alloc", ALLOC_FN),
                ("free", FREE_FN), ("alloc_user", c_void_p), ("log", LOG_FN),
                ("log_user", c_void_p), ("log_level", c_int)]


class VnetOptions(ctypes.Structure):
    _fields_ = [("struct_size", c_size), ("dims", c_int), ("in_channels", c_int),
                ("n_classes", c_int), ("n_filters", c_int), ("normalization", c_int),
                ("has_dropout", c_int), ("dropout_p", c_double), ("hf_mamba_levels", c_uint),
                ("seed", c_u64), ("hfm_border", c_int)]


class SlidingWindowOptions(ctypes.Structure):
    _fields_ = [("struct_size", c_size), ("patch", c_i64 * 3), ("stride", c_i64 * 3),
                ("gaussian", c_int), ("tta_flips", c_int), ("batch", c_int),
                ("largest_cc", c_int)]


class TrainOptions(ctypes.Structure):
    _fields_ = [("struct_size", c_size),
                ("layout", c_char_p), ("data_dir", c_char_p), ("train_list", c_char_p),
                ("val_list", c_char_p), ("dims", c_int), ("labeled", c_int),
                ("labeled_list", c_char_p), ("patch", c_i64 * 3), ("batch_labeled", c_int),
                ("batch_unlabeled", c_int), ("phantom_cases", c_int),
                ("method", c_int), ("iters", c_i64), ("seed", c_u64),
                ("n_classes", c_int), ("n_filters", c_int), ("ds_n_filters", c_int),
                ("hfm_levels", c_uint),
                ("lr", c_double), ("momentum", c_double), ("weight_decay", c_double),
                ("warmup_frac", c_double), ("rampup_frac", c_double), ("mu1", c_double),
                ("mu2", c_double), ("eta", c_double), ("tau", c_double),
                ("bank_momentum", c_double), ("contrast_voxels", c_int),
                ("ddim_steps_train", c_int), ("ddim_steps_eval", c_int),
                ("out_dir", c_char_p), ("val_every", c_i64), ("log_every", c_i64),
                # after 0.1.0 (a 0.1.0 library reads only up to log_every)
                ("strong_unlabeled", c_int), ("pseudo_mask_dice", c_int),
                ("cps_variant", c_int), ("cps_confidence", c_double), ("ds_pseudo_train_mode", c_int),
                ("contrast_balanced", c_int), ("weak_strong", c_int),
                ("hfm_border", c_int), ("init_weights", c_char_p), ("fg_prob", c_double),
                ("png_color", c_int), ("label_map", c_char_p), ("plan", c_int),
                ("plan_ct_channels", c_uint), ("plan_interp", c_int), ("reorient_ras", c_int)]


class TrainStats(ctypes.Structure):
    _fields_ = [("struct_size", c_size), ("iteration", c_i64), ("loss", c_double),
                ("cs_sup", c_double), ("ds_sup", c_double), ("cs_pseudo", c_double),
                ("ds_pseudo", c_double), ("contrast", c_double), ("mu", c_double),
                ("lr", c_double), ("agreement", c_double), ("cs_fg_fraction", c_double),
                ("seconds", c_double)]


class MetricOptions(ctypes.Structure):
    _fields_ = [("struct_size", c_size), ("spacing", c_double * 3), ("connectivity", c_int),
                ("empty_policy", c_int), ("empty_value", c_double)]


class SegMetrics(ctypes.Structure):  # no struct_size: filled as an array element
    _fields_ = [("dice", c_double), ("jaccard", c_double), ("hd95", c_double),
                ("asd", c_double), ("assd", c_double), ("hd", c_double),
                ("n_pred", c_i64), ("n_ref", c_i64)]


class PhantomOptions(ctypes.Structure):
    _fields_ = [("struct_size", c_size), ("seed", c_u64), ("ndim", c_int), ("depth", c_i64),
                ("height", c_i64), ("width", c_i64), ("channels", c_int),
                ("max_tubes", c_int), ("tube_class", c_int), ("distractors", c_int),
                ("noise", c_double), ("bias", c_double), ("blur_sigma", c_double),
                ("normalize", c_int)]


class ImageMeta(ctypes.Structure):
    _fields_ = [("struct_size", c_size), ("ndim", c_int), ("spacing", c_double * 3),
                ("affine", (c_double * 4) * 4), ("has_nifti_header", c_int),
                ("nifti_header", ctypes.c_ubyte * 348), ("has_nifti2_header", c_int),
                ("nifti2_header", ctypes.c_ubyte * 540)]


# C type name -> (ctypes class, name of its _init() function or None)
STRUCTS = {
    "diffcl_rng_key": (RngKey, None),
    "diffcl_context_options": (ContextOptions, "diffcl_context_options_init"),
    "diffcl_vnet_options": (VnetOptions, "diffcl_vnet_options_init"),
    "diffcl_sliding_window_options": (SlidingWindowOptions,
                                      "diffcl_sliding_window_options_init"),
    "diffcl_train_options": (TrainOptions, "diffcl_train_options_init"),
    "diffcl_train_stats": (TrainStats, None),
    "diffcl_metric_options": (MetricOptions, "diffcl_metric_options_init"),
    "diffcl_seg_metrics": (SegMetrics, None),
    "diffcl_phantom_options": (PhantomOptions, "diffcl_phantom_options_init"),
    "diffcl_image_meta": (ImageMeta, "diffcl_image_meta_init"),
}

# ------------------------------------------------------------------------ prototypes ----

_PROTOS = {
    # core.h / version.h
    "diffcl_version_string": (c_char_p, []),
    "diffcl_version_number": (c_uint, []),
    "diffcl_status_string": (c_char_p, [c_status]),
    "diffcl_last_error": (c_char_p, []),
    "diffcl_clear_error": (None, []),
    "diffcl_context_options_init": (None, [c_void_p]),
    "diffcl_context_create": (c_status, [P(ContextOptions), P(ctx_p)]),
    "diffcl_context_free": (None, [ctx_p]),
    "diffcl_context_set_threads": (c_status, [ctx_p, c_int]),
    "diffcl_context_threads": (c_int, [ctx_p]),
    "diffcl_context_set_log": (c_status, [ctx_p, LOG_FN, c_void_p, c_int]),
    "diffcl_context_set_progress": (c_status, [ctx_p, PROGRESS_FN, c_void_p]),
    "diffcl_context_bytes_in_use": (c_size, [ctx_p]),
    "diffcl_context_peak_bytes": (c_size, [ctx_p]),
    "diffcl_context_set_caching": (c_status, [ctx_p, c_int]),
    "diffcl_context_cached_bytes": (c_size, [ctx_p]),
    "diffcl_context_release_cache": (None, [ctx_p]),
    # tensor.h
    "diffcl_tensor_new": (c_status, [ctx_p, c_int, c_int, P(c_i64), P(tensor_p)]),
    "diffcl_tensor_wrap": (c_status, [ctx_p, c_int, c_int, P(c_i64), P(c_i64), c_void_p,
                                      DELETER_FN, c_void_p, P(tensor_p)]),
    "diffcl_tensor_retain": (tensor_p, [tensor_p]),
    "diffcl_tensor_free": (None, [tensor_p]),
    "diffcl_tensor_ndim": (c_int, [tensor_p]),
    "diffcl_tensor_shape": (c_int, [tensor_p, P(c_i64)]),
    "diffcl_tensor_strides": (c_int, [tensor_p, P(c_i64)]),
    "diffcl_tensor_numel": (c_i64, [tensor_p]),
    "diffcl_tensor_dtype": (c_int, [tensor_p]),
    "diffcl_tensor_data": (c_void_p, [tensor_p]),
    "diffcl_tensor_context": (ctx_p, [tensor_p]),
    "diffcl_dtype_size": (c_size, [c_int]),
    # module.h / model.h
    "diffcl_module_free": (None, [module_p]),
    "diffcl_module_type": (c_char_p, [module_p]),
    "diffcl_module_forward": (c_status, [module_p, tensor_p, P(tensor_p)]),
    "diffcl_module_train": (None, [module_p, c_int]),
    "diffcl_module_is_training": (c_int, [module_p]),
    "diffcl_module_num_parameters": (c_i64, [module_p]),
    "diffcl_module_state_count": (c_int, [module_p, c_int]),
    "diffcl_module_state_entry": (c_status, [module_p, c_int, c_int, P(c_char_p),
                                             P(tensor_p), P(c_int)]),
    "diffcl_module_find": (tensor_p, [module_p, c_char_p]),
    "diffcl_vnet_options_init": (None, [c_void_p]),
    "diffcl_vnet_create": (c_status, [ctx_p, P(VnetOptions), P(module_p)]),
    "diffcl_vnet_get_options": (c_status, [module_p, P(VnetOptions)]),
    "diffcl_model_save": (c_status, [module_p, c_char_p]),
    "diffcl_model_load": (c_status, [ctx_p, c_char_p, P(module_p)]),
    # infer.h
    "diffcl_sliding_window_options_init": (None, [c_void_p]),
    "diffcl_sliding_window": (c_status, [module_p, tensor_p, P(SlidingWindowOptions),
                                         P(tensor_p)]),
    "diffcl_segment": (c_status, [module_p, tensor_p, P(SlidingWindowOptions), P(tensor_p),
                                  P(tensor_p)]),
    "diffcl_largest_component": (c_status, [tensor_p, c_int, P(tensor_p)]),
    "diffcl_probs_to_label": (c_status, [tensor_p, P(tensor_p)]),
    "diffcl_ensemble_create": (c_status, [ctx_p, P(module_p), c_int, P(module_p)]),
    # train.h
    "diffcl_train_options_init": (None, [c_void_p]),
    "diffcl_trainer_create": (c_status, [ctx_p, P(TrainOptions), P(trainer_p)]),
    "diffcl_trainer_resume": (c_status, [ctx_p, c_char_p, c_i64, P(trainer_p)]),
    "diffcl_trainer_free": (None, [trainer_p]),
    "diffcl_trainer_step": (c_status, [trainer_p, P(TrainStats)]),
    "diffcl_trainer_run": (c_status, [trainer_p]),
    "diffcl_trainer_save": (c_status, [trainer_p, c_char_p]),
    "diffcl_trainer_iteration": (c_i64, [trainer_p]),
    "diffcl_trainer_cs": (module_p, [trainer_p]),
    "diffcl_trainer_ds": (module_p, [trainer_p]),
    "diffcl_trainer_best_dice": (c_double, [trainer_p]),
    # metrics.h
    "diffcl_metric_options_init": (None, [c_void_p]),
    "diffcl_metrics_binary": (c_status, [tensor_p, tensor_p, P(MetricOptions), P(SegMetrics)]),
    "diffcl_metrics_per_class": (c_status, [tensor_p, tensor_p, c_int, P(MetricOptions),
                                            P(SegMetrics)]),
    "diffcl_metrics_summarize": (c_status, [P(c_double), c_i64, c_i64, P(c_double),
                                            P(c_double), P(c_i64)]),
    "diffcl_distance_transform": (c_status, [tensor_p, P(c_double), P(tensor_p)]),
    # data.h / image_io.h
    "diffcl_phantom_options_init": (None, [c_void_p]),
    "diffcl_phantom_case": (c_status, [ctx_p, P(PhantomOptions), c_i64, P(tensor_p),
                                       P(tensor_p)]),
    "diffcl_image_meta_init": (None, [c_void_p]),
    "diffcl_io_has_nifti": (c_int, []),
    "diffcl_io_has_hdf5": (c_int, []),
    "diffcl_nifti_read": (c_status, [ctx_p, c_char_p, c_int, P(tensor_p), P(ImageMeta)]),
    "diffcl_nifti_write": (c_status, [tensor_p, c_char_p, P(ImageMeta)]),
    "diffcl_png_read_image": (c_status, [ctx_p, c_char_p, P(tensor_p), P(c_int)]),
    "diffcl_png_read_label": (c_status, [ctx_p, c_char_p, P(tensor_p)]),
    "diffcl_png_write": (c_status, [tensor_p, c_char_p, c_int]),
}

missing = []
for _name, (_res, _args) in _PROTOS.items():
    try:
        _f = getattr(lib, _name)
    except AttributeError:
        missing.append(_name)
        continue
    _f.restype = _res
    _f.argtypes = _args


def fn(name):
    """The C function @name, or a clear error when this library lacks it."""
    if name in missing:
        raise NotImplementedError("%s is not exported by %s (library %s)"
                                  % (name, library_path, version_string()))
    return getattr(lib, name)


def version_string():
    return lib.diffcl_version_string().decode()


def defaults(struct_name):
    """A ctypes instance of @struct_name filled by the library's own _init() function.

    The init function writes the library's full struct, which may be longer than the layout
    this package knows (a newer library): it writes into a generous zeroed buffer and the
    known prefix is copied out; struct_size is set to the size both sides understand."""
    cls, init = STRUCTS[struct_name]
    out = cls()
    if init is None or init in missing:
        if cls._fields_[0][0] == "struct_size":
            out.struct_size = ctypes.sizeof(cls)
        return out
    buf = ctypes.create_string_buffer(max(4096, 4 * ctypes.sizeof(cls)))
    getattr(lib, init)(buf)
    ctypes.memmove(ctypes.addressof(out), buf, ctypes.sizeof(cls))
    lib_size = ctypes.c_size_t.from_buffer(buf).value
    out.struct_size = min(lib_size, ctypes.sizeof(cls)) if lib_size else ctypes.sizeof(cls)
    return out


_major = lib.diffcl_version_number() // 10000
if _major != 0:
    raise ImportError("diffcl: %s is version %s; this package speaks the 0.x ABI (%s)"
                      % (library_path, version_string(), _SONAME))

__all__ = ["lib", "library_path", "fn", "defaults", "version_string", "STRUCTS", "DTYPES"]
