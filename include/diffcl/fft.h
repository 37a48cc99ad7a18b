/**
 * @file fft.h
 * @brief Frequency decomposition of feature maps with FFTW (real FFT over the spatial axes).
 *
 * A frequency filter computes out = IFFT(M ⊙ FFT(x)) over the last 2 or 3 axes of an
 * NC[D]HW tensor (batched over the leading axes), with a real, radially symmetric mask M:
 * the transform is FFTW's r2c / c2r in single precision for F32 tensors and in double
 * precision for F64 tensors (the gradient-check path), normalised by 1/(number of points).
 *
 * Frequencies are measured per axis as a fraction of the Nyquist frequency:
 * nu_i = 2 * fftfreq(n_i)[k_i] in [-1, 1), and the radius is r = sqrt(sum_i nu_i^2).
 * Masks (sigma, r0 = @ref diffcl_freq_options::cutoff, r1 = cutoff_high):
 *
 * | window   | low-pass                 | high-pass        | band-pass                      |
 * |----------|--------------------------|------------------|--------------------------------|
 * | gaussian | exp(-r^2 / (2 r0^2))     | 1 - low(r0)      | low(r1) - low(r0)              |
 * | ideal    | r <= r0                  | r > r0           | r0 < r <= r1                   |
 * | box      | max_i abs(nu_i) <= r0    | 1 - low(r0)      | low(r1) - low(r0)              |
 *
 * Since M is real and M(f) = M(-f), the filter is linear and self-adjoint: its backward is
 * the same filter applied to the gradient. A sinusoid of frequency f is scaled by exactly
 * M(f).
 *
 * Plans: each context keeps a cache of FFTW plans keyed by (precision, transform shape,
 * batch, thread count, planner rigor); a shape is planned once and reused. Planning (and
 * plan destruction, and the wisdom functions) take a process-wide lock because FFTW's
 * planner is not thread-safe; executing plans is, so contexts in different threads compute
 * concurrently. The context's threads transform whole images in parallel when there are at
 * least as many images (the product of the leading axes) as threads, and otherwise run as
 * FFTW's own threads (single precision, when the build has FFTW's threads library). The
 * default rigor is FFTW_ESTIMATE, which gives the same plan, hence bit-identical results,
 * on every run.
 *
 * Ownership: every `diffcl_tensor **` output is a new tensor the caller owns
 * (diffcl_tensor_free()); the wisdom string is released with
 * diffcl_fft_wisdom_string_free().
 *
 * Errors: DIFFCL_ERR_INVALID_ARGUMENT for NULL tensors, contexts or out-pointers and bad
 * options, and the codes named per function; the detail is in diffcl_last_error().
 *
 * Thread safety: the filter and cache functions use their context from one thread at a
 * time (core.h); the wisdom functions are process-wide and thread-safe (see Plans).
 */
#ifndef DIFFCL_FFT_H
#define DIFFCL_FFT_H

#include "diffcl/tensor.h"

DIFFCL_BEGIN_DECLS

/** Which part of the spectrum a filter keeps. */
typedef enum diffcl_freq_band {
    DIFFCL_FREQ_HIGH = 0, /**< high-pass (edges, boundaries, detail) */
    DIFFCL_FREQ_LOW = 1,  /**< low-pass (smooth content) */
    DIFFCL_FREQ_BAND = 2  /**< band-pass between cutoff and cutoff_high */
} diffcl_freq_band;

/** Shape of the mask's transition. */
typedef enum diffcl_freq_window {
    DIFFCL_WINDOW_GAUSSIAN = 0, /**< smooth radial Gaussian (default) */
    DIFFCL_WINDOW_IDEAL = 1,    /**< hard radial cut at the cutoff radius */
    DIFFCL_WINDOW_BOX = 2       /**< hard cut on max_i |nu_i| (an axis-aligned box) */
} diffcl_freq_window;

/** Options of a frequency filter. */
typedef struct diffcl_freq_options {
    size_t struct_size;        /**< sizeof(diffcl_freq_options) */
    diffcl_freq_band band;     /**< default DIFFCL_FREQ_HIGH */
    diffcl_freq_window window; /**< default DIFFCL_WINDOW_GAUSSIAN */
    double cutoff;             /**< sigma / radius as a fraction of Nyquist, > 0; default 0.25
                                     (the lower edge of a band-pass) */
    double cutoff_high;        /**< band-pass upper edge (> cutoff); default 0.5 */
    int spatial_dims;          /**< axes transformed (the last ones): 2, 3, or 0 (default)
                                     for ndim - 2 (HW of NCHW, DHW of NCDHW) */
} diffcl_freq_options;

#define DIFFCL_FREQ_OPTIONS_INIT                                                                   \
    {                                                                                              \
        sizeof(diffcl_freq_options), DIFFCL_FREQ_HIGH, DIFFCL_WINDOW_GAUSSIAN, 0.25, 0.5, 0        \
    }
/** Fill @p opts with the defaults (same as DIFFCL_FREQ_OPTIONS_INIT). */
DIFFCL_API void diffcl_freq_options_init(diffcl_freq_options *opts);

/**
 * Apply the frequency filter described by @p opts (NULL: high-pass defaults) to @p x
 * (F32 or F64, 3 to 5 axes, at least spatial_dims + 1). @p *out is a new tensor of x's shape
 * and dtype, owned by the caller; recorded for autograd. Errors: DIFFCL_ERR_INVALID_ARGUMENT
 * (bad options), DIFFCL_ERR_SHAPE, DIFFCL_ERR_DTYPE, DIFFCL_ERR_OUT_OF_MEMORY,
 * DIFFCL_ERR_INTERNAL (FFTW could not plan).
 */
DIFFCL_API diffcl_status diffcl_freq_filter(const diffcl_tensor *x, const diffcl_freq_options *opts,
                                            diffcl_tensor **out);

/**
 * Split @p x into @p *high = the high-pass of @p opts' window and cutoff (opts->band is
 * ignored) and @p *low = x - high (so high + low == x up to rounding). Both are new tensors
 * owned by the caller; either pointer may be NULL when that part is not wanted. Recorded for
 * autograd.
 */
DIFFCL_API diffcl_status diffcl_freq_split(const diffcl_tensor *x, const diffcl_freq_options *opts,
                                           diffcl_tensor **high, diffcl_tensor **low);

/**
 * The full-spectrum mask M of @p opts for spatial size @p shape (@p rank = 2 or 3 entries),
 * as a new tensor of @p dtype and that shape, in FFT order (index 0 = zero frequency, as
 * torch.fft.fftfreq). For inspection, figures and tests.
 */
DIFFCL_API diffcl_status diffcl_freq_mask(diffcl_context *ctx, diffcl_dtype dtype,
                                          const diffcl_freq_options *opts, int rank,
                                          const int64_t *shape, diffcl_tensor **out);

/** FFTW planner rigor (how hard FFTW searches for a fast plan). */
typedef enum diffcl_fft_rigor {
    DIFFCL_FFT_ESTIMATE = 0, /**< default: heuristic plan, identical on every run */
    DIFFCL_FFT_MEASURE = 1,  /**< time candidate plans (faster, may differ run to run unless
                                  wisdom is imported) */
    DIFFCL_FFT_PATIENT = 2
} diffcl_fft_rigor;

/** Set the planner rigor of @p ctx's FFTs; changing it empties the context's plan cache. */
DIFFCL_API diffcl_status diffcl_fft_set_rigor(diffcl_context *ctx, diffcl_fft_rigor rigor);
/** Release every cached plan and buffer of @p ctx (they are rebuilt on demand). */
DIFFCL_API diffcl_status diffcl_fft_cache_clear(diffcl_context *ctx);
/**
 * Statistics of @p ctx's plan cache: number of plans held, and how many filter calls found
 * their plan cached (@p hits) or had to plan (@p misses). Any out-pointer may be NULL.
 */
DIFFCL_API diffcl_status diffcl_fft_cache_stats(const diffcl_context *ctx, int *n_plans,
                                                int64_t *hits, int64_t *misses);

/**
 * FFTW wisdom (accumulated planner knowledge, process-wide, single precision). Export it after
 * planning with DIFFCL_FFT_MEASURE and import it in later runs to get the same fast plans
 * reproducibly. All wisdom functions are thread-safe (they take the planner lock).
 */
/** Write the wisdom to the file @p path. DIFFCL_ERR_IO when it cannot be written. */
DIFFCL_API diffcl_status diffcl_fft_wisdom_export(const char *path);
/** Merge wisdom from the file @p path. DIFFCL_ERR_IO / DIFFCL_ERR_FORMAT on failure. */
DIFFCL_API diffcl_status diffcl_fft_wisdom_import(const char *path);
/** The wisdom as a new string in @p *out; release it with diffcl_fft_wisdom_string_free(). */
DIFFCL_API diffcl_status diffcl_fft_wisdom_export_string(char **out);
/** Merge wisdom from a string. DIFFCL_ERR_FORMAT when FFTW rejects it. */
DIFFCL_API diffcl_status diffcl_fft_wisdom_import_string(const char *wisdom);
/** Release a string from diffcl_fft_wisdom_export_string(). NULL is ignored. */
DIFFCL_API void diffcl_fft_wisdom_string_free(char *wisdom);
/** Forget all wisdom (plans already cached stay valid). */
DIFFCL_API void diffcl_fft_wisdom_forget(void);

DIFFCL_END_DECLS

#endif /* DIFFCL_FFT_H */
