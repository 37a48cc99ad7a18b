/* NIfTI-1 and NIfTI-2 (.nii / .nii.gz) through nifti_clib's libnifti2, optional at build time.
 * (Only libnifti2 is linked: niftiio exports the same nifti_image_* names with the NIfTI-1
 * struct layout.) Arrays are returned as nibabel shows them: shape (x, y, z[, t]) with the last
 * axis fastest in memory, i.e. the transpose of the on-disk x-fastest order. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "diffcl_config.h"
#include "io/image_io_internal.h"
#include "tensor/tensor_internal.h"

#if DIFFCL_HAVE_NIFTI
#include <nifti/nifti2_io.h>
#include <zlib.h>

int diffcl_io_has_nifti(void)
{
    return 1;
}

/* niftilib keeps its debug level in a process-wide variable: set it once (readers in two
 * threads, e.g. two contexts' samplers, wrote it concurrently). */
static pthread_once_t quiet_once = PTHREAD_ONCE_INIT;
static void quiet_niftilib(void)
{
    nifti_set_debug_level(0);
}

static double voxel_value(const void *data, int datatype, size_t i)
{
    switch (datatype) {
    case DT_UINT8: return ((const uint8_t *)data)[i];
    case DT_INT8: return ((const int8_t *)data)[i];
    case DT_INT16: return ((const int16_t *)data)[i];
    case DT_UINT16: return ((const uint16_t *)data)[i];
    case DT_INT32: return ((const int32_t *)data)[i];
    case DT_UINT32: return ((const uint32_t *)data)[i];
    case DT_INT64: return (double)((const int64_t *)data)[i];
    case DT_UINT64: return (double)((const uint64_t *)data)[i];
    case DT_FLOAT32: return ((const float *)data)[i];
    default: return ((const double *)data)[i];
    }
}

static int supported_type(int dt)
{
    return dt == DT_UINT8 || dt == DT_INT8 || dt == DT_INT16 || dt == DT_UINT16 || dt == DT_INT32 ||
           dt == DT_UINT32 || dt == DT_INT64 || dt == DT_UINT64 || dt == DT_FLOAT32 ||
           dt == DT_FLOAT64;
}

/* A corrupt header can claim any size (niftilib's own voxel count may wrap): the product of
 * the dimensions must not overflow, and the file must be able to hold that many bytes (a .nii
 * its size past the header; a .gz at most deflate's 1032:1 ratio) before we allocate. */
static diffcl_status nifti_check_size(const nifti_image *nim, const char *path, const char *fn)
{
    uint64_t nvox = 1, need_bytes = 0;
    for (int64_t i = 1; i <= nim->dim[0] && i <= 7; i++)
        if (nim->dim[i] < 0 || __builtin_mul_overflow(nvox, (uint64_t)nim->dim[i], &nvox)) {
            nvox = UINT64_MAX;
            break;
        }
    const char *data_path =
        nim->iname ? nim->iname : path; /* .nii: the same file; .hdr: its .img */
    struct stat ds;
    uint64_t fsize = stat(data_path, &ds) == 0 ? (uint64_t)ds.st_size : 0;
    uint64_t off = nim->iname_offset > 0 ? (uint64_t)nim->iname_offset : 0;
    uint64_t room = fsize > off ? fsize - off : 0;
    unsigned char magic[2] = {0, 0}; /* gzip by its magic bytes, whatever the file name's case */
    FILE *mf = fopen(data_path, "rb");
    if (mf) {
        if (fread(magic, 1, 2, mf) != 2) magic[0] = 0;
        fclose(mf);
    }
    int gz = magic[0] == 0x1f && magic[1] == 0x8b;
    if (gz) room = fsize * 1032 + 1024; /* offset and size count uncompressed bytes */
    int bad_dims =
        nim->dim[0] < 1 || nim->dim[0] > 7 || nvox == UINT64_MAX || nvox != (uint64_t)nim->nvox ||
        __builtin_mul_overflow(nvox, (uint64_t)(nim->nbyper > 0 ? nim->nbyper : 1), &need_bytes) ||
        need_bytes > (uint64_t)INT64_MAX / 16;
    if (bad_dims)
        return dc_error(DIFFCL_ERR_FORMAT,
                        "%s: '%s': corrupt header: dim[0..7] = %lld %lld %lld %lld %lld %lld %lld "
                        "%lld do not give a valid size",
                        fn, path, (long long)nim->dim[0], (long long)nim->dim[1],
                        (long long)nim->dim[2], (long long)nim->dim[3], (long long)nim->dim[4],
                        (long long)nim->dim[5], (long long)nim->dim[6], (long long)nim->dim[7]);
    if (need_bytes > room)
        return dc_error(DIFFCL_ERR_FORMAT,
                        "%s: '%s': the header claims %llu data bytes, the file %s %llu "
                        "(truncated, or a corrupt header)",
                        fn, path, (unsigned long long)need_bytes, gz ? "can hold at most" : "holds",
                        (unsigned long long)room);
    return DIFFCL_OK;
}

/* Read the data ourselves into nim->data: niftiio's loader zero-fills a short read and
 * reports success. Byte order is fixed here. */
static diffcl_status nifti_read_data(nifti_image *nim, const char *path, const char *fn)
{
    diffcl_status s = DIFFCL_OK;
    size_t need = (size_t)nim->nvox * (size_t)nim->nbyper, got = 0;
    nim->data = dc_malloc(need ? need : 1);
    gzFile g = nim->data ? gzopen(nim->iname ? nim->iname : path, "rb") : NULL;
    if (!nim->data) {
        s = dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: '%s': out of memory", fn, path);
    } else if (!g ||
               gzseek(g, (z_off_t)nim->iname_offset, SEEK_SET) != (z_off_t)nim->iname_offset) {
        s = dc_error(DIFFCL_ERR_FORMAT, "%s: '%s' is truncated (no data after the header)", fn,
                     path);
    } else {
        while (got < need) {
            unsigned chunk = need - got > (1u << 30) ? (1u << 30) : (unsigned)(need - got);
            int r = gzread(g, (char *)nim->data + got, chunk);
            if (r <= 0) break;
            got += (size_t)r;
        }
        if (got < need)
            s = dc_error(DIFFCL_ERR_FORMAT,
                         "%s: '%s' is truncated or corrupt: %zu of %zu data bytes could be read",
                         fn, path, got, need);
        else if (nim->byteorder != nifti_short_order() && nim->swapsize > 1)
            nifti_swap_Nbytes(nim->nvox, nim->swapsize, nim->data);
    }
    if (g) gzclose(g);
    return s;
}

/* The voxels as the tensor nibabel shows ((x, y, z[, t]), trailing size-1 axes of dims 5..7
 * dropped): F32 with scl_slope/scl_inter applied, or U8 class indices. */
static diffcl_status nifti_to_tensor(diffcl_context *ctx, const nifti_image *nim,
                                     diffcl_nifti_read_as as, const char *path, const char *fn,
                                     diffcl_tensor **out)
{
    int nd = (int)nim->dim[0];
    while (nd > DIFFCL_MAX_DIMS && nim->dim[nd] == 1) nd--;
    if (nd < 1 || nd > DIFFCL_MAX_DIMS)
        return dc_error(DIFFCL_ERR_FORMAT, "%s: '%s' has %d dimensions (1 to %d supported)", fn,
                        path, (int)nim->dim[0], DIFFCL_MAX_DIMS);
    if (!supported_type(nim->datatype))
        return dc_error(DIFFCL_ERR_FORMAT, "%s: '%s' has unsupported data type %s", fn, path,
                        nifti_datatype_string(nim->datatype));
    if (!nim->data)
        return dc_error(DIFFCL_ERR_FORMAT, "%s: '%s': no image data could be read", fn, path);
    int64_t shape[DIFFCL_MAX_DIMS], disk_stride[DIFFCL_MAX_DIMS];
    int64_t acc = 1;
    for (int i = 0; i < nd; i++) {
        shape[i] = nim->dim[i + 1];
        disk_stride[i] = acc; /* x fastest on disk */
        acc *= shape[i];
    }
    double slope = nim->scl_slope, inter = nim->scl_inter;
    if (slope == 0 || !isfinite(slope)) { /* as nibabel: no scaling */
        slope = 1;
        inter = 0;
    }
    if (!isfinite(inter)) inter = 0;
    diffcl_tensor *t =
        dc_tensor_empty(ctx, as == DIFFCL_NIFTI_LABEL ? DIFFCL_U8 : DIFFCL_F32, nd, shape);
    if (!t) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: '%s': out of memory", fn, path);
    int64_t idx[DIFFCL_MAX_DIMS] = {0};
    for (int64_t i = 0; i < acc; i++) { /* i walks the tensor in row-major order */
        int64_t src = 0;
        for (int a = 0; a < nd; a++) src += idx[a] * disk_stride[a];
        double v = voxel_value(nim->data, nim->datatype, (size_t)src) * slope + inter;
        if (as == DIFFCL_NIFTI_LABEL) {
            if (!(v >= 0 && v <= 255 && v == floor(v))) {
                diffcl_tensor_free(t);
                return dc_error(
                    DIFFCL_ERR_FORMAT,
                    "%s: '%s' is not a label map: voxel %lld has value %g (class indices 0..255 expected)",
                    fn, path, (long long)src, v);
            }
            ((uint8_t *)dc_data(t))[i] = (uint8_t)v;
        } else {
            dc_f32(t)[i] = (float)v;
        }
        for (int a = nd - 1; a >= 0; a--) {
            if (++idx[a] < shape[a]) break;
            idx[a] = 0;
        }
    }
    *out = t;
    return DIFFCL_OK;
}

/* The NIfTI version of the file's header (1 or 2; 0 if unreadable): nifti_image_read() leaves
 * nifti_type at NIfTI-1 for a NIfTI-2 file, so ask the header itself. */
static int nifti_file_version(const char *path)
{
    int nver = 0;
    void *h = nifti_read_header(path, &nver, 0);
    free(h);
    return h ? nver : 0;
}

/* Do the dimensions fit a NIfTI-1 header (short dim[])? */
static int fits_nifti1(const nifti_image *nim)
{
    for (int i = 0; i < 8; i++)
        if (nim->dim[i] > 32767) return 0;
    return 1;
}

/* The NIfTI-1 header of @p nim (a NIfTI-1 file, or the NIfTI-1 equivalent of a NIfTI-2 one
 * whose sizes fit): 0 on success. */
static int nifti1_header_of(nifti_image *nim, struct nifti_1_header *h)
{
    if (!fits_nifti1(nim)) return -1;
    int type = nim->nifti_type;
    nim->nifti_type = NIFTI_FTYPE_NIFTI1_1; /* the magic "n+1" */
    int rc = nifti_convert_nim2n1hdr(nim, h);
    nim->nifti_type = type;
    return rc;
}

/* Spacing (pixdim), the affine (sform if set, else qform) and the header(s), for @p nd axes. */
static void nifti_fill_meta(nifti_image *nim, int nd, int version, diffcl_image_meta *meta)
{
    diffcl_image_meta m;
    diffcl_image_meta_init(&m);
    m.ndim = nd >= 3 ? 3 : nd;
    for (int i = 0; i < 3; i++) {
        double p = fabs(nim->pixdim[i + 1]);
        m.spacing[i] = (i < nd && p > 0 && isfinite(p)) ? p : 1.0;
    }
    const nifti_dmat44 *A = nim->sform_code > 0 ? &nim->sto_xyz : &nim->qto_xyz;
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++) m.affine[r][c] = A->m[r][c];
    struct nifti_1_header h1;
    if (nifti1_header_of(nim, &h1) == 0) {
        memcpy(m.nifti_header, &h1, sizeof m.nifti_header);
        m.has_nifti_header = 1;
    }
    struct nifti_2_header h2;
    int type = nim->nifti_type;
    nim->nifti_type = NIFTI_FTYPE_NIFTI2_1; /* the magic "n+2" */
    if (version == 2 && nifti_convert_nim2n2hdr(nim, &h2) == 0) {
        memcpy(m.nifti2_header, &h2, sizeof m.nifti2_header);
        m.has_nifti2_header = 1;
    }
    nim->nifti_type = type;
    (void)dc_options_write(meta, &m, sizeof m, 0, 1, "diffcl_nifti_read"); /* cannot fail */
}

/* The header's datatype and dim[0], checked before libnifti2 sees the file: its NIfTI-2 header
 * conversion (3.0.1) walks dim[] and pixdim[] up to dim[0] in an 8-entry array on its stack,
 * so a corrupt dim[0] overwrites the stack (found by tests/fuzz, kept in regress/nifti/). The
 * first 544 bytes are read through zlib, which also reads a file that is not compressed. */
static diffcl_status header_datatype_known(const char *path, const char *fn)
{
    unsigned char h[544];
    gzFile g = gzopen(path, "rb");
    if (!g) return dc_error(DIFFCL_ERR_IO, "%s: cannot open '%s': %s", fn, path, strerror(errno));
    int n = gzread(g, h, sizeof h);
    gzclose(g);
    if (n < 348) return DIFFCL_OK; /* too short for any header: niftilib says so */
    int32_t size;
    memcpy(&size, h, 4);
    int swap = size != 348 && size != 540;
    if (swap) size = (int32_t)__builtin_bswap32((uint32_t)size);
    if (size != 348 && size != 540) return DIFFCL_OK; /* not a header niftilib accepts */
    int16_t dt;
    memcpy(&dt, h + (size == 540 ? 12 : 70), 2);
    if (swap) dt = (int16_t)__builtin_bswap16((uint16_t)dt);
    int64_t dim0;
    if (size == 540) { /* int64 dim[8] at byte 16 */
        memcpy(&dim0, h + 16, 8);
        if (swap) dim0 = (int64_t)__builtin_bswap64((uint64_t)dim0);
    } else { /* int16 dim[8] at byte 40 */
        int16_t d16;
        memcpy(&d16, h + 40, 2);
        dim0 = swap ? (int16_t)__builtin_bswap16((uint16_t)d16) : d16;
    }
    if ((size == 540 && n < 540) || !nifti_is_valid_datatype(dt))
        return dc_error(DIFFCL_ERR_FORMAT, "%s: '%s': unknown NIfTI datatype %d (bad header)", fn,
                        path, (int)dt);
    /* libnifti2 loops over dim[1..dim[0]] of its 8-entry array before checking dim[0] */
    if (dim0 < 1 || dim0 > 7)
        return dc_error(DIFFCL_ERR_FORMAT, "%s: '%s': dim[0] is %lld, not 1..7 (bad header)", fn,
                        path, (long long)dim0);
    return DIFFCL_OK;
}

diffcl_status diffcl_nifti_read(diffcl_context *ctx, const char *path, diffcl_nifti_read_as as,
                                diffcl_tensor **out, diffcl_image_meta *meta)
{
    const char *fn = "diffcl_nifti_read";
    DC_CHECK_ARG(ctx && path && out, "%s: ctx, path and out must not be NULL", fn);
    DC_CHECK_ARG(as == DIFFCL_NIFTI_IMAGE || as == DIFFCL_NIFTI_LABEL, "%s: bad read mode %d", fn,
                 (int)as);
    *out = NULL;
    struct stat st;
    if (stat(path, &st) != 0)
        return dc_error(DIFFCL_ERR_IO, "%s: cannot open '%s': %s", fn, path, strerror(errno));
    pthread_once(&quiet_once, quiet_niftilib);
    DC_TRY(header_datatype_known(path, fn));
    nifti_image *nim = nifti_image_read(path, 0);
    if (!nim)
        return dc_error(DIFFCL_ERR_FORMAT,
                        "%s: '%s' is not a readable NIfTI-1 or NIfTI-2 file (bad header)", fn,
                        path);
    diffcl_status s = nifti_check_size(nim, path, fn);
    if (s == DIFFCL_OK && supported_type(nim->datatype) && nim->nbyper > 0)
        s = nifti_read_data(nim, path, fn);
    diffcl_tensor *t = NULL;
    if (s == DIFFCL_OK) s = nifti_to_tensor(ctx, nim, as, path, fn, &t);
    if (s == DIFFCL_OK && meta)
        nifti_fill_meta(nim, diffcl_tensor_ndim(t), nifti_file_version(path), meta);
    nifti_image_free(nim);
    if (s == DIFFCL_OK) *out = t;
    return s;
}

static const char *nifti_suffix(const char *path)
{
    size_t n = strlen(path);
    if (n > 7 && !strcmp(path + n - 7, ".nii.gz")) return ".nii.gz";
    if (n > 4 && !strcmp(path + n - 4, ".nii")) return ".nii";
    return NULL;
}

static int nifti_datatype_of(diffcl_dtype d)
{
    switch (d) {
    case DIFFCL_U8: return DT_UINT8;
    case DIFFCL_I32: return DT_INT32;
    case DIFFCL_I64: return DT_INT64;
    case DIFFCL_F64: return DT_FLOAT64;
    default: return DT_FLOAT32;
    }
}

/* A new header for @p t without a source header: @p meta's affine when it has one, else its
 * spacing (or unit spacing) on the diagonal, as both sform and qform. */
static nifti_image *nifti_new_header(const diffcl_tensor *t, int datatype,
                                     const diffcl_image_meta *meta)
{
    int64_t dims[8] = {t->ndim, 1, 1, 1, 1, 1, 1, 1};
    for (int i = 0; i < t->ndim; i++) dims[i + 1] = t->shape[i];
    nifti_image *nim = nifti_make_new_nim(dims, datatype, 0);
    if (!nim) return NULL;
    nifti_dmat44 A;
    double sp[3] = {1, 1, 1};
    int has_affine = meta && dc_meta_can_hold(meta, offsetof(diffcl_image_meta, has_nifti_header));
    for (int i = 0; i < 3 && meta; i++)
        if (meta->spacing[i] > 0) sp[i] = meta->spacing[i];
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++)
            A.m[r][c] = has_affine ? meta->affine[r][c] : (r == c ? (r < 3 ? sp[r] : 1) : 0);
    nim->sto_xyz = A;
    nim->sform_code = NIFTI_XFORM_SCANNER_ANAT;
    nim->qform_code = NIFTI_XFORM_SCANNER_ANAT;
    double qb, qc, qd, qx, qy, qz, dx, dy, dz, qfac;
    nifti_dmat44_to_quatern(A, &qb, &qc, &qd, &qx, &qy, &qz, &dx, &dy, &dz, &qfac);
    nim->quatern_b = qb;
    nim->quatern_c = qc;
    nim->quatern_d = qd;
    nim->qoffset_x = qx;
    nim->qoffset_y = qy;
    nim->qoffset_z = qz;
    nim->qfac = qfac;
    nim->qto_xyz = nifti_quatern_to_dmat44(qb, qc, qd, qx, qy, qz, sp[0], sp[1], sp[2], qfac);
    nim->pixdim[1] = nim->dx = sp[0];
    nim->pixdim[2] = nim->dy = sp[1];
    nim->pixdim[3] = nim->dz = sp[2];
    nim->xyz_units = NIFTI_UNITS_MM;
    return nim;
}

/* Data type, dimensions, scaling and file version (1 or 2) from the tensor; the geometry stays
 * the header's. */
static void nifti_set_data_shape(nifti_image *nim, const diffcl_tensor *t, int datatype,
                                 int version)
{
    nim->datatype = datatype;
    nifti_datatype_sizes(datatype, &nim->nbyper, &nim->swapsize);
    for (int i = 0; i < 8; i++)
        nim->dim[i] = i == 0 ? t->ndim : (i <= t->ndim ? t->shape[i - 1] : 1);
    nim->ndim = t->ndim;
    nim->nx = nim->dim[1];
    nim->ny = nim->dim[2];
    nim->nz = nim->dim[3];
    nim->nt = nim->dim[4];
    nim->nu = nim->dim[5];
    nim->nv = nim->dim[6];
    nim->nw = nim->dim[7];
    nim->nvox = dc_numel(t);
    nim->scl_slope = 0;
    nim->scl_inter = 0;
    nim->cal_min = nim->cal_max = 0;
    nim->nifti_type = version == 2 ? NIFTI_FTYPE_NIFTI2_1 : NIFTI_FTYPE_NIFTI1_1;
    nim->byteorder = nifti_short_order();
}

/* The tensor's elements in disk order (x fastest); NULL when out of memory. */
static void *nifti_disk_order(const diffcl_tensor *t)
{
    size_t es = diffcl_dtype_size(t->dtype), nvox = (size_t)dc_numel(t);
    diffcl_tensor *c = dc_contiguous(t);
    char *disk = c ? dc_malloc(es * (nvox ? nvox : 1)) : NULL;
    if (!disk) {
        diffcl_tensor_free(c);
        return NULL;
    }
    int nd = t->ndim;
    int64_t dst_stride[4], acc = 1, idx[4] = {0};
    for (int a = 0; a < nd; a++) {
        dst_stride[a] = acc;
        acc *= t->shape[a];
    }
    const char *src = dc_data(c);
    for (int64_t i = 0; i < (int64_t)nvox; i++) {
        int64_t dst = 0;
        for (int a = 0; a < nd; a++) dst += idx[a] * dst_stride[a];
        memcpy(disk + dst * es, src + i * es, es);
        for (int a = nd - 1; a >= 0; a--) {
            if (++idx[a] < t->shape[a]) break;
            idx[a] = 0;
        }
    }
    diffcl_tensor_free(c);
    return disk;
}

/* niftilib prints its own "** ERROR" for a missing folder: check first. */
static diffcl_status nifti_check_folder(const char *path, const char *fn)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = 0;
    else if (slash)
        *slash = 0;
    else
        snprintf(dir, sizeof dir, ".");
    struct stat ds;
    if (stat(dir, &ds) != 0 || !S_ISDIR(ds.st_mode))
        return dc_error(DIFFCL_ERR_IO, "%s: cannot write '%s': no folder '%s'", fn, path, dir);
    return DIFFCL_OK;
}

/* Write @p nim with the @p nbytes of @p disk as its data to @p tmp, every write checked, and
 * read the header back. niftilib writes the header (and extensions) and leaves the file open at
 * the data (write_opts 2); the data goes through znzwrite here, because niftilib's own data
 * writer reports a short write (a full disk, a file-size limit) only on stderr, and its close
 * not at all: a gzip stream cut short would otherwise pass as written. */
static diffcl_status nifti_write_checked(nifti_image *nim, const void *disk, size_t nbytes,
                                         const char *tmp, const char *path, const char *fn)
{
    if (nifti_set_filenames(nim, tmp, 0, 1) != 0)
        return dc_error(DIFFCL_ERR_IO, "%s: '%s': bad file name", fn, path);
    unlink(tmp);
    errno = 0;
    znzFile fp = nifti_image_write_hdr_img2(nim, 2, "wb", NULL, NULL);
    int err = znz_isnull(fp) ? (errno ? errno : EIO) : 0;
    const size_t piece = (size_t)1 << 24;
    for (size_t off = 0; !err && off < nbytes; off += piece) {
        size_t k = nbytes - off < piece ? nbytes - off : piece;
        errno = 0;
        if (znzwrite((const char *)disk + off, 1, k, fp) != k) err = errno ? errno : EIO;
    }
    if (!znz_isnull(fp)) {
        errno = 0;
        if (znzclose(fp) != 0 && !err) err = errno ? errno : EIO;
    }
    if (err) return dc_error(DIFFCL_ERR_IO, "%s: cannot write '%s': %s", fn, path, strerror(err));
    struct stat st;
    nifti_image *chk = stat(tmp, &st) == 0 ? nifti_image_read(tmp, 0) : NULL;
    diffcl_status s = chk ? DIFFCL_OK : dc_error(DIFFCL_ERR_IO, "%s: cannot write '%s'", fn, path);
    nifti_image_free(chk);
    return s;
}

/* Write @p nim as a single-file NIfTI-2 (.nii, or gzip for .nii.gz) to @p tmp, and read the
 * header back. Ours, not nifti_image_write(): libnifti2 3.0.1 writes NIfTI-1 whenever the
 * header fits it, and its data offset is wrong for the NIfTI-2 file type. */
static diffcl_status nifti2_write_checked(nifti_image *nim, const void *disk, int gz,
                                          const char *tmp, const char *path, const char *fn)
{
    nim->nifti_type = NIFTI_FTYPE_NIFTI2_1;
    nim->iname_offset = 544; /* 540-byte header + 4-byte extender (no extensions) */
    struct nifti_2_header h;
    if (nifti_convert_nim2n2hdr(nim, &h) != 0)
        return dc_error(DIFFCL_ERR_FORMAT, "%s: '%s': cannot build a NIfTI-2 header", fn, path);
    memcpy(h.magic, "n+2\0\r\n\032\n", 8);
    static const char extender[4] = {0, 0, 0, 0};
    unlink(tmp);
    gzFile g = gzopen(tmp, gz ? "wb6" : "wbT"); /* T: no compression */
    if (!g) return dc_error(DIFFCL_ERR_IO, "%s: cannot create '%s': %s", fn, path, strerror(errno));
    int ok = gzwrite(g, &h, sizeof h) == (int)sizeof h && gzwrite(g, extender, 4) == 4;
    size_t need = (size_t)nim->nvox * (size_t)nim->nbyper, done = 0;
    while (ok && done < need) {
        unsigned chunk = need - done > (1u << 30) ? (1u << 30) : (unsigned)(need - done);
        ok = gzwrite(g, (const char *)disk + done, chunk) == (int)chunk;
        done += chunk;
    }
    int err = ok ? 0 : errno;
    if (gzclose(g) != Z_OK && ok) ok = 0, err = errno;
    struct stat st;
    nifti_image *chk = ok && stat(tmp, &st) == 0 ? nifti_image_read(tmp, 0) : NULL;
    diffcl_status s = chk ? DIFFCL_OK
                          : dc_error(DIFFCL_ERR_IO, "%s: cannot write '%s': %s", fn, path,
                                     err ? strerror(err) : "short write");
    nifti_image_free(chk);
    return s;
}

diffcl_status diffcl_nifti_write(const diffcl_tensor *t, const char *path,
                                 const diffcl_image_meta *meta)
{
    const char *fn = "diffcl_nifti_write";
    DC_CHECK_ARG(t && path, "%s: tensor and path must not be NULL", fn);
    const char *suffix = nifti_suffix(path);
    DC_CHECK_ARG(suffix, "%s: '%s' must end in .nii or .nii.gz", fn, path);
    if (t->ndim < 1 || t->ndim > 4)
        return dc_error(DIFFCL_ERR_SHAPE, "%s: '%s': tensor %s: 1 to 4 axes supported", fn, path,
                        dc_shape_str(t));
    int datatype = nifti_datatype_of(t->dtype);
    int have_hdr2 = meta &&
                    dc_meta_can_hold(meta, offsetof(diffcl_image_meta, nifti2_header) + 540) &&
                    meta->has_nifti2_header;
    int have_hdr = !have_hdr2 && meta &&
                   dc_meta_can_hold(meta, offsetof(diffcl_image_meta, nifti_header) + 348) &&
                   meta->has_nifti_header;
    /* NIfTI-2 for a NIfTI-2 input, and where a size does not fit NIfTI-1's 16-bit dim[] */
    int version = have_hdr2 ? 2 : 1;
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] > 32767) version = 2;
    pthread_once(&quiet_once, quiet_niftilib);
    nifti_image *nim = NULL;
    if (have_hdr2) {
        struct nifti_2_header h;
        memcpy(&h, meta->nifti2_header, sizeof h);
        nim = nifti_convert_n2hdr2nim(h, NULL);
    } else if (have_hdr) {
        struct nifti_1_header h;
        memcpy(&h, meta->nifti_header, sizeof h);
        nim = nifti_convert_n1hdr2nim(h, NULL);
    } else {
        nim = nifti_new_header(t, datatype, meta);
    }
    if (!nim) return dc_error(DIFFCL_ERR_FORMAT, "%s: '%s': cannot build a NIfTI header", fn, path);
    nifti_set_data_shape(nim, t, datatype, version);
    void *disk = nifti_disk_order(t);
    if (!disk) {
        nifti_image_free(nim);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    char tmp[4096];
    diffcl_status s = dc_tmp_path(path, suffix, tmp, sizeof tmp);
    if (s == DIFFCL_OK) s = nifti_check_folder(path, fn);
    if (s == DIFFCL_OK && version == 2)
        s = nifti2_write_checked(nim, disk, !strcmp(suffix, ".nii.gz"), tmp, path, fn);
    else if (s == DIFFCL_OK)
        s = nifti_write_checked(nim, disk, (size_t)nim->nvox * (size_t)nim->nbyper, tmp, path, fn);
    free(disk);
    nifti_image_free(nim);
    if (s != DIFFCL_OK) {
        unlink(tmp);
        return s;
    }
    return dc_commit_tmp(tmp, path, fn);
}

#else /* !DIFFCL_HAVE_NIFTI */

int diffcl_io_has_nifti(void)
{
    return 0;
}

diffcl_status diffcl_nifti_read(diffcl_context *ctx, const char *path, diffcl_nifti_read_as as,
                                diffcl_tensor **out, diffcl_image_meta *meta)
{
    (void)ctx;
    (void)as;
    (void)meta;
    if (out) *out = NULL;
    return dc_error(DIFFCL_ERR_UNSUPPORTED,
                    "diffcl_nifti_read: '%s': this libdiffcl was built without NIfTI support",
                    path ? path : "");
}

diffcl_status diffcl_nifti_write(const diffcl_tensor *t, const char *path,
                                 const diffcl_image_meta *meta)
{
    (void)t;
    (void)meta;
    return dc_error(DIFFCL_ERR_UNSUPPORTED,
                    "diffcl_nifti_write: '%s': this libdiffcl was built without NIfTI support",
                    path ? path : "");
}

#endif
