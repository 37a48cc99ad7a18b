/* HDF5 datasets (LA / BraTS / Pancreas h5 layouts) through libhdf5, optional at build time. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "diffcl_config.h"
#include "io/image_io_internal.h"
#include "tensor/tensor_internal.h"

#if DIFFCL_HAVE_HDF5
#include <hdf5.h>
#include <pthread.h>

/* Debian's serial libhdf5 is not built thread-safe: one call at a time in this process
 * (the sampler's prefetch thread may read while the caller's thread does). */
static pthread_mutex_t h5_lock = PTHREAD_MUTEX_INITIALIZER;

/* Bytes of fill value (chunks never written) a dataset may claim beyond what its stored
 * chunks can expand to: h5_read_locked, docs/security.md. */
#define H5_FILL_SLACK ((uint64_t)64 << 20)

int diffcl_io_has_hdf5(void)
{
    return 1;
}

/* HDF5 prints its error stack to stderr by default: silence it for our calls. */
static void quiet(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

/* The tensor type for a dataset of file type @p ty, and the memory type HDF5 converts to
 * (*mem, the caller closes it): float32 -> F32, float64 -> F64, half -> F32, 8-bit unsigned
 * and h5py's bool enum -> U8, other integers of up to 32 bits -> I32, up to 64 -> I64. */
static diffcl_status h5_types(hid_t ty, const char *path, const char *name, diffcl_dtype *dt,
                              hid_t *mem)
{
    const char *fn = "diffcl_h5_read";
    H5T_class_t cls = H5Tget_class(ty);
    size_t size = H5Tget_size(ty);
    if (size == 0) /* H5Tget_size's error value: a corrupt datatype message */
        return dc_error(DIFFCL_ERR_FORMAT, "%s: '%s': dataset '%s' has a corrupt element type", fn,
                        path, name);
    if (cls == H5T_FLOAT && size == 4) {
        *dt = DIFFCL_F32;
        *mem = H5Tcopy(H5T_NATIVE_FLOAT);
    } else if (cls == H5T_FLOAT && (size == 8 || size == 2)) {
        *dt = size == 8 ? DIFFCL_F64 : DIFFCL_F32;
        *mem = H5Tcopy(size == 8 ? H5T_NATIVE_DOUBLE : H5T_NATIVE_FLOAT);
    } else if ((cls == H5T_INTEGER && size == 1 && H5Tget_sign(ty) == H5T_SGN_NONE) ||
               (cls == H5T_ENUM && size == 1)) {
        *dt = DIFFCL_U8; /* uint8, and h5py's bool (an 8-bit enum FALSE=0, TRUE=1) */
        *mem = cls == H5T_ENUM ? H5Tget_native_type(ty, H5T_DIR_ASCEND) : H5Tcopy(H5T_NATIVE_UCHAR);
    } else if (cls == H5T_INTEGER && (size < 4 || (size == 4 && H5Tget_sign(ty) == H5T_SGN_2))) {
        *dt = DIFFCL_I32;
        *mem = H5Tcopy(H5T_NATIVE_INT32);
    } else if (cls == H5T_INTEGER && size <= 8) {
        *dt = DIFFCL_I64;
        *mem = H5Tcopy(H5T_NATIVE_INT64);
    } else {
        return dc_error(
            DIFFCL_ERR_FORMAT,
            "%s: '%s': dataset '%s' has an unsupported element type (class %d, %zu bytes)", fn,
            path, name, (int)cls, size);
    }
    return DIFFCL_OK;
}

/* A corrupt header can claim any shape: the element count must not overflow, an unfiltered
 * (contiguous or compact) dataset must hold the bytes it claims, and a chunked one at most what
 * deflate can expand its stored chunks to. */
static diffcl_status h5_check_size(hid_t d, const hsize_t *hd, int nd, size_t size,
                                   const char *path, const char *name)
{
    const char *fn = "diffcl_h5_read";
    uint64_t numel = 1;
    for (int i = 0; i < nd; i++)
        if (__builtin_mul_overflow(numel, (uint64_t)hd[i], &numel) ||
            numel > (uint64_t)INT64_MAX / 16)
            return dc_error(DIFFCL_ERR_FORMAT,
                            "%s: '%s': dataset '%s' claims a shape too large to hold", fn, path,
                            name);
    hid_t plist = H5Dget_create_plist(d);
    H5D_layout_t layout = plist >= 0 ? H5Pget_layout(plist) : H5D_LAYOUT_ERROR;
    if (plist >= 0) H5Pclose(plist);
    H5D_space_status_t space = H5D_SPACE_STATUS_ERROR; /* never written: reads as the fill value */
    uint64_t stored = (uint64_t)H5Dget_storage_size(d);
    if ((layout == H5D_CONTIGUOUS || layout == H5D_COMPACT) && numel > 0 &&
        H5Dget_space_status(d, &space) >= 0 && space == H5D_SPACE_STATUS_ALLOCATED &&
        stored < numel * size)
        return dc_error(DIFFCL_ERR_FORMAT,
                        "%s: '%s': dataset '%s' claims %llu elements of %zu bytes but stores %llu "
                        "bytes (truncated or corrupt)",
                        fn, path, name, (unsigned long long)numel, size,
                        (unsigned long long)stored);
    /* Chunks never written read as the fill value, so a file of a few KB can claim terabytes.
     * Deflate (the one filter Debian's libhdf5 decodes) expands at most 1032:1; beyond that,
     * allow H5_FILL_SLACK of fill. */
    if (layout == H5D_CHUNKED && numel * size / 1032 > stored + H5_FILL_SLACK / 1032)
        return dc_error(DIFFCL_ERR_FORMAT,
                        "%s: '%s': dataset '%s' claims %llu elements of %zu bytes but stores %llu "
                        "compressed bytes, more than deflate can expand to (corrupt)",
                        fn, path, name, (unsigned long long)numel, size,
                        (unsigned long long)stored);
    return DIFFCL_OK;
}

/* Dataset @p name of the open file @p f as a tensor. */
static diffcl_status h5_read_dataset(diffcl_context *ctx, hid_t f, const char *path,
                                     const char *name, diffcl_tensor **out)
{
    const char *fn = "diffcl_h5_read";
    if (H5Lexists(f, name, H5P_DEFAULT) <= 0)
        return dc_error(DIFFCL_ERR_NOT_FOUND, "%s: '%s' has no dataset '%s'", fn, path, name);
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0)
        return dc_error(DIFFCL_ERR_FORMAT, "%s: '%s': '%s' is not a readable dataset", fn, path,
                        name);
    hid_t sp = H5Dget_space(d), ty = H5Dget_type(d), mem = -1;
    diffcl_status s = DIFFCL_OK;
    diffcl_tensor *t = NULL;
    diffcl_dtype dt = DIFFCL_F32;
    hsize_t hd[DIFFCL_MAX_DIMS];
    int nd = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    if (nd < 1 || nd > DIFFCL_MAX_DIMS)
        s = dc_error(DIFFCL_ERR_FORMAT, "%s: '%s': dataset '%s' has %d axes (1 to %d supported)",
                     fn, path, name, nd, DIFFCL_MAX_DIMS);
    if (s == DIFFCL_OK) {
        H5Sget_simple_extent_dims(sp, hd, NULL);
        s = h5_types(ty, path, name, &dt, &mem);
    }
    if (s == DIFFCL_OK) s = h5_check_size(d, hd, nd, H5Tget_size(ty), path, name);
    if (s == DIFFCL_OK) {
        int64_t shape[DIFFCL_MAX_DIMS];
        unsigned long long numel = 1; /* no overflow: h5_check_size passed */
        for (int i = 0; i < nd; i++) numel *= (unsigned long long)(shape[i] = (int64_t)hd[i]);
        t = dc_tensor_empty(ctx, dt, nd, shape);
        if (!t)
            s = dc_error(DIFFCL_ERR_OUT_OF_MEMORY,
                         "%s: '%s': out of memory for dataset '%s' (%llu elements)", fn, path, name,
                         numel);
    }
    if (s == DIFFCL_OK && dc_numel(t) > 0 &&
        H5Dread(d, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, dc_data(t)) < 0)
        s = dc_error(DIFFCL_ERR_FORMAT, "%s: '%s': cannot read dataset '%s' (truncated or corrupt)",
                     fn, path, name);
    if (mem >= 0) H5Tclose(mem);
    if (ty >= 0) H5Tclose(ty);
    if (sp >= 0) H5Sclose(sp);
    H5Dclose(d);
    if (s != DIFFCL_OK) {
        diffcl_tensor_free(t);
        return s;
    }
    *out = t;
    return DIFFCL_OK;
}

static diffcl_status h5_read_locked(diffcl_context *ctx, const char *path, const char *name,
                                    diffcl_tensor **out)
{
    const char *fn = "diffcl_h5_read";
    DC_CHECK_ARG(ctx && path && name && out, "%s: ctx, path, name and out must not be NULL", fn);
    *out = NULL;
    struct stat st;
    if (stat(path, &st) != 0)
        return dc_error(DIFFCL_ERR_IO, "%s: cannot open '%s': %s", fn, path, strerror(errno));
    quiet();
    if (H5Fis_hdf5(path) <= 0)
        return dc_error(DIFFCL_ERR_FORMAT, "%s: '%s' is not an HDF5 file", fn, path);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return dc_error(DIFFCL_ERR_FORMAT, "%s: '%s' is corrupt or truncated (HDF5 cannot open it)",
                        fn, path);
    diffcl_status s = h5_read_dataset(ctx, f, path, name, out);
    H5Fclose(f);
    return s;
}

/* Write the @p n bytes of @p buf to @p tmp, every write checked, then rename it to @p path. */
static diffcl_status write_bytes(const char *tmp, const char *path, const void *buf, size_t n,
                                 const char *fn)
{
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0)
        return dc_error(DIFFCL_ERR_IO, "%s: cannot create '%s': %s", fn, path, strerror(errno));
    int err = 0;
    for (size_t off = 0; off < n;) {
        ssize_t k = write(fd, (const char *)buf + off, n - off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            err = k < 0 ? errno : EIO;
            break;
        }
        off += (size_t)k;
    }
    if (close(fd) != 0 && !err) err = errno;
    if (err) {
        unlink(tmp);
        return dc_error(DIFFCL_ERR_IO, "%s: cannot write '%s': %s", fn, path, strerror(err));
    }
    return dc_commit_tmp(tmp, path, fn);
}

/* The file is built in memory (the core driver, no backing store) and its image written with
 * write_bytes: libhdf5 then never meets a failing disk. It handles one badly: an H5Fclose whose
 * flush fails (a file-size limit, a full disk) leaves a file object that crashes the process at
 * exit (libhdf5 1.10.8, H5F__close_cb from H5_term_library), and a failed H5Fcreate leaks. */
static diffcl_status h5_write_locked(const char *path, const char *const *names,
                                     const diffcl_tensor *const *tensors, int n, int gzip)
{
    const char *fn = "diffcl_h5_write";
    DC_CHECK_ARG(path && (n == 0 || (names && tensors)) && n >= 0,
                 "%s: path, names and tensors must not be NULL", fn);
    DC_CHECK_ARG(gzip >= 0 && gzip <= 9, "%s: gzip level %d not in 0..9", fn, gzip);
    for (int i = 0; i < n; i++)
        DC_CHECK_ARG(names[i] && tensors[i] && tensors[i]->ndim >= 1,
                     "%s: entry %d: name and tensor (at least 1 axis) required", fn, i);
    char tmp[4096];
    DC_TRY(dc_tmp_path(path, NULL, tmp, sizeof tmp));
    quiet();
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    hid_t f = fapl >= 0 && H5Pset_fapl_core(fapl, (size_t)1 << 20, 0) >= 0
                  ? H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl)
                  : -1;
    if (fapl >= 0) H5Pclose(fapl);
    if (f < 0) return dc_error(DIFFCL_ERR_IO, "%s: '%s': cannot create an HDF5 file", fn, path);
    diffcl_status s = DIFFCL_OK;
    for (int i = 0; i < n && s == DIFFCL_OK; i++) {
        const diffcl_tensor *t = tensors[i];
        hid_t ft, mt;
        switch (t->dtype) {
        case DIFFCL_F32:
            ft = H5T_IEEE_F32LE;
            mt = H5T_NATIVE_FLOAT;
            break;
        case DIFFCL_F64:
            ft = H5T_IEEE_F64LE;
            mt = H5T_NATIVE_DOUBLE;
            break;
        case DIFFCL_U8:
            ft = H5T_STD_U8LE;
            mt = H5T_NATIVE_UCHAR;
            break;
        case DIFFCL_I32:
            ft = H5T_STD_I32LE;
            mt = H5T_NATIVE_INT32;
            break;
        default:
            ft = H5T_STD_I64LE;
            mt = H5T_NATIVE_INT64;
            break;
        }
        hsize_t hd[DIFFCL_MAX_DIMS];
        for (int a = 0; a < t->ndim; a++) hd[a] = (hsize_t)t->shape[a];
        hid_t sp = H5Screate_simple(t->ndim, hd, NULL);
        hid_t pl = H5Pcreate(H5P_DATASET_CREATE);
        if (gzip > 0 && dc_numel(t) > 0) {
            H5Pset_chunk(pl, t->ndim, hd);
            H5Pset_deflate(pl, (unsigned)gzip);
        }
        hid_t d = H5Dcreate2(f, names[i], ft, sp, H5P_DEFAULT, pl, H5P_DEFAULT);
        diffcl_tensor *c = dc_contiguous(t);
        if (d < 0 || !c)
            s = dc_error(d < 0 ? DIFFCL_ERR_IO : DIFFCL_ERR_OUT_OF_MEMORY,
                         "%s: '%s': cannot create dataset '%s'%s", fn, path, names[i],
                         c ? "" : ": out of memory");
        else if (dc_numel(c) > 0 && H5Dwrite(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, dc_data(c)) < 0)
            s = dc_error(DIFFCL_ERR_IO, "%s: '%s': cannot write dataset '%s'", fn, path, names[i]);
        diffcl_tensor_free(c);
        if (d >= 0) H5Dclose(d);
        H5Pclose(pl);
        H5Sclose(sp);
    }
    /* the file's image, from memory */
    void *image = NULL;
    ssize_t size = -1;
    if (s == DIFFCL_OK && H5Fflush(f, H5F_SCOPE_GLOBAL) >= 0) size = H5Fget_file_image(f, NULL, 0);
    if (s == DIFFCL_OK && size > 0) image = dc_malloc((size_t)size);
    if (s == DIFFCL_OK && (!image || H5Fget_file_image(f, image, (size_t)size) != size))
        s = size > 0 && !image
                ? dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: '%s': out of memory", fn, path)
                : dc_error(DIFFCL_ERR_IO, "%s: '%s': cannot build the HDF5 file", fn, path);
    if (H5Fclose(f) < 0 && s == DIFFCL_OK)
        s = dc_error(DIFFCL_ERR_IO, "%s: '%s': cannot build the HDF5 file", fn, path);
    if (s == DIFFCL_OK) s = write_bytes(tmp, path, image, (size_t)size, fn);
    free(image);
    return s;
}

diffcl_status diffcl_h5_read(diffcl_context *ctx, const char *path, const char *name,
                             diffcl_tensor **out)
{
    pthread_mutex_lock(&h5_lock);
    diffcl_status s = h5_read_locked(ctx, path, name, out);
    pthread_mutex_unlock(&h5_lock);
    return s;
}

diffcl_status diffcl_h5_write(const char *path, const char *const *names,
                              const diffcl_tensor *const *tensors, int n, int gzip)
{
    pthread_mutex_lock(&h5_lock);
    diffcl_status s = h5_write_locked(path, names, tensors, n, gzip);
    pthread_mutex_unlock(&h5_lock);
    return s;
}

#else /* !DIFFCL_HAVE_HDF5 */

int diffcl_io_has_hdf5(void)
{
    return 0;
}

diffcl_status diffcl_h5_read(diffcl_context *ctx, const char *path, const char *name,
                             diffcl_tensor **out)
{
    (void)ctx;
    (void)name;
    if (out) *out = NULL;
    return dc_error(DIFFCL_ERR_UNSUPPORTED,
                    "diffcl_h5_read: '%s': this libdiffcl was built without HDF5 support",
                    path ? path : "");
}

diffcl_status diffcl_h5_write(const char *path, const char *const *names,
                              const diffcl_tensor *const *tensors, int n, int gzip)
{
    (void)names;
    (void)tensors;
    (void)n;
    (void)gzip;
    return dc_error(DIFFCL_ERR_UNSUPPORTED,
                    "diffcl_h5_write: '%s': this libdiffcl was built without HDF5 support",
                    path ? path : "");
}

#endif
