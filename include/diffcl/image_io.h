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
 * different contexts may run concurrently. diffcl_io_has_hdf5(), diffcl_io_has_nifti(),
 * diffcl_read_options_init() and diffcl_label_map_parse() are thread-safe.
 */
#ifndef DIFFCL_IMAGE_IO_H
#define DIFFCL_IMAGE_IO_H

#include "diffcl/tensor.h"

DIFFCL_BEGIN_DECLS

/**
 * Geometry of an image: voxel spacing and the voxel-to-world affine, in the tensor's axis
 * order (spacing[0] is the spacing of axis D = NIfTI's x). For NIfTI input the original
 * header is kept so that a written prediction carries the input's header: the 348-byte
 * NIfTI-1 header of a NIfTI-1 file, the 540-byte NIfTI-2 header of a NIfTI-2 file (since
 * 0.2; a NIfTI-2 file whose sizes fit NIfTI-1 also gets the NIfTI-1 equivalent in
 * nifti_header, for programs built against 0.1.0's smaller struct).
 */
typedef struct diffcl_image_meta {
    size_t struct_size;
    int ndim;            /**< spatial dims: 2 or 3 (0: unknown) */
    double spacing[3];   /**< per spatial axis; 1 when unknown */
    double affine[4][4]; /**< voxel index (D,H,W,1) -> world (RAS for NIfTI); identity if unknown */
    int has_nifti_header; /**< nifti_header holds a valid NIfTI-1 header */
    unsigned char nifti_header[348];
    int has_nifti2_header; /**< nifti2_header holds the NIfTI-2 header of a NIfTI-2 input (0.2);
                                diffcl_nifti_write() then writes NIfTI-2 */
    unsigned char nifti2_header[540]; /**< a nifti_2_header as read (0.2) */
} diffcl_image_meta;

/** Fill @p meta with unit spacing, identity affine, no header. */
DIFFCL_API void diffcl_image_meta_init(diffcl_image_meta *meta);

/** @return 1 if this build reads/writes HDF5, else 0. */
DIFFCL_API int diffcl_io_has_hdf5(void);
/** @return 1 if this build reads/writes NIfTI, else 0. */
DIFFCL_API int diffcl_io_has_nifti(void);

/* ------------------------------------------------------------ orientation ---- */

/**
 * How to bring a 3-D image to RAS+ (nibabel's as_closest_canonical): output axis j is input
 * axis perm[j], reversed when flip[j]. Fixed layout (two arrays of 3 ints, no struct_size).
 */
typedef struct diffcl_orientation {
    int perm[3];
    int flip[3];
} diffcl_orientation;

/**
 * The orientation that takes an image with geometry @p meta (its affine, voxel -> world RAS) to
 * RAS+: the voxel axes paired with the world axes they point along most closely, and reversed
 * where they point left, posterior or inferior. DIFFCL_ERR_INVALID_ARGUMENT for a singular
 * affine.
 */
DIFFCL_API diffcl_status diffcl_orientation_to_ras(const diffcl_image_meta *meta,
                                                   diffcl_orientation *o);
/**
 * Permute and flip the last 3 axes of @p t (any leading axes, e.g. channels, stay) as @p o
 * says, or undo it (@p inverse 1: @p t is on the reoriented grid, *out on the original). New
 * tensor of @p t's dtype; the caller owns it.
 */
DIFFCL_API diffcl_status diffcl_reorient(const diffcl_tensor *t, const diffcl_orientation *o,
                                         int inverse, diffcl_tensor **out);
/**
 * The geometry of the reoriented grid: spacing permuted, affine with its columns permuted and
 * negated and its origin moved to the flipped axes' last voxel, so each voxel keeps its world
 * position. @p shape: the input's spatial shape. The NIfTI headers are not carried over (they
 * describe the input's grid): write a prediction on the input's grid with the input's meta.
 */
DIFFCL_API void diffcl_reorient_meta(const diffcl_image_meta *in, const int64_t shape[3],
                                     const diffcl_orientation *o, diffcl_image_meta *out);

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

/** How diffcl_png_read_image_ex() turns a PNG into channels (0.2). */
typedef enum diffcl_png_color {
    DIFFCL_PNG_COLOR_L = 0,  /**< one channel: grey samples as stored, colour (RGB, palette)
                                  to luminance as PIL's convert("L"); diffcl_png_read_image() */
    DIFFCL_PNG_COLOR_RGB = 1 /**< three channels R, G, B as PIL's convert("RGB"): a grey file
                                  gives three equal channels, a palette is expanded */
} diffcl_png_color;

/**
 * How image and label files are read (0.2): by diffcl_png_read_image_ex(),
 * diffcl_png_read_label_ex() and the data sets of diffcl_dataset_open_ex().
 *
 * label_map: a label PNG's pixel values given as comma-separated VALUE:CLASS pairs (VALUE and
 * CLASS in 0..255, each VALUE at most once, spaces allowed), e.g. "255:1" for a 0/255 mask or
 * "255:1,128:2". A listed value becomes its class; an unlisted value is kept when it is a class
 * of the map (0 up to the largest CLASS listed, so "255:1" keeps 0 and 1); any other value is
 * DIFFCL_ERR_FORMAT naming the file, the pixel and the value.
 */
typedef struct diffcl_read_options {
    size_t struct_size;
    int png_color;         /**< PNG images: a diffcl_png_color; default DIFFCL_PNG_COLOR_L */
    const char *label_map; /**< PNG labels: "VALUE:CLASS,..." (see above); NULL or "": none
                                (default). Copied where it is kept (diffcl_dataset_open_ex()) */
    int reorient_ras;      /**< 3-D NIfTI cases: turned to RAS+ when loaded (image, label and
                                geometry; diffcl_orientation_to_ras()); default 0 */
} diffcl_read_options;

#define DIFFCL_READ_OPTIONS_INIT                                                                   \
    {                                                                                              \
        sizeof(diffcl_read_options), DIFFCL_PNG_COLOR_L, NULL, 0                                   \
    }
/** Fill @p opts with the defaults (same as DIFFCL_READ_OPTIONS_INIT). */
DIFFCL_API void diffcl_read_options_init(diffcl_read_options *opts);

/**
 * Read a PNG image as F32 [C, H, W] raw sample values: C = 1 with
 * opts->png_color = DIFFCL_PNG_COLOR_L (the values of diffcl_png_read_image()), C = 3 (R, G, B)
 * with DIFFCL_PNG_COLOR_RGB. Alpha is dropped. @p opts NULL: the defaults. @p bit_depth (may be
 * NULL) receives 8 or 16. The caller owns @p *out. Errors as diffcl_png_read_image(), and
 * DIFFCL_ERR_INVALID_ARGUMENT for a bad png_color or struct_size.
 */
DIFFCL_API diffcl_status diffcl_png_read_image_ex(diffcl_context *ctx, const char *path,
                                                  const diffcl_read_options *opts,
                                                  diffcl_tensor **out, int *bit_depth);
/**
 * Read a label PNG as diffcl_png_read_label() does, then apply opts->label_map (see
 * diffcl_read_options): U8 [H, W] class indices. A value neither in the map nor a class of it
 * is DIFFCL_ERR_FORMAT naming the file, the pixel and the value; a malformed map
 * DIFFCL_ERR_INVALID_ARGUMENT. @p opts NULL: no map. The caller owns @p *out.
 */
DIFFCL_API diffcl_status diffcl_png_read_label_ex(diffcl_context *ctx, const char *path,
                                                  const diffcl_read_options *opts,
                                                  diffcl_tensor **out);
/**
 * Parse a label map ("255:1,128:2", see diffcl_read_options): @p table[v] receives the class
 * of value v, or -1 for values not listed; @p max_class (may be NULL) the largest class
 * listed. A malformed map (not VALUE:CLASS pairs in 0..255, a value given twice, empty) is
 * DIFFCL_ERR_INVALID_ARGUMENT, and @p table is left unchanged. Thread-safe.
 */
DIFFCL_API diffcl_status diffcl_label_map_parse(const char *spec, int table[256], int *max_class);

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
 * Read a NIfTI-1 or NIfTI-2 .nii or .nii.gz file as the array nibabel shows: shape (x, y, z)
 * or (x, y, z, t) (trailing size-1 axes of dims 5..7 dropped). @p meta (may be NULL) receives
 * spacing (pixdim), the affine (sform if set, else qform, else pixdim scaling, as nibabel) and
 * the header: nifti_header for a NIfTI-1 file; nifti2_header (when @p meta reaches it) and,
 * if the sizes fit NIfTI-1, its NIfTI-1 equivalent in nifti_header for a NIfTI-2 file. The
 * caller owns @p *out.
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
 * @p meta is NULL) build the sform and qform. The file is NIfTI-2 when @p meta holds a
 * NIfTI-2 header (has_nifti2_header: the input was NIfTI-2; clear it for NIfTI-1) or when a
 * size exceeds NIfTI-1's 32767, else NIfTI-1 (as 0.1.0).
 */
DIFFCL_API diffcl_status diffcl_nifti_write(const diffcl_tensor *t, const char *path,
                                            const diffcl_image_meta *meta);

DIFFCL_END_DECLS

#endif /* DIFFCL_IMAGE_IO_H */
