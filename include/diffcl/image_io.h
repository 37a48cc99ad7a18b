/**
 * @file image_io.h
 * @brief Medical image readers and writers: PNG (libpng), HDF5 (libhdf5), NIfTI (nifti_clib).
 *
 * Axis order follows the Python codes the benchmarks use, so that a PyTorch-trained network
 * sees a volume exactly as it did in training:
 * - HDF5: the array as h5py shows it (C order), no transpose;
 * - NIfTI: the array as nibabel shows it, (x, y, z[, t]); NIfTI stores x fastest on disk,
 *   so the reader transposes (the tensor is row-major with z fastest);
 * - PNG: (H, W) = (rows, columns), as numpy.array(PIL.Image.open(f)).
 *
 * Readers report a missing file as DIFFCL_ERR_IO and a corrupt, truncated or unexpected
 * one (wrong type, wrong rank) as DIFFCL_ERR_FORMAT; diffcl_last_error() names the file
 * and the problem. HDF5 and NIfTI are optional at build time: without them these calls
 * return DIFFCL_ERR_UNSUPPORTED (see diffcl_io_has_hdf5(), diffcl_io_has_nifti()).
 *
 * Ownership: every `diffcl_tensor **` output is a new tensor in the given context that the
 * caller owns (diffcl_tensor_free()).
 *
 * Errors: as above, plus DIFFCL_ERR_INVALID_ARGUMENT for NULL arguments or bad values and
 * DIFFCL_ERR_OUT_OF_MEMORY; the detail is in diffcl_last_error().
 *
 * Thread safety: a reader uses its context from one thread at a time (core.h); calls on
 * different contexts may run concurrently. diffcl_io_has_hdf5() and diffcl_io_has_nifti()
 * are thread-safe.
 */
#ifndef DIFFCL_IMAGE_IO_H
#define DIFFCL_IMAGE_IO_H

#include "diffcl/tensor.h"

DIFFCL_BEGIN_DECLS

/**
 * Geometry of an image: voxel spacing and the voxel-to-world affine, in the tensor's axis
 * order (spacing[0] is the spacing of axis D = NIfTI's x). For NIfTI input the original
 * 348-byte header is kept so that a written prediction carries the input's header.
 */
typedef struct diffcl_image_meta {
    size_t struct_size;
    int ndim;            /**< spatial dims: 2 or 3 (0: unknown) */
    double spacing[3];   /**< per spatial axis; 1 when unknown */
    double affine[4][4]; /**< voxel index (D,H,W,1) -> world (RAS for NIfTI); identity if unknown */
    int has_nifti_header; /**< nifti_header holds a valid NIfTI-1 header */
    unsigned char nifti_header[348];
} diffcl_image_meta;

/** Fill @p meta with unit spacing, identity affine, no header. */
DIFFCL_API void diffcl_image_meta_init(diffcl_image_meta *meta);

/** @return 1 if this build reads/writes HDF5, else 0. */
DIFFCL_API int diffcl_io_has_hdf5(void);
/** @return 1 if this build reads/writes NIfTI, else 0. */
DIFFCL_API int diffcl_io_has_nifti(void);

/* -------------------------------------------------------------------- PNG ---- */

/**
 * Read a grey (or grey+alpha, RGB, palette: see below) PNG as an F32 [H, W] image holding
 * the raw sample values (0..255 for 8-bit, 0..65535 for 16-bit). RGB is converted to
 * luminance as PIL's convert("L") does (L = R*299/1000 + G*587/1000 + B*114/1000).
 * @p bit_depth (may be NULL) receives 8 or 16. The caller owns @p *out.
 */
DIFFCL_API diffcl_status diffcl_png_read_image(diffcl_context *ctx, const char *path,
                                               diffcl_tensor **out, int *bit_depth);
/**
 * Read a label PNG (8-bit grey, or 1/2/4/8-bit palette, whose indices are the classes)
 * as U8 [H, W]. A 16-bit or RGB file is DIFFCL_ERR_FORMAT (labels are class indices).
 */
DIFFCL_API diffcl_status diffcl_png_read_label(diffcl_context *ctx, const char *path,
                                               diffcl_tensor **out);
/**
 * Write a 2-D tensor [H, W] as a grey PNG of @p bit_depth 8 or 16 (values rounded and
 * clamped to the range), or a [H, W, 3] U8 tensor as an RGB PNG (bit_depth 8).
 * Written atomically (temporary file + rename).
 */
DIFFCL_API diffcl_status diffcl_png_write(const diffcl_tensor *t, const char *path, int bit_depth);

/* ------------------------------------------------------------------- HDF5 ---- */

/**
 * Read dataset @p name (e.g. "image", "label") of an HDF5 file, in h5py's shape and
 * order. float32 -> F32, float64 -> F64, 8-bit integers and bool -> U8, other integers of
 * up to 32 bits -> I32, 64-bit integers -> I64. The caller owns @p *out.
 */
DIFFCL_API diffcl_status diffcl_h5_read(diffcl_context *ctx, const char *path, const char *name,
                                        diffcl_tensor **out);
/**
 * Write @p n tensors as datasets @p names[i] of a new HDF5 file (replacing @p path), with
 * gzip compression level @p gzip (0: none). The file is built in memory and written
 * atomically (temporary file + rename); a failed write is DIFFCL_ERR_IO naming the reason.
 */
DIFFCL_API diffcl_status diffcl_h5_write(const char *path, const char *const *names,
                                         const diffcl_tensor *const *tensors, int n, int gzip);

/* ------------------------------------------------------------------ NIfTI ---- */

/** What to read a NIfTI file as. */
typedef enum diffcl_nifti_read_as {
    DIFFCL_NIFTI_IMAGE = 0, /**< F32, scl_slope/scl_inter applied (as nibabel's get_fdata) */
    DIFFCL_NIFTI_LABEL = 1  /**< U8 class indices (error unless integral values in 0..255) */
} diffcl_nifti_read_as;

/**
 * Read a .nii or .nii.gz file as the array nibabel shows: shape (x, y, z) or (x, y, z, t)
 * (trailing size-1 axes of dims 5..7 dropped). @p meta (may be NULL) receives spacing
 * (pixdim), the affine (sform if set, else qform, else pixdim scaling, as nibabel) and the
 * header. The caller owns @p *out.
 */
DIFFCL_API diffcl_status diffcl_nifti_read(diffcl_context *ctx, const char *path,
                                           diffcl_nifti_read_as as, diffcl_tensor **out,
                                           diffcl_image_meta *meta);
/**
 * Write a 2-D/3-D/4-D tensor ((x, y, z[, t]) as read) to .nii or .nii.gz (by the file name).
 * With @p meta carrying a NIfTI header (a file read by diffcl_nifti_read) its geometry
 * (qform, sform, pixdim, units, orientation) is kept and the data type, dimensions and
 * scaling are set from @p t (U8 -> uint8, I32 -> int32, I64 -> int64, F32 -> float32,
 * F64 -> float64). Without a header, @p meta's spacing and affine (or unit spacing when
 * @p meta is NULL) build the sform and qform.
 */
DIFFCL_API diffcl_status diffcl_nifti_write(const diffcl_tensor *t, const char *path,
                                            const diffcl_image_meta *meta);

DIFFCL_END_DECLS

#endif /* DIFFCL_IMAGE_IO_H */
