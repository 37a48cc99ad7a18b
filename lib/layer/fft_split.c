/* Frequency filters and the high/low split: out = IFFT(M * FFT(x)) over the spatial axes,
 * with FFTW r2c/c2r (fftw3f for F32, fftw3 for F64), plans from the context's cache
 * (fft_plan.c). M is real and even, so the op is self-adjoint: backward = same filter. */
#include <math.h>
#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "layer/fft_internal.h"

void diffcl_freq_options_init(diffcl_freq_options *opts)
{
    if (!opts) return;
    diffcl_freq_options d = DIFFCL_FREQ_OPTIONS_INIT;
    *opts = d;
}

static diffcl_status read_options(const diffcl_freq_options *opts, diffcl_freq_options *o,
                                  const char *fn)
{
    diffcl_freq_options d = DIFFCL_FREQ_OPTIONS_INIT;
    *o = d;
    DC_TRY(dc_options_read(o, sizeof *o, opts, offsetof(diffcl_freq_options, cutoff_high), 0, fn));
    DC_CHECK_ARG(o->band >= DIFFCL_FREQ_HIGH && o->band <= DIFFCL_FREQ_BAND,
                 "%s: band %d is not HIGH, LOW or BAND", fn, (int)o->band);
    DC_CHECK_ARG(o->window >= DIFFCL_WINDOW_GAUSSIAN && o->window <= DIFFCL_WINDOW_BOX,
                 "%s: window %d is not GAUSSIAN, IDEAL or BOX", fn, (int)o->window);
    DC_CHECK_ARG(o->cutoff > 0 && isfinite(o->cutoff), "%s: cutoff %g must be > 0", fn, o->cutoff);
    DC_CHECK_ARG(
        o->band != DIFFCL_FREQ_BAND || (o->cutoff_high > o->cutoff && isfinite(o->cutoff_high)),
        "%s: band-pass cutoff_high %g must be above cutoff %g", fn, o->cutoff_high, o->cutoff);
    DC_CHECK_ARG(o->spatial_dims == 0 || o->spatial_dims == 2 || o->spatial_dims == 3,
                 "%s: spatial_dims %d is not 0, 2 or 3", fn, o->spatial_dims);
    return DIFFCL_OK;
}

/* Low-pass value at squared radius r2 / max-abs frequency linf for cutoff c. */
static double low_value(int window, double r2, double linf, double c)
{
    switch (window) {
    case DIFFCL_WINDOW_IDEAL: return sqrt(r2) <= c ? 1.0 : 0.0;
    case DIFFCL_WINDOW_BOX: return linf <= c ? 1.0 : 0.0;
    default: return exp(-r2 / (2.0 * c * c));
    }
}

static double mask_value(const diffcl_freq_options *o, double r2, double linf)
{
    double lo = low_value(o->window, r2, linf, o->cutoff);
    switch (o->band) {
    case DIFFCL_FREQ_LOW: return lo;
    case DIFFCL_FREQ_BAND: return low_value(o->window, r2, linf, o->cutoff_high) - lo;
    default: return 1.0 - lo;
    }
}

/* Frequency of index k on an axis of n points as a fraction of Nyquist (2 * fftfreq). */
static double nu_of(int64_t k, int64_t n)
{
    int64_t kk = k <= (n - 1) / 2 ? k : k - n;
    return 2.0 * (double)kk / (double)n;
}

/* Mask values over a grid: dims n[0..rank), last axis of length `last` (n/2+1 for the half
 * spectrum, with non-negative frequencies), times `scale`. */
static void fill_mask(const diffcl_freq_options *o, int rank, const int64_t *n, int64_t last,
                      int half, double scale, double *m)
{
    int64_t n0 = rank == 3 ? n[0] : 1, n1 = n[rank - 2], n2 = n[rank - 1];
    int64_t idx = 0;
    for (int64_t a = 0; a < n0; a++) {
        double v0 = rank == 3 ? nu_of(a, n0) : 0.0;
        for (int64_t b = 0; b < n1; b++) {
            double v1 = nu_of(b, n1);
            for (int64_t c = 0; c < last; c++) {
                double v2 = half ? 2.0 * (double)c / (double)n2 : nu_of(c, n2);
                double r2 = v0 * v0 + v1 * v1 + v2 * v2;
                double linf = fmax(fabs(v0), fmax(fabs(v1), fabs(v2)));
                m[idx++] = scale * mask_value(o, r2, linf);
            }
        }
    }
}

/* row[j] *= mask[j] for the ncplx complex values of one image's half spectrum */
static void scale_spectrum_f32(float *restrict row, const float *restrict mask, int64_t ncplx)
{
    for (int64_t j = 0; j < ncplx; j++) {
        row[2 * j] *= mask[j];
        row[2 * j + 1] *= mask[j];
    }
}

static void scale_spectrum_f64(double *restrict row, const double *restrict mask, int64_t ncplx)
{
    for (int64_t j = 0; j < ncplx; j++) {
        row[2 * j] *= mask[j];
        row[2 * j + 1] *= mask[j];
    }
}

/* The filter without autograd: out (contiguous, x's shape) = IFFT(M FFT(x)). */
static diffcl_status apply_filter(diffcl_context *ctx, const diffcl_freq_options *o, int rank,
                                  const diffcl_tensor *x, diffcl_tensor *out)
{
    int64_t n[3];
    int ni[3];
    int64_t nreal = 1;
    for (int i = 0; i < rank; i++) {
        n[i] = x->shape[x->ndim - rank + i];
        if (n[i] > 0x3fffffff)
            return dc_error(DIFFCL_ERR_SHAPE, "diffcl_freq_filter: axis of %lld points is too long",
                            (long long)n[i]);
        ni[i] = (int)n[i];
        nreal *= n[i];
    }
    int64_t total = dc_numel(x);
    if (total == 0) return DIFFCL_OK;
    int64_t batch = total / nreal;
    int64_t last = n[rank - 1] / 2 + 1, ncplx = nreal / n[rank - 1] * last;
    if (batch * ncplx > (int64_t)0x7fffffff)
        return dc_error(DIFFCL_ERR_SHAPE,
                        "diffcl_freq_filter: tensor %s is too large for one "
                        "FFTW plan",
                        dc_shape_str(x));
    double *m = dc_malloc((size_t)ncplx * sizeof *m);
    if (!m) return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "diffcl_freq_filter: out of memory");
    fill_mask(o, rank, n, last, 1, 1.0 / (double)nreal, m);

    /* Many images: each thread transforms whole images with a single-threaded plan (better
     * than FFTW's threads splitting each transform); few images: FFTW's threads. */
    const int nt = dc_threads(ctx);
    const int per_image = nt > 1 && batch >= nt;
    const size_t es = diffcl_dtype_size(x->dtype);
    dc_fft_plan *p =
        dc_fft_plan_get(ctx, x->dtype, rank, ni, per_image ? 1 : (int)batch, per_image ? 1 : nt);
    float *mf = p && x->dtype == DIFFCL_F32 ? dc_malloc((size_t)ncplx * sizeof *mf) : NULL;
    const size_t cbytes = (2 * (size_t)ncplx * es + 63) / 64 * 64, rbytes = (size_t)nreal * es;
    const size_t slice = (cbytes + rbytes + 63) / 64 * 64;
    char *ws = p && per_image ? dc_fft_alloc(x->dtype, (size_t)nt * slice) : NULL;
    if (!p || (x->dtype == DIFFCL_F32 && !mf) || (per_image && !ws)) {
        free(m);
        free(mf);
        dc_fft_free(x->dtype, ws);
        return p ? dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "diffcl_freq_filter: out of memory")
                 : DIFFCL_ERR_INTERNAL;
    }
    if (mf)
        for (int64_t j = 0; j < ncplx; j++) mf[j] = (float)m[j];
    const char *xin = dc_data(x);
    char *xout = dc_data(out);
    if (per_image) {
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t b = 0; b < batch; b++) {
#ifdef _OPENMP
            char *c = ws + (size_t)omp_get_thread_num() * slice;
#else
            char *c = ws;
#endif
            dc_fft_exec_r2c(p, xin + (size_t)(b * nreal) * es, c, c + cbytes);
            if (mf)
                scale_spectrum_f32((float *)c, mf, ncplx);
            else
                scale_spectrum_f64((double *)c, m, ncplx);
            dc_fft_exec_c2r(p, c, xout + (size_t)(b * nreal) * es, c + cbytes);
        }
    } else {
        dc_fft_exec_r2c(p, xin, p->cbuf, p->rbuf);
        int64_t work = batch * ncplx;
#pragma omp parallel for num_threads(nt) if (work > 65536) schedule(static)
        for (int64_t b = 0; b < batch; b++) {
            if (mf)
                scale_spectrum_f32((float *)p->cbuf + 2 * b * ncplx, mf, ncplx);
            else
                scale_spectrum_f64((double *)p->cbuf + 2 * b * ncplx, m, ncplx);
        }
        dc_fft_exec_c2r(p, p->cbuf, xout, p->rbuf);
    }
    free(m);
    free(mf);
    dc_fft_free(x->dtype, ws);
    return DIFFCL_OK;
}

static void options_to_node(dc_node *n, const diffcl_freq_options *o, int rank)
{
    n->i[0] = o->band;
    n->i[1] = o->window;
    n->i[2] = rank;
    n->f[0] = o->cutoff;
    n->f[1] = o->cutoff_high;
}

static diffcl_status filter_backward(dc_node *n, diffcl_tensor *g, diffcl_tensor **gin)
{
    if (!dc_wants_grad(n, 0)) return DIFFCL_OK;
    diffcl_freq_options o = DIFFCL_FREQ_OPTIONS_INIT;
    o.band = (diffcl_freq_band)n->i[0];
    o.window = (diffcl_freq_window)n->i[1];
    o.cutoff = n->f[0];
    o.cutoff_high = n->f[1];
    diffcl_tensor *gc = dc_contiguous(g);
    diffcl_tensor *r = gc ? dc_tensor_empty_like(gc) : NULL;
    if (!r) {
        diffcl_tensor_free(gc);
        return DIFFCL_ERR_OUT_OF_MEMORY;
    }
    diffcl_status s = apply_filter(g->ctx, &o, (int)n->i[2], gc, r);
    diffcl_tensor_free(gc);
    if (s != DIFFCL_OK) {
        diffcl_tensor_free(r);
        return s;
    }
    gin[0] = r;
    return DIFFCL_OK;
}
static const dc_op OP_FREQ_FILTER = {"freq_filter", filter_backward, NULL, 0};

static diffcl_status check_input(const diffcl_tensor *x, const diffcl_freq_options *o, int *rank,
                                 const char *fn)
{
    DC_CHECK_TENSOR(x, fn);
    if (!dc_is_float(x->dtype))
        return dc_error(DIFFCL_ERR_DTYPE, "%s: input is %s; need f32 or f64", fn,
                        diffcl_dtype_name(x->dtype));
    int r = o->spatial_dims ? o->spatial_dims : x->ndim - 2;
    if (r < 2 || r > 3 || x->ndim < r + 1)
        return dc_error(DIFFCL_ERR_SHAPE,
                        "%s: input %s: need [N,C,H,W] or [N,C,D,H,W] (or "
                        "spatial_dims %d with a leading batch axis)",
                        fn, dc_shape_str(x), o->spatial_dims);
    *rank = r;
    return DIFFCL_OK;
}

diffcl_status diffcl_freq_filter(const diffcl_tensor *x, const diffcl_freq_options *opts,
                                 diffcl_tensor **out)
{
    DC_CHECK_ARG(out, "diffcl_freq_filter: out is NULL");
    *out = NULL;
    diffcl_freq_options o;
    DC_TRY(read_options(opts, &o, "diffcl_freq_filter"));
    int rank = 0;
    DC_TRY(check_input(x, &o, &rank, "diffcl_freq_filter"));
    diffcl_tensor *xc = dc_contiguous(x);
    diffcl_tensor *r = xc ? dc_tensor_empty_like(xc) : NULL;
    if (!r) {
        diffcl_tensor_free(xc);
        return DIFFCL_ERR_OUT_OF_MEMORY;
    }
    diffcl_status s = apply_filter(x->ctx, &o, rank, xc, r);
    diffcl_tensor_free(xc);
    if (s != DIFFCL_OK) {
        diffcl_tensor_free(r);
        return s;
    }
    diffcl_tensor *in = (diffcl_tensor *)x;
    dc_node *n = dc_record(r, &OP_FREQ_FILTER, &in, 1);
    if (n) options_to_node(n, &o, rank);
    *out = r;
    return DIFFCL_OK;
}

diffcl_status diffcl_freq_split(const diffcl_tensor *x, const diffcl_freq_options *opts,
                                diffcl_tensor **high, diffcl_tensor **low)
{
    if (high) *high = NULL;
    if (low) *low = NULL;
    DC_CHECK_ARG(high || low, "diffcl_freq_split: both outputs are NULL");
    diffcl_freq_options o;
    DC_TRY(read_options(opts, &o, "diffcl_freq_split"));
    o.band = DIFFCL_FREQ_HIGH;
    diffcl_tensor *h = NULL;
    DC_TRY(diffcl_freq_filter(x, &o, &h));
    if (low) {
        diffcl_status s = diffcl_sub(x, h, low);
        if (s != DIFFCL_OK) {
            diffcl_tensor_free(h);
            return s;
        }
    }
    if (high)
        *high = h;
    else
        diffcl_tensor_free(h);
    return DIFFCL_OK;
}

diffcl_status diffcl_freq_mask(diffcl_context *ctx, diffcl_dtype dtype,
                               const diffcl_freq_options *opts, int rank, const int64_t *shape,
                               diffcl_tensor **out)
{
    DC_CHECK_ARG(out, "diffcl_freq_mask: out is NULL");
    *out = NULL;
    DC_CHECK_ARG(ctx, "diffcl_freq_mask: ctx is NULL");
    DC_CHECK_ARG(shape, "diffcl_freq_mask: shape is NULL");
    DC_CHECK_ARG(rank == 2 || rank == 3, "diffcl_freq_mask: rank %d is not 2 or 3", rank);
    if (!dc_is_float(dtype))
        return dc_error(DIFFCL_ERR_DTYPE, "diffcl_freq_mask: dtype %s; need f32 or f64",
                        diffcl_dtype_name(dtype));
    diffcl_freq_options o;
    DC_TRY(read_options(opts, &o, "diffcl_freq_mask"));
    int64_t total = 1;
    for (int i = 0; i < rank; i++) {
        DC_CHECK_ARG(shape[i] >= 1, "diffcl_freq_mask: shape[%d] = %lld", i, (long long)shape[i]);
        total *= shape[i];
    }
    diffcl_tensor *r = dc_tensor_empty(ctx, dtype, rank, shape);
    double *m = r ? dc_malloc((size_t)total * sizeof *m) : NULL;
    if (!m) {
        diffcl_tensor_free(r);
        return dc_error(DIFFCL_ERR_OUT_OF_MEMORY, "diffcl_freq_mask: out of memory");
    }
    fill_mask(&o, rank, shape, shape[rank - 1], 0, 1.0, m);
    for (int64_t i = 0; i < total; i++) {
        if (dtype == DIFFCL_F32)
            dc_f32(r)[i] = (float)m[i];
        else
            dc_f64(r)[i] = m[i];
    }
    free(m);
    *out = r;
    return DIFFCL_OK;
}
