/* F32 convolution on AVX-512 with our own GEMM micro-kernels (x86-64, chosen at run time).
 *
 * Why not cblas_sgemm here: OpenBLAS 0.3.21 runs its AVX2 (Haswell) kernels on AVX-512 AMD
 * cores, at half the speed, and a GEMM on packed columns pays the column packing twice.
 * The paths, by convolution (all on NCDHW as it is, no layout change for the caller):
 *
 *  stride 1, >= 32 output channels  "cvec": vectors along output channels; a block is 32
 *        channels x 10 output voxels, each step one (input channel, tap): two weight vectors
 *        times ten inputs broadcast from a zero-padded copy of the input slab. No columns.
 *  stride 1, < 32 output channels   "direct": vectors along voxels in padded coordinates, where
 *        every tap is a constant offset, so the GEMM's B rows are the padded input itself
 *        (8 channels x 48 voxels per block; the padded positions are computed and dropped).
 *  kernel == stride (k2s2 down-sampling, transposed k2s2 up-sampling)  space-to-depth of a
 *        slab, then plain GEMMs reading its rows; the input gradient is W^T dy then
 *        depth-to-space (vectorised 2x (de)interleave).
 *  1x1x1  plain GEMMs on the input's channel rows.
 *  anything else (overlapping strided windows)  vol2col into 48-column panels per tile.
 *  input gradient of a stride-1 convolution = the forward of dy with the flipped kernel.
 *  weight gradients: stride 1 with >= 32 channels "cvec" again (10 taps x 32 channels summed
 *        in registers over a slab's voxels); otherwise dot products along voxels (4 x 5
 *        blocks, both operands contiguous along them) over the padded slab / space-to-depth
 *        rows / columns. Per-thread accumulators, reduced at the end.
 *
 * Work is cut into slabs of output planes or tiles of output voxels, sized to the per-thread
 * budget (dc_conv_set_tiling) and run in parallel; the workspace comes from dc_scratch. */
#include <stdlib.h>
#include <string.h>

#include "layer/conv_internal.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define DC_HAVE_AVX512_CODE 1
#include <immintrin.h>
#endif

void dc_conv_set_kernel(diffcl_context *ctx, int kernel)
{
    ctx->conv_kernel = kernel;
}

/* DIFFCL_CONV_KERNEL=blas in the environment selects the cblas_sgemm family (debugging,
 * comparisons); the default is AVX-512 where the CPU has it. */
int dc_kern_conv512_usable(const diffcl_context *ctx)
{
#ifdef DC_HAVE_AVX512_CODE
    /* machine and environment facts, read once; relaxed atomics because two contexts may
     * ask from two threads at the same time (both compute the same value) */
    static int cpu = -1;
    int c = __atomic_load_n(&cpu, __ATOMIC_RELAXED);
    if (c < 0) {
        const char *e = getenv("DIFFCL_CONV_KERNEL");
        c = __builtin_cpu_supports("avx512f") && !(e && !strcmp(e, "blas")) ? 1 : 0;
        __atomic_store_n(&cpu, c, __ATOMIC_RELAXED);
    }
    return ctx->conv_kernel != 1 && c;
#else
    (void)ctx;
    return 0;
#endif
}

#ifdef DC_HAVE_AVX512_CODE

#define MR 8  /* rows (output channels) of the NN register block */
#define NR 48 /* columns (voxels) of the NN register block: 3 vectors */
#define MT 4  /* NT block: rows of dy ... */
#define NT 5  /* ... by rows of the columns */
#define TGT __attribute__((target("avx512f")))

static inline int64_t round_up(int64_t v, int64_t m)
{
    return (v + m - 1) / m * m;
}
static inline int64_t imin(int64_t a, int64_t b)
{
    return a < b ? a : b;
}
static inline int64_t imax(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

/* ------------------------------------------------------------- packing ---- */

/* dst[0..n) = src[0, s, 2s, ...] (s = 1 or 2 vectorised) or zeros (src NULL). */
static inline void TGT copy_run(float *restrict d, const float *restrict src, int64_t s, int64_t n)
{
    if (!src) {
        const __m512 z = _mm512_setzero_ps();
        for (; n >= 16; n -= 16, d += 16) _mm512_storeu_ps(d, z);
        if (n) _mm512_mask_storeu_ps(d, (__mmask16)((1u << n) - 1), z);
    } else if (s == 1) {
        for (; n >= 16; n -= 16, d += 16, src += 16) _mm512_storeu_ps(d, _mm512_loadu_ps(src));
        if (n) {
            const __mmask16 m = (__mmask16)((1u << n) - 1);
            _mm512_mask_storeu_ps(d, m, _mm512_maskz_loadu_ps(m, src));
        }
    } else if (s == 2) {
        const __m512i even =
            _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
        for (; n >= 16; n -= 16, d += 16, src += 32) {
            const __m512 lo = _mm512_loadu_ps(src);
            const __m512 hi = _mm512_maskz_loadu_ps((__mmask16)0x7FFF, src + 16); /* 31 needed */
            _mm512_storeu_ps(d, _mm512_permutex2var_ps(lo, even, hi));
        }
        if (n) {
            const int64_t need = 2 * n - 1; /* src[0 .. 2n-2] */
            const __mmask16 ml = (__mmask16)(need >= 16 ? 0xFFFF : (1u << need) - 1);
            const __mmask16 mh = (__mmask16)(need > 16 ? (1u << (need - 16)) - 1 : 0);
            const __m512 lo = _mm512_maskz_loadu_ps(ml, src),
                         hi = _mm512_maskz_loadu_ps(mh, src + 16);
            _mm512_mask_storeu_ps(d, (__mmask16)((1u << n) - 1),
                                  _mm512_permutex2var_ps(lo, even, hi));
        }
    } else {
        for (int64_t i = 0; i < n; i++) d[i] = src[i * s];
    }
}

/* Write n values from src (element stride s; NULL: zeros) to columns [j, j+n) of row r of
 * a K-row operand: row-major with leading dimension ld, or (panel) 48-column panels. */
static inline void TGT put(float *restrict dst, int panel, int64_t K, int64_t ld, int64_t r,
                           int64_t j, const float *restrict src, int64_t s, int64_t n)
{
    if (!panel) {
        copy_run(dst + r * ld + j, src, s, n);
        return;
    }
    while (n > 0) {
        const int64_t q = j / NR, off = j - q * NR, m = imin(n, NR - off);
        copy_run(dst + (q * K + r) * NR + off, src, s, m);
        if (src) src += m * s;
        j += m;
        n -= m;
    }
}

/* vol2col of output voxels [p0, p1) of one sample, rows [r_lo, r_hi) of K. The walk over
 * output rows is incremental (no divisions per segment). */
static void TGT pack_cols(const dc_cgeo *g, const float *restrict x, int64_t p0, int64_t p1,
                          int64_t r_lo, int64_t r_hi, float *restrict dst, int panel, int64_t K,
                          int64_t ld)
{
    const int64_t L = g->out[2], kvol = dc_cgeo_kvol(g), k12 = (int64_t)g->k[1] * g->k[2];
    const int64_t in0 = g->in[0], in1 = g->in[1], in2 = g->in[2], s2 = g->s[2];
    const int64_t np = p1 - p0, q_start = p0 / L, o2_start = p0 - q_start * L;
    const int64_t o0_start = q_start / g->out[1], o1_start = q_start - o0_start * g->out[1];
    for (int64_t r = r_lo; r < r_hi; r++) {
        const int64_t c = r / kvol, rem = r % kvol;
        const int64_t a = rem / k12, b = (rem / g->k[2]) % g->k[1], e = rem % g->k[2];
        const int64_t off2 = e * g->d[2] - g->p[2];
        /* output-axis-2 range whose input index lies inside [0, in2) */
        int64_t lo = off2 >= 0 ? 0 : (-off2 + s2 - 1) / s2;
        int64_t hi = (in2 - 1 - off2) >= 0 ? (in2 - 1 - off2) / s2 + 1 : 0;
        hi = imin(hi, L);
        lo = imin(lo, hi);
        const float *xc = x + c * in0 * in1 * in2;
        int64_t o0 = o0_start, o1 = o1_start, o2 = o2_start, j = 0;
        while (j < np) {
            const int64_t seg = imin(L - o2, np - j);
            const int64_t i0 = o0 * g->s[0] - g->p[0] + a * g->d[0];
            const int64_t i1 = o1 * g->s[1] - g->p[1] + b * g->d[1];
            if (i0 < 0 || i0 >= in0 || i1 < 0 || i1 >= in1) {
                put(dst, panel, K, ld, r, j, NULL, 1, seg);
            } else {
                const int64_t e0 = o2 + seg, l = imin(imax(lo, o2), e0), h = imin(imax(hi, l), e0);
                const float *src = xc + (i0 * in1 + i1) * in2 + off2;
                if (l > o2) put(dst, panel, K, ld, r, j, NULL, 1, l - o2);
                if (h > l) put(dst, panel, K, ld, r, j + (l - o2), src + l * s2, s2, h - l);
                if (e0 > h) put(dst, panel, K, ld, r, j + (h - o2), NULL, 1, e0 - h);
            }
            j += seg;
            o2 = 0;
            if (++o1 == g->out[1]) {
                o1 = 0;
                o0++;
            }
        }
        if (panel && round_up(np, NR) > np)
            put(dst, 1, K, 0, r, np, NULL, 1, round_up(np, NR) - np);
    }
}

/* col2vol of a row-major column block (K x (p1-p0), leading dimension ld) into dx of one
 * sample, rows [r_lo, r_hi); store: write instead of add (windows do not overlap). */
static void unpack_cols(const dc_cgeo *g, const float *restrict col, int64_t ld, int64_t p0,
                        int64_t p1, int64_t r_lo, int64_t r_hi, float *restrict dx, int store)
{
    const int64_t L = g->out[2], kvol = dc_cgeo_kvol(g), k12 = (int64_t)g->k[1] * g->k[2];
    const int64_t in0 = g->in[0], in1 = g->in[1], in2 = g->in[2], s2 = g->s[2];
    const int64_t np = p1 - p0, q_start = p0 / L, o2_start = p0 - q_start * L;
    const int64_t o0_start = q_start / g->out[1], o1_start = q_start - o0_start * g->out[1];
    for (int64_t r = r_lo; r < r_hi; r++) {
        const int64_t c = r / kvol, rem = r % kvol;
        const int64_t a = rem / k12, b = (rem / g->k[2]) % g->k[1], e = rem % g->k[2];
        const int64_t off2 = e * g->d[2] - g->p[2];
        int64_t lo = off2 >= 0 ? 0 : (-off2 + s2 - 1) / s2;
        int64_t hi = (in2 - 1 - off2) >= 0 ? (in2 - 1 - off2) / s2 + 1 : 0;
        hi = imin(hi, L);
        lo = imin(lo, hi);
        float *xc = dx + c * in0 * in1 * in2;
        const float *src = col + r * ld;
        int64_t o0 = o0_start, o1 = o1_start, o2 = o2_start, j = 0;
        while (j < np) {
            const int64_t seg = imin(L - o2, np - j);
            const int64_t i0 = o0 * g->s[0] - g->p[0] + a * g->d[0];
            const int64_t i1 = o1 * g->s[1] - g->p[1] + b * g->d[1];
            if (i0 >= 0 && i0 < in0 && i1 >= 0 && i1 < in1) {
                const int64_t e0 = o2 + seg, l = imin(imax(lo, o2), e0), h = imin(imax(hi, l), e0);
                float *d = xc + (i0 * in1 + i1) * in2 + off2;
                const float *sv = src + j - o2;
                if (store) {
                    if (s2 == 2)
                        for (int64_t o = l; o < h; o++) d[2 * o] = sv[o];
                    else
                        for (int64_t o = l; o < h; o++) d[o * s2] = sv[o];
                } else if (s2 == 1) {
                    for (int64_t o = l; o < h; o++) d[o] += sv[o];
                } else {
                    for (int64_t o = l; o < h; o++) d[o * s2] += sv[o];
                }
            }
            j += seg;
            o2 = 0;
            if (++o1 == g->out[1]) {
                o1 = 0;
                o0++;
            }
        }
    }
}

/* A (M x K) into 8-row panels [M/8][K][8], zero rows past M. trans: the source is K x M
 * (A = src^T), as W^T for the input gradient. */
static void pack_a(const float *restrict src, int64_t M, int64_t K, int trans, float *restrict ap,
                   int nt)
{
    const int64_t mp_n = (M + MR - 1) / MR;
    DC_OMP_PARALLEL_FOR(nt)
    for (int64_t mp = 0; mp < mp_n; mp++)
        for (int64_t k = 0; k < K; k++)
            for (int i = 0; i < MR; i++) {
                const int64_t m = mp * MR + i;
                ap[(mp * K + k) * MR + i] =
                    m < M ? (trans ? src[k * M + m] : src[m * K + k]) : 0.0f;
            }
}

/* ------------------------------------------------------------ micro-kernels ---- */

static inline __mmask16 TGT col_mask(int ncols, int v)
{
    const int n = ncols - 16 * v;
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

/* C[0:mrows, 0:ncols] (+)= A-panel (kc x 8) . B (kc x 48), where row k of B starts at
 * b + boff[k] (48 consecutive floats: a packed panel row, a strided row, or a tap of the
 * padded input); bias (first pass) per row. */
static void TGT ukr_nn(int64_t kc, const float *restrict a, const float *restrict b,
                       const int64_t *restrict boff, float *restrict c, int64_t ldc, int mrows,
                       int ncols, int beta, const float *restrict bias)
{
    __m512 acc[MR][3];
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) {
        const __m512 v = bias && i < mrows ? _mm512_set1_ps(bias[i]) : _mm512_setzero_ps();
        acc[i][0] = v;
        acc[i][1] = v;
        acc[i][2] = v;
    }
    const __mmask16 m0 = col_mask(ncols, 0), m1 = col_mask(ncols, 1), m2 = col_mask(ncols, 2);
    if (ncols == NR) {
        for (int64_t k = 0; k < kc; k++) {
            const float *bk = b + boff[k];
            const __m512 b0 = _mm512_loadu_ps(bk), b1 = _mm512_loadu_ps(bk + 16);
            const __m512 b2 = _mm512_loadu_ps(bk + 32);
#pragma GCC unroll 8
            for (int i = 0; i < MR; i++) {
                const __m512 ai = _mm512_set1_ps(a[i]);
                acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
                acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
                acc[i][2] = _mm512_fmadd_ps(ai, b2, acc[i][2]);
            }
            a += MR;
        }
    } else { /* edge block: never read past the last column (B may be a tensor's end) */
        for (int64_t k = 0; k < kc; k++) {
            const float *bk = b + boff[k];
            const __m512 b0 = _mm512_maskz_loadu_ps(m0, bk),
                         b1 = _mm512_maskz_loadu_ps(m1, bk + 16);
            const __m512 b2 = _mm512_maskz_loadu_ps(m2, bk + 32);
#pragma GCC unroll 8
            for (int i = 0; i < MR; i++) {
                const __m512 ai = _mm512_set1_ps(a[i]);
                acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
                acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
                acc[i][2] = _mm512_fmadd_ps(ai, b2, acc[i][2]);
            }
            a += MR;
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) {
        if (i >= mrows) break;
        float *cr = c + i * ldc;
        __m512 v0 = acc[i][0], v1 = acc[i][1], v2 = acc[i][2];
        if (beta) {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, cr));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, cr + 16));
            v2 = _mm512_add_ps(v2, _mm512_maskz_loadu_ps(m2, cr + 32));
        }
        _mm512_mask_storeu_ps(cr, m0, v0);
        _mm512_mask_storeu_ps(cr + 16, m1, v1);
        _mm512_mask_storeu_ps(cr + 32, m2, v2);
    }
}

/* C (M x N, ldc) = A . B (+ bias per row), A packed [M/8][K][8]; the 48 columns of block q
 * of B row k start at bp + q*qstride + boff[k]: packed panels (qstride K*48, boff k*48) or
 * plain rows (qstride 48, boff k*ld). beta = 1 accumulates into C. K is cut in blocks of
 * <= 256 so a B block stays in L1. */
static void TGT gemm_nn(int64_t M, int64_t N, int64_t K, const float *ap, const float *bp,
                        int64_t qstride, const int64_t *boff, float *c, int64_t ldc,
                        const float *bias, int beta)
{
    const int64_t nkb = (K + 255) / 256, kb = (K + nkb - 1) / nkb;
    for (int64_t k0 = 0; k0 < K; k0 += kb) {
        const int64_t kc = imin(kb, K - k0);
        for (int64_t q = 0; q * NR < N; q++) {
            const int ncols = (int)imin(NR, N - q * NR);
            for (int64_t mp = 0; mp * MR < M; mp++) {
                const int mrows = (int)imin(MR, M - mp * MR);
                ukr_nn(kc, ap + (mp * K + k0) * MR, bp + q * qstride, boff + k0,
                       c + mp * MR * ldc + q * NR, ldc, mrows, ncols, beta || k0 > 0,
                       k0 == 0 && bias ? bias + mp * MR : NULL);
            }
        }
    }
}

/* c[i][n] += dot(a_i, b_n) over k elements for the rows given by pointer (4 x 5 block). */
static void TGT ukr_nt(int64_t k, const float *const *a, const float *const *b, float *c,
                       int64_t ldc, int mrows, int ncols)
{
    __m512 acc[MT][NT];
#pragma GCC unroll 4
    for (int i = 0; i < MT; i++)
#pragma GCC unroll 5
        for (int n = 0; n < NT; n++) acc[i][n] = _mm512_setzero_ps();
    int64_t j = 0;
    for (; j + 16 <= k; j += 16) {
        __m512 av[MT], bv[NT];
#pragma GCC unroll 4
        for (int i = 0; i < MT; i++) av[i] = _mm512_loadu_ps(a[i] + j);
#pragma GCC unroll 5
        for (int n = 0; n < NT; n++) bv[n] = _mm512_loadu_ps(b[n] + j);
#pragma GCC unroll 4
        for (int i = 0; i < MT; i++)
#pragma GCC unroll 5
            for (int n = 0; n < NT; n++) acc[i][n] = _mm512_fmadd_ps(av[i], bv[n], acc[i][n]);
    }
    if (j < k) {
        const __mmask16 m = (__mmask16)((1u << (k - j)) - 1);
        __m512 av[MT], bv[NT];
#pragma GCC unroll 4
        for (int i = 0; i < MT; i++) av[i] = _mm512_maskz_loadu_ps(m, a[i] + j);
#pragma GCC unroll 5
        for (int n = 0; n < NT; n++) bv[n] = _mm512_maskz_loadu_ps(m, b[n] + j);
#pragma GCC unroll 4
        for (int i = 0; i < MT; i++)
#pragma GCC unroll 5
            for (int n = 0; n < NT; n++) acc[i][n] = _mm512_fmadd_ps(av[i], bv[n], acc[i][n]);
    }
    for (int i = 0; i < mrows; i++)
        for (int n = 0; n < ncols; n++) c[i * ldc + n] += _mm512_reduce_add_ps(acc[i][n]);
}

/* C (M x N, ldc) += A (M x k, lda) . B^T, row n of B (k floats) at b + boff[n]. The rows of
 * B are taken in chunks that stay in L2 while every row block of A passes over them. */
static void gemm_nt(int64_t M, int64_t N, int64_t k, const float *a, int64_t lda, const float *b,
                    const int64_t *boff, float *c, int64_t ldc)
{
    const int64_t chunk = imax(NT, (256 * 1024 / (imax(k, 1) * 4)) / NT * NT);
    for (int64_t n0 = 0; n0 < N; n0 += chunk) {
        const int64_t n1 = imin(N, n0 + chunk);
        for (int64_t m0 = 0; m0 < M; m0 += MT) {
            const int mrows = (int)imin(MT, M - m0);
            const float *ar[MT];
            for (int i = 0; i < MT; i++) ar[i] = a + (m0 + (i < mrows ? i : 0)) * lda;
            for (int64_t n = n0; n < n1; n += NT) {
                const int ncols = (int)imin(NT, n1 - n);
                const float *br[NT];
                for (int t = 0; t < NT; t++) br[t] = b + boff[n + (t < ncols ? t : 0)];
                ukr_nt(k, ar, br, c + m0 * ldc + n, ldc, mrows, ncols);
            }
        }
    }
}

/* table[i] = i * step, i < n */
static void fill_steps(int64_t *table, int64_t n, int64_t step)
{
    for (int64_t i = 0; i < n; i++) table[i] = i * step;
}

/* ---------------------------------------------- stride 1: direct, no columns ---- */

/* A stride-1 convolution read in padded coordinates: with the input zero-padded to
 * [Ci][Dp][Hp][Wp], output voxel (o0,o1,o2) sits at q = o0*Hp*Wp + o1*Wp + o2 and its tap
 * (a,b,e) at q + a*d0*Hp*Wp + b*d1*Wp + e*d2: a constant offset per tap. So the GEMM's B
 * rows are the padded input itself, shifted: no vol2col. The price is the voxels computed
 * at q with o1 >= out1 or o2 >= out2 (thrown away): 4% at 112x112x80, 27% at 14x14x10.
 * Work is cut into slabs of output planes; each thread pads its slab's input planes. */
typedef struct direct_geo {
    int64_t Hp, Wp, HpWp;
    int64_t nz;    /* output planes per slab */
    int64_t zin;   /* input planes a slab needs: nz + d0 (k0 - 1) */
    int64_t cs;    /* per-channel stride of a padded slab (zin*HpWp + slack) */
    int64_t slabs; /* per sample */
} direct_geo;

static direct_geo direct_plan(diffcl_context *ctx, const dc_cgeo *g, int64_t extra_per_plane)
{
    direct_geo d;
    const int nt = dc_threads(ctx) > 0 ? dc_threads(ctx) : 1;
    /* high-side padding also covers outputs past the natural size (a transposed
     * convolution's output_padding, run as this convolution's adjoint) */
    d.Hp = imax(g->in[1] + 2 * g->p[1], g->out[1] + (int64_t)g->d[1] * (g->k[1] - 1));
    d.Wp = imax(g->in[2] + 2 * g->p[2], g->out[2] + (int64_t)g->d[2] * (g->k[2] - 1));
    d.HpWp = d.Hp * d.Wp;
    const int64_t halo = (int64_t)g->d[0] * (g->k[0] - 1);
    size_t budget;
    int64_t knob_min;
    dc_conv_tiling_knobs(ctx, &budget, &knob_min);
    if (!budget) budget = (size_t)4 << 20;
    const int64_t plane_bytes = (g->ci + extra_per_plane) * d.HpWp * (int64_t)sizeof(float);
    int64_t nz = (int64_t)budget / imax(plane_bytes, 1) - halo;
    nz = imax(1, imin(nz, g->out[0]));
    if (knob_min > 0) nz = 1; /* tests: smallest slabs */
    /* enough slabs to keep every thread busy */
    if (nt > 1 && g->n * ((g->out[0] + nz - 1) / nz) < 4 * nt) {
        const int64_t want = (4 * nt + g->n - 1) / imax(g->n, 1);
        nz = imax(1, imin(nz, (g->out[0] + want - 1) / want));
    }
    d.nz = nz;
    d.zin = nz + halo;
    d.cs = round_up(d.zin * d.HpWp + 64, 16);
    d.slabs = (g->out[0] + nz - 1) / nz;
    return d;
}

/* Zero-padded copy of input planes [z0 - p0, z0 - p0 + zin) of x (one sample) into dst
 * ([C][zin][Hp][Wp], channel stride cs, slack zeroed). */
static void TGT pad_slab(const dc_cgeo *g, const direct_geo *d, const float *restrict x, int64_t C,
                         int64_t z0, float *restrict dst)
{
    const int64_t in0 = g->in[0], in1 = g->in[1], in2 = g->in[2];
    const int64_t p1 = g->p[1], p2 = g->p[2];
    for (int64_t c = 0; c < C; c++) {
        float *dc = dst + c * d->cs;
        const float *xc = x + c * in0 * in1 * in2;
        for (int64_t z = 0; z < d->zin; z++) {
            const int64_t i0 = z0 + z - g->p[0];
            float *dz = dc + z * d->HpWp;
            if (i0 < 0 || i0 >= in0) {
                copy_run(dz, NULL, 1, d->HpWp);
                continue;
            }
            copy_run(dz, NULL, 1, p1 * d->Wp);
            for (int64_t y = 0; y < in1; y++) {
                float *dr = dz + (y + p1) * d->Wp;
                copy_run(dr, NULL, 1, p2);
                copy_run(dr + p2, xc + (i0 * in1 + y) * in2, 1, in2);
                copy_run(dr + p2 + in2, NULL, 1, d->Wp - p2 - in2);
            }
            copy_run(dz + (in1 + p1) * d->Wp, NULL, 1, (d->Hp - in1 - p1) * d->Wp);
        }
        copy_run(dc + d->zin * d->HpWp, NULL, 1, d->cs - d->zin * d->HpWp);
    }
}

/* tap offsets in a padded slab: boff[c*kvol + tap] = c*cs + a*d0*HpWp + b*d1*Wp + e*d2 */
static void tap_offsets(const dc_cgeo *g, const direct_geo *d, int64_t C, int64_t *boff)
{
    int64_t t = 0;
    for (int64_t c = 0; c < C; c++)
        for (int a = 0; a < g->k[0]; a++)
            for (int b = 0; b < g->k[1]; b++)
                for (int e = 0; e < g->k[2]; e++)
                    boff[t++] = c * d->cs + (int64_t)a * g->d[0] * d->HpWp +
                                (int64_t)b * g->d[1] * d->Wp + (int64_t)e * g->d[2];
}

/* Copy the valid voxels of rows [0, mrows) of a block computed at padded positions
 * [q0, q0+nq) of a slab starting at output plane z0 (row i at cbuf + i*ldc) into output
 * channels o_first.. of y (one sample), adding bias. */
static void scatter_block(const dc_cgeo *g, const direct_geo *d, const float *cbuf, int64_t ldc,
                          int64_t mrows, int64_t q0, int64_t nq, int64_t z0, float *y,
                          int64_t o_first, const float *bias)
{
    const int64_t P = dc_cgeo_out_vox(g), plane = g->out[1] * g->out[2];
    int64_t zz = q0 / d->HpWp, rem = q0 - zz * d->HpWp, yy = rem / d->Wp, xx = rem - yy * d->Wp;
    int64_t j = 0;
    while (j < nq) {
        const int64_t run = imin(d->Wp - xx, nq - j);
        if (yy < g->out[1] && xx < g->out[2]) {
            const int64_t n = imin(run, g->out[2] - xx);
            const int64_t dst = (z0 + zz) * plane + yy * g->out[2] + xx;
            for (int64_t i = 0; i < mrows; i++) {
                float *yr = y + (o_first + i) * P + dst;
                const float *cr = cbuf + i * ldc + j;
                const float bv = bias ? bias[o_first + i] : 0.0f;
                for (int64_t t = 0; t < n; t++) yr[t] = cr[t] + bv;
            }
        }
        j += run;
        xx = 0;
        if (++yy == d->Hp) {
            yy = 0;
            zz++;
        }
    }
}

/* Blocking of direct_fwd: input channels in chunks whose taps for one 48-wide block stay
 * in L1; with several chunks, the results of `sb` blocks accumulate in a buffer of
 * co x (sb*48) (kept in L2) before they are scattered. */
typedef struct direct_blocks {
    int64_t cchunk; /* input channels per chunk */
    int64_t sb;     /* 48-wide blocks per super-block */
} direct_blocks;

static direct_blocks direct_blocking(const dc_cgeo *g)
{
    direct_blocks b;
    const int64_t rows = (int64_t)g->k[0] * g->k[1], width = NR + (int64_t)g->d[2] * (g->k[2] - 1);
    b.cchunk = imax(1, (32 * 1024) / (rows * width * (int64_t)sizeof(float)));
    if (b.cchunk >= g->ci) {
        b.cchunk = g->ci;
        b.sb = 1;
    } else {
        b.sb = imax(1, imin(8, (256 * 1024) / (round_up(g->co, MR) * NR * (int64_t)sizeof(float))));
    }
    return b;
}

/* y = conv(x, W) + bias for a stride-1 convolution; ap: W packed in 8-row panels. */
static diffcl_status direct_fwd(diffcl_context *ctx, const dc_cgeo *g, const float *x,
                                const float *ap, const float *bias, float *y, float *ws)
{
    const int64_t kvol = dc_cgeo_kvol(g), K = g->ci * kvol, NI = dc_cgeo_in_vox(g);
    const int64_t P = dc_cgeo_out_vox(g);
    const direct_geo d = direct_plan(ctx, g, 0);
    const direct_blocks bl = direct_blocking(g);
    const int nt = dc_threads(ctx) > 0 ? dc_threads(ctx) : 1;
    const int64_t ldc = bl.sb * NR, cbuf_elems = round_up(g->co, MR) * ldc;
    const int64_t slab_elems = g->ci * d.cs + cbuf_elems;
    int64_t *boff = (int64_t *)(ws + nt * slab_elems);
    tap_offsets(g, &d, g->ci, boff);
    DC_OMP_PARALLEL_FOR_DYNAMIC(nt)
    for (int64_t it = 0; it < g->n * d.slabs; it++) {
        const int64_t n = it / d.slabs, z0 = (it % d.slabs) * d.nz, nz = imin(d.nz, g->out[0] - z0);
        float *xp = ws + (int64_t)dc_omp_thread() * slab_elems, *cbuf = xp + g->ci * d.cs;
        pad_slab(g, &d, x + n * g->ci * NI, g->ci, z0, xp);
        const int64_t qn = (nz - 1) * d.HpWp + (g->out[1] - 1) * d.Wp + g->out[2];
        for (int64_t s0 = 0; s0 < qn; s0 += ldc) {
            const int64_t sn = imin(ldc, qn - s0);
            for (int64_t c0 = 0; c0 < g->ci; c0 += bl.cchunk) {
                const int64_t kc = imin(bl.cchunk, g->ci - c0) * kvol, k0 = c0 * kvol;
                for (int64_t q0 = 0; q0 < sn; q0 += NR)
                    for (int64_t mp = 0; mp * MR < g->co; mp++)
                        ukr_nn(kc, ap + (mp * K + k0) * MR, xp + s0 + q0, boff + k0,
                               cbuf + mp * MR * ldc + q0, ldc, MR, NR, c0 > 0, NULL);
            }
            scatter_block(g, &d, cbuf, ldc, g->co, s0, sn, z0, y + n * g->co * P, 0, bias);
        }
    }
    return DIFFCL_OK;
}

/* workspace of direct_fwd in bytes */
static size_t direct_fwd_ws(diffcl_context *ctx, const dc_cgeo *g)
{
    const direct_geo d = direct_plan(ctx, g, 0);
    const direct_blocks bl = direct_blocking(g);
    const int nt = dc_threads(ctx) > 0 ? dc_threads(ctx) : 1;
    return (size_t)(nt * (g->ci * d.cs + round_up(g->co, MR) * bl.sb * NR)) * sizeof(float) +
           (size_t)(g->ci * dc_cgeo_kvol(g)) * sizeof(int64_t);
}

/* dW = dy (*) x for a stride-1 convolution: both placed in padded coordinates, dy with
 * zeros at the thrown-away positions; B rows are taps of the padded input (no columns). */
static diffcl_status direct_dw(diffcl_context *ctx, const dc_cgeo *g, const float *x,
                               const float *dy, float *dw)
{
    const int64_t K = g->ci * dc_cgeo_kvol(g), NI = dc_cgeo_in_vox(g), P = dc_cgeo_out_vox(g);
    const direct_geo d = direct_plan(ctx, g, g->co);
    const int nt = dc_threads(ctx) > 0 ? dc_threads(ctx) : 1;
    const int64_t wn = g->co * K, ys = round_up(d.nz * d.HpWp, 16);
    const int64_t slab_elems = g->ci * d.cs + g->co * ys;
    /* the offset table first: it needs 8-byte alignment */
    const size_t tbytes = (size_t)round_up(K, 8) * sizeof(int64_t);
    const size_t bytes = tbytes + (size_t)(nt * slab_elems + (nt - 1) * wn) * sizeof(float);
    int64_t *boff = dc_scratch(ctx, bytes);
    if (!boff) return DIFFCL_ERR_OUT_OF_MEMORY;
    float *ws = (float *)((char *)boff + tbytes);
    float *accs = ws + nt * slab_elems;
    tap_offsets(g, &d, g->ci, boff);
    memset(dw, 0, (size_t)wn * sizeof(float));
    const int64_t plane = g->out[1] * g->out[2];
    DC_OMP_PARALLEL(nt)
    {
        const int tid = dc_omp_thread();
        float *acc = tid == 0 ? dw : accs + (int64_t)(tid - 1) * wn;
        if (tid) memset(acc, 0, (size_t)wn * sizeof(float));
        float *xp = ws + (int64_t)tid * slab_elems, *yp = xp + g->ci * d.cs;
        DC_OMP_FOR /* static: the same partial sums every run (deterministic) */
            for (int64_t it = 0; it < g->n * d.slabs; it++)
        {
            const int64_t n = it / d.slabs, z0 = (it % d.slabs) * d.nz,
                          nz = imin(d.nz, g->out[0] - z0);
            pad_slab(g, &d, x + n * g->ci * NI, g->ci, z0, xp);
            /* dy of the slab in padded coordinates, zeros elsewhere */
            for (int64_t o = 0; o < g->co; o++) {
                float *yo = yp + o * ys;
                copy_run(yo, NULL, 1, ys);
                for (int64_t z = 0; z < nz; z++)
                    for (int64_t r = 0; r < g->out[1]; r++)
                        copy_run(yo + z * d.HpWp + r * d.Wp,
                                 dy + (n * g->co + o) * P + (z0 + z) * plane + r * g->out[2], 1,
                                 g->out[2]);
            }
            const int64_t qn = (nz - 1) * d.HpWp + (g->out[1] - 1) * d.Wp + g->out[2];
            /* the dot products run along q in chunks so the rows stay in cache */
            for (int64_t q0 = 0; q0 < qn; q0 += 2048) {
                const int64_t kq = imin(2048, qn - q0);
                gemm_nt(g->co, K, kq, yp + q0, ys, xp + q0, boff, acc, K);
            }
        }
        if (nt > 1) {
            DC_OMP_FOR
            for (int64_t i = 0; i < wn; i++) {
                float sum = dw[i];
                for (int a = 0; a < nt - 1; a++) sum += accs[(int64_t)a * wn + i];
                dw[i] = sum;
            }
        }
    }
    return DIFFCL_OK;
}

/* ------------------------------------------------------------------ tiling ---- */

typedef struct tiles512 {
    int64_t cols;  /* voxels per tile: a multiple of NR (the last tile of a sample may be less) */
    int64_t tiles; /* per sample */
    int threads;
} tiles512;

/* @p per_col_bytes: workspace bytes per tile column; @p min_cols: smallest useful tile. */
static tiles512 plan512(diffcl_context *ctx, const dc_cgeo *g, int64_t per_col_bytes,
                        int64_t min_cols)
{
    tiles512 t;
    const int nt = dc_threads(ctx) > 0 ? dc_threads(ctx) : 1;
    const int64_t P = dc_cgeo_out_vox(g);
    size_t budget;
    int64_t knob_min;
    dc_conv_tiling_knobs(ctx, &budget, &knob_min);
    if (!budget) budget = (size_t)1 << 20; /* about an L2: packed, then consumed while hot */
    if (knob_min > 0) min_cols = knob_min; /* tests: exact control */
    int64_t cols = (int64_t)budget / imax(per_col_bytes, 1);
    cols = imax(cols, min_cols);
    const int64_t cap = (int64_t)((size_t)(48 << 20) / (size_t)nt) / imax(per_col_bytes, 1);
    cols = imin(cols, cap);
    cols = imax(NR, cols / NR * NR);
    cols = imin(cols, round_up(P, NR));
    /* enough tiles to keep every thread busy */
    if (nt > 1 && g->n * ((P + cols - 1) / cols) < 4 * nt) {
        const int64_t want = (4 * nt + g->n - 1) / imax(g->n, 1);
        int64_t c2 = round_up((P + want - 1) / want, NR);
        c2 = imax(c2, imin(round_up(min_cols, NR), cols));
        cols = imin(cols, imax(c2, NR));
    }
    t.cols = cols;
    t.tiles = (P + cols - 1) / cols;
    t.threads = nt;
    return t;
}

/* ------------------------------ kernel == stride: space-to-depth, plain GEMMs ---- */

/* A convolution whose windows tile the input (kernel == stride, no padding, e.g. the V-Net's
 * 2x2x2 stride-2 down-sampling) is a 1x1x1 convolution of the input rearranged
 * space-to-depth: row (c,a,b,e), column (o0,o1,o2) = x[c][o0*k0+a][o1*k1+b][o2*k2+e]. Done
 * per slab of output planes (bounded workspace), the rows are then read by the GEMM as they
 * are; the input gradient is the GEMM W^T dy followed by the inverse (depth-to-space). */

/* d0[i] = s[2i], d1[i] = s[2i+1], i < n */
static inline void TGT deinterleave2(const float *restrict s, float *restrict d0,
                                     float *restrict d1, int64_t n)
{
    const __m512i ev = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i od = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 lo = _mm512_loadu_ps(s + 2 * i), hi = _mm512_loadu_ps(s + 2 * i + 16);
        _mm512_storeu_ps(d0 + i, _mm512_permutex2var_ps(lo, ev, hi));
        _mm512_storeu_ps(d1 + i, _mm512_permutex2var_ps(lo, od, hi));
    }
    if (i < n) {
        const int64_t m = n - i, need = 2 * m; /* s[2i .. 2n) */
        const __mmask16 ml = (__mmask16)(need >= 16 ? 0xFFFF : (1u << need) - 1);
        const __mmask16 mh = (__mmask16)(need > 16 ? (1u << (need - 16)) - 1 : 0);
        const __mmask16 mo = (__mmask16)((1u << m) - 1);
        const __m512 lo = _mm512_maskz_loadu_ps(ml, s + 2 * i),
                     hi = _mm512_maskz_loadu_ps(mh, s + 2 * i + 16);
        _mm512_mask_storeu_ps(d0 + i, mo, _mm512_permutex2var_ps(lo, ev, hi));
        _mm512_mask_storeu_ps(d1 + i, mo, _mm512_permutex2var_ps(lo, od, hi));
    }
}

/* d[2i] = s0[i], d[2i+1] = s1[i], i < n */
static inline void TGT interleave2(const float *restrict s0, const float *restrict s1,
                                   float *restrict d, int64_t n)
{
    const __m512i lo_i = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i hi_i =
        _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 a = _mm512_loadu_ps(s0 + i), b = _mm512_loadu_ps(s1 + i);
        _mm512_storeu_ps(d + 2 * i, _mm512_permutex2var_ps(a, lo_i, b));
        _mm512_storeu_ps(d + 2 * i + 16, _mm512_permutex2var_ps(a, hi_i, b));
    }
    if (i < n) {
        const int64_t m = n - i, need = 2 * m;
        const __mmask16 mi = (__mmask16)((1u << m) - 1);
        const __mmask16 ml = (__mmask16)(need >= 16 ? 0xFFFF : (1u << need) - 1);
        const __mmask16 mh = (__mmask16)(need > 16 ? (1u << (need - 16)) - 1 : 0);
        const __m512 a = _mm512_maskz_loadu_ps(mi, s0 + i), b = _mm512_maskz_loadu_ps(mi, s1 + i);
        _mm512_mask_storeu_ps(d + 2 * i, ml, _mm512_permutex2var_ps(a, lo_i, b));
        _mm512_mask_storeu_ps(d + 2 * i + 16, mh, _mm512_permutex2var_ps(a, hi_i, b));
    }
}

/* space-to-depth of output planes [z0, z0+nz) of one sample into rows of length ld */
static void TGT s2d_slab(const dc_cgeo *g, const float *restrict x, int64_t z0, int64_t nz,
                         float *restrict dst, int64_t ld)
{
    const int64_t in1 = g->in[1], in2 = g->in[2], NI = dc_cgeo_in_vox(g), L = g->out[2];
    const int k0 = g->k[0], k1 = g->k[1], k2 = g->k[2];
    const int64_t plane = g->out[1] * L, kvol = dc_cgeo_kvol(g);
    for (int64_t c = 0; c < g->ci; c++)
        for (int a = 0; a < k0; a++)
            for (int64_t z = 0; z < nz; z++)
                for (int b = 0; b < k1; b++)
                    for (int64_t o1 = 0; o1 < g->out[1]; o1++) {
                        const float *src =
                            x + c * NI + (((z0 + z) * k0 + a) * in1 + o1 * k1 + b) * in2;
                        const int64_t r = c * kvol + ((int64_t)a * k1 + b) * k2,
                                      j = z * plane + o1 * L;
                        if (k2 == 2)
                            deinterleave2(src, dst + r * ld + j, dst + (r + 1) * ld + j, L);
                        else
                            for (int e = 0; e < k2; e++)
                                copy_run(dst + (r + e) * ld + j, src + e, k2, L);
                    }
}

/* depth-to-space (the inverse) of rows of length ld into output planes [z0, z0+nz) of dx */
static void TGT d2s_slab(const dc_cgeo *g, const float *restrict col, int64_t ld, int64_t z0,
                         int64_t nz, float *restrict dx)
{
    const int64_t in1 = g->in[1], in2 = g->in[2], NI = dc_cgeo_in_vox(g), L = g->out[2];
    const int k0 = g->k[0], k1 = g->k[1], k2 = g->k[2];
    const int64_t plane = g->out[1] * L, kvol = dc_cgeo_kvol(g);
    for (int64_t c = 0; c < g->ci; c++)
        for (int a = 0; a < k0; a++)
            for (int64_t z = 0; z < nz; z++)
                for (int b = 0; b < k1; b++)
                    for (int64_t o1 = 0; o1 < g->out[1]; o1++) {
                        float *d = dx + c * NI + (((z0 + z) * k0 + a) * in1 + o1 * k1 + b) * in2;
                        const int64_t r = c * kvol + ((int64_t)a * k1 + b) * k2,
                                      j = z * plane + o1 * L;
                        if (k2 == 2) {
                            interleave2(col + r * ld + j, col + (r + 1) * ld + j, d, L);
                        } else {
                            for (int e = 0; e < k2; e++) {
                                const float *s = col + (r + e) * ld + j;
                                for (int64_t o = 0; o < L; o++) d[o * k2 + e] = s[o];
                            }
                        }
                    }
}

/* slabs of output planes for the space-to-depth paths */
static int64_t s2d_planes(diffcl_context *ctx, const dc_cgeo *g, int64_t K)
{
    const int nt = dc_threads(ctx) > 0 ? dc_threads(ctx) : 1;
    size_t budget;
    int64_t knob_min;
    dc_conv_tiling_knobs(ctx, &budget, &knob_min);
    if (!budget) budget = (size_t)2 << 20;
    const int64_t plane = g->out[1] * g->out[2];
    int64_t nz = (int64_t)budget / imax(K * plane * (int64_t)sizeof(float), 1);
    nz = imax(1, imin(nz, g->out[0]));
    if (knob_min > 0) nz = 1;
    if (nt > 1 && g->n * ((g->out[0] + nz - 1) / nz) < 4 * nt) {
        const int64_t want = (4 * nt + g->n - 1) / imax(g->n, 1);
        nz = imax(1, imin(nz, (g->out[0] + want - 1) / want));
    }
    return nz;
}

static diffcl_status s2d_fwd(diffcl_context *ctx, const dc_cgeo *g, const float *x, const float *w,
                             const float *bias, float *y)
{
    const int64_t K = g->ci * dc_cgeo_kvol(g), NI = dc_cgeo_in_vox(g), P = dc_cgeo_out_vox(g);
    const int64_t plane = g->out[1] * g->out[2], nz = s2d_planes(ctx, g, K);
    const int64_t ld = round_up(nz * plane, 16), slabs = (g->out[0] + nz - 1) / nz;
    const int nt = dc_threads(ctx) > 0 ? dc_threads(ctx) : 1;
    const int64_t a_elems = round_up(g->co, MR) * K,
                  tbytes = round_up(K, 8) * (int64_t)sizeof(int64_t);
    int64_t *boff =
        dc_scratch(ctx, (size_t)tbytes + (size_t)(a_elems + nt * K * ld) * sizeof(float));
    if (!boff) return DIFFCL_ERR_OUT_OF_MEMORY;
    float *ap = (float *)((char *)boff + tbytes), *cols = ap + a_elems;
    fill_steps(boff, K, ld);
    pack_a(w, g->co, K, 0, ap, nt);
    DC_OMP_PARALLEL_FOR_DYNAMIC(nt)
    for (int64_t it = 0; it < g->n * slabs; it++) {
        const int64_t n = it / slabs, z0 = (it % slabs) * nz, m = imin(nz, g->out[0] - z0);
        float *col = cols + (int64_t)dc_omp_thread() * K * ld;
        s2d_slab(g, x + n * g->ci * NI, z0, m, col, ld);
        gemm_nn(g->co, m * plane, K, ap, col, NR, boff, y + n * g->co * P + z0 * plane, P, bias, 0);
    }
    return DIFFCL_OK;
}

static diffcl_status s2d_bwd_data(diffcl_context *ctx, const dc_cgeo *g, const float *dy,
                                  const float *w, float *dx)
{
    const int64_t K = g->ci * dc_cgeo_kvol(g), NI = dc_cgeo_in_vox(g), P = dc_cgeo_out_vox(g);
    const int64_t plane = g->out[1] * g->out[2], nz = s2d_planes(ctx, g, K);
    const int64_t ld = round_up(nz * plane, 16), slabs = (g->out[0] + nz - 1) / nz;
    const int nt = dc_threads(ctx) > 0 ? dc_threads(ctx) : 1;
    const int64_t a_elems = round_up(K, MR) * g->co,
                  tbytes = round_up(g->co, 8) * (int64_t)sizeof(int64_t);
    int64_t *boff =
        dc_scratch(ctx, (size_t)tbytes + (size_t)(a_elems + nt * K * ld) * sizeof(float));
    if (!boff) return DIFFCL_ERR_OUT_OF_MEMORY;
    float *ap = (float *)((char *)boff + tbytes), *cols = ap + a_elems;
    fill_steps(boff, g->co, P);
    pack_a(w, K, g->co, 1, ap, nt);
    const int exact = g->in[0] == g->out[0] * g->k[0] && g->in[1] == g->out[1] * g->k[1] &&
                      g->in[2] == g->out[2] * g->k[2];
    DC_OMP_PARALLEL(nt)
    {
        if (!exact) { /* input voxels no window covers get zero */
            DC_OMP_FOR
            for (int64_t i = 0; i < g->n * g->ci; i++)
                memset(dx + i * NI, 0, (size_t)NI * sizeof(float));
        }
        DC_OMP_FOR_DYNAMIC
        for (int64_t it = 0; it < g->n * slabs; it++) {
            const int64_t n = it / slabs, z0 = (it % slabs) * nz, m = imin(nz, g->out[0] - z0);
            float *col = cols + (int64_t)dc_omp_thread() * K * ld;
            gemm_nn(K, m * plane, g->co, ap, dy + n * g->co * P + z0 * plane, NR, boff, col, ld,
                    NULL, 0);
            d2s_slab(g, col, ld, z0, m, dx + n * g->ci * NI);
        }
    }
    return DIFFCL_OK;
}

static diffcl_status s2d_dw(diffcl_context *ctx, const dc_cgeo *g, const float *x, const float *dy,
                            float *dw)
{
    const int64_t K = g->ci * dc_cgeo_kvol(g), NI = dc_cgeo_in_vox(g), P = dc_cgeo_out_vox(g);
    const int64_t plane = g->out[1] * g->out[2], nz = s2d_planes(ctx, g, K);
    const int64_t ld = round_up(nz * plane, 16), slabs = (g->out[0] + nz - 1) / nz;
    const int nt = dc_threads(ctx) > 0 ? dc_threads(ctx) : 1;
    const int64_t wn = g->co * K, tbytes = round_up(K, 8) * (int64_t)sizeof(int64_t);
    int64_t *boff =
        dc_scratch(ctx, (size_t)tbytes + (size_t)(nt * K * ld + (nt - 1) * wn) * sizeof(float));
    if (!boff) return DIFFCL_ERR_OUT_OF_MEMORY;
    float *cols = (float *)((char *)boff + tbytes), *accs = cols + nt * K * ld;
    fill_steps(boff, K, ld);
    memset(dw, 0, (size_t)wn * sizeof(float));
    DC_OMP_PARALLEL(nt)
    {
        const int tid = dc_omp_thread();
        float *acc = tid == 0 ? dw : accs + (int64_t)(tid - 1) * wn;
        if (tid) memset(acc, 0, (size_t)wn * sizeof(float));
        float *col = cols + (int64_t)tid * K * ld;
        DC_OMP_FOR /* static: the same partial sums every run (deterministic) */
            for (int64_t it = 0; it < g->n * slabs; it++)
        {
            const int64_t n = it / slabs, z0 = (it % slabs) * nz, m = imin(nz, g->out[0] - z0);
            s2d_slab(g, x + n * g->ci * NI, z0, m, col, ld);
            gemm_nt(g->co, K, m * plane, dy + n * g->co * P + z0 * plane, P, col, boff, acc, K);
        }
        if (nt > 1) {
            DC_OMP_FOR
            for (int64_t i = 0; i < wn; i++) {
                float sum = dw[i];
                for (int a = 0; a < nt - 1; a++) sum += accs[(int64_t)a * wn + i];
                dw[i] = sum;
            }
        }
    }
    return DIFFCL_OK;
}

/* ------------------------ many channels, small planes: vectors along channels ---- */

/* For 32+ output channels on small planes the direct path's padded positions (27% at
 * 14x14x10, 44% at 7x7x5) cost more than a kernel that vectorises along output channels
 * instead: a block of 32 channels x 10 output voxels, each step one (input channel, tap):
 * two weight vectors (32 channels) times ten broadcast inputs read from the padded slab.
 * No position is wasted: the ten voxels are consecutive valid outputs (across rows). */
#define CV 10 /* voxels per block */

/* acc[v][j] (channels 16v.., voxel j) = sum_k wt[k][32] * base[boff[k] + off[j]] */
static void TGT ukr_cvec(int64_t K, const float *restrict wt, const float *restrict base,
                         const int64_t *restrict boff, const int64_t *restrict off,
                         float *restrict out /* [CV][32] */, int beta)
{
    __m512 a0[CV], a1[CV];
    int64_t o[CV];
#pragma GCC unroll 10
    for (int j = 0; j < CV; j++) {
        a0[j] = beta ? _mm512_loadu_ps(out + j * 32) : _mm512_setzero_ps();
        a1[j] = beta ? _mm512_loadu_ps(out + j * 32 + 16) : _mm512_setzero_ps();
        o[j] = off[j];
    }
    for (int64_t k = 0; k < K; k++) {
        const __m512 w0 = _mm512_loadu_ps(wt + k * 32), w1 = _mm512_loadu_ps(wt + k * 32 + 16);
        const float *bk = base + boff[k];
#pragma GCC unroll 10
        for (int j = 0; j < CV; j++) {
            const __m512 xv = _mm512_set1_ps(bk[o[j]]);
            a0[j] = _mm512_fmadd_ps(w0, xv, a0[j]);
            a1[j] = _mm512_fmadd_ps(w1, xv, a1[j]);
        }
    }
#pragma GCC unroll 10
    for (int j = 0; j < CV; j++) {
        _mm512_storeu_ps(out + j * 32, a0[j]);
        _mm512_storeu_ps(out + j * 32 + 16, a1[j]);
    }
}

/* W [Co][K] -> [Co/32][K][32], zero channels past Co (rows read in order). With flip_ci > 0
 * the source is instead the weight [Ci'][flip_ci][kvol] of the convolution whose adjoint
 * this is, and the packed weight its flipped transpose: channel c, k = (o, t) takes
 * src[o][c][kvol-1-t] (Co here = flip_ci, K = Ci' * kvol). */
static void pack_wt32(const float *restrict w, int64_t co, int64_t K, float *restrict wt, int nt,
                      int64_t flip_ci, int64_t kvol)
{
    const int64_t nb = (co + 31) / 32;
    DC_OMP_PARALLEL_FOR(nt)
    for (int64_t b = 0; b < nb; b++)
        for (int i = 0; i < 32; i++) {
            const int64_t c = b * 32 + i;
            float *dst = wt + b * K * 32 + i;
            if (c >= co) {
                for (int64_t k = 0; k < K; k++) dst[k * 32] = 0.0f;
            } else if (!flip_ci) {
                const float *src = w + c * K;
                for (int64_t k = 0; k < K; k++) dst[k * 32] = src[k];
            } else {
                for (int64_t o = 0; o < K / kvol; o++) {
                    const float *src = w + (o * flip_ci + c) * kvol;
                    for (int64_t t = 0; t < kvol; t++) dst[(o * kvol + t) * 32] = src[kvol - 1 - t];
                }
            }
        }
}

/* Input channels per pass: the weights of one 32-channel block for a pass stay in L2. */
static int64_t cvec_chunk(const diffcl_context *ctx, const dc_cgeo *g)
{
    const int64_t kvol = dc_cgeo_kvol(g);
    size_t budget;
    int64_t knob_min;
    dc_conv_tiling_knobs(ctx, &budget, &knob_min);
    if (knob_min > 0) return 1; /* tests: every pass path */
    return imax(1, imin(g->ci, (256 * 1024) / (kvol * 32 * (int64_t)sizeof(float))));
}

/* voxels per slab of the channel-vectorised path: with several passes the partial sums of
 * a slab ([Co/32][voxels][32]) are kept, so the slab is also bounded by them */
static direct_geo cvec_plan(diffcl_context *ctx, const dc_cgeo *g)
{
    const int64_t plane = g->out[1] * g->out[2];
    const int64_t hpwp = (g->in[1] + 2 * g->p[1]) * (g->in[2] + 2 * g->p[2]);
    const int64_t extra =
        cvec_chunk(ctx, g) < g->ci ? (round_up(g->co, 32) * plane + hpwp - 1) / imax(hpwp, 1) : 0;
    return direct_plan(ctx, g, extra);
}

static size_t cvec_fwd_ws(diffcl_context *ctx, const dc_cgeo *g)
{
    const direct_geo d = cvec_plan(ctx, g);
    const int nt = dc_threads(ctx) > 0 ? dc_threads(ctx) : 1;
    const int64_t K = g->ci * dc_cgeo_kvol(g), plane = g->out[1] * g->out[2];
    const int64_t acc =
        cvec_chunk(ctx, g) < g->ci ? round_up(g->co, 32) * round_up(d.nz * plane, CV) : CV * 32;
    return (size_t)(round_up(g->co, 32) * K + nt * (g->ci * d.cs + acc)) * sizeof(float) +
           (size_t)round_up(K, 8) * sizeof(int64_t);
}

/* flip: w is the weight of the convolution whose input gradient this is (see pack_wt32) */
static diffcl_status cvec_fwd(diffcl_context *ctx, const dc_cgeo *g, const float *x, const float *w,
                              const float *bias, float *y, int flip)
{
    const int64_t kvol = dc_cgeo_kvol(g), K = g->ci * kvol, NI = dc_cgeo_in_vox(g);
    const int64_t P = dc_cgeo_out_vox(g), plane = g->out[1] * g->out[2], nb = (g->co + 31) / 32;
    const direct_geo d = cvec_plan(ctx, g);
    const int64_t chunk = cvec_chunk(ctx, g), passes = (g->ci + chunk - 1) / chunk;
    const int nt = dc_threads(ctx) > 0 ? dc_threads(ctx) : 1;
    const int64_t tbytes = round_up(K, 8) * (int64_t)sizeof(int64_t);
    const int64_t nvmax = round_up(d.nz * plane, CV);
    const int64_t acc_elems = passes > 1 ? round_up(g->co, 32) * nvmax : CV * 32;
    int64_t *boff = dc_scratch(ctx, cvec_fwd_ws(ctx, g));
    if (!boff) return DIFFCL_ERR_OUT_OF_MEMORY;
    float *wt = (float *)((char *)boff + tbytes), *tw = wt + round_up(g->co, 32) * K;
    const int64_t per_thread = g->ci * d.cs + acc_elems;
    tap_offsets(g, &d, g->ci, boff);
    pack_wt32(w, g->co, K, wt, nt, flip ? g->co : 0, kvol);
    DC_OMP_PARALLEL_FOR_DYNAMIC(nt)
    for (int64_t it = 0; it < g->n * d.slabs; it++) {
        const int64_t n = it / d.slabs, z0 = (it % d.slabs) * d.nz, nz = imin(d.nz, g->out[0] - z0);
        float *xp = tw + (int64_t)dc_omp_thread() * per_thread, *acc = xp + g->ci * d.cs;
        pad_slab(g, &d, x + n * g->ci * NI, g->ci, z0, xp);
        const int64_t nv = nz * plane;
        float *yn = y + n * g->co * P + z0 * plane;
        for (int64_t pass = 0; pass < passes; pass++) {
            const int64_t k0 = pass * chunk * kvol, kc = imin(chunk, g->ci - pass * chunk) * kvol;
            for (int64_t b = 0; b < nb; b++)
                for (int64_t v0 = 0; v0 < nv; v0 += CV) {
                    const int64_t cnt = imin(CV, nv - v0);
                    int64_t off[CV], q0 = 0;
                    for (int j = 0; j < CV; j++) {
                        const int64_t v = v0 + (j < cnt ? j : 0);
                        const int64_t z = v / plane, r = v - z * plane, yy = r / g->out[2];
                        const int64_t q = z * d.HpWp + yy * d.Wp + (r - yy * g->out[2]);
                        if (j == 0) q0 = q;
                        off[j] = q - q0;
                    }
                    float *tile = passes > 1 ? acc + (b * nvmax + v0) * 32 : acc;
                    ukr_cvec(kc, wt + (b * K + k0) * 32, xp + q0, boff + k0, off, tile, pass > 0);
                    if (pass < passes - 1) continue;
                    const int64_t oc_n = imin(32, g->co - b * 32);
                    for (int64_t i = 0; i < oc_n; i++) {
                        const int64_t oc = b * 32 + i;
                        const float bv = bias ? bias[oc] : 0.0f;
                        float *yr = yn + oc * P + v0;
                        for (int64_t j = 0; j < cnt; j++) yr[j] = tile[j * 32 + i] + bv;
                    }
                }
        }
    }
    return DIFFCL_OK;
}

/* dy of a slab ([channels][voxels], row length P) as [voxels][cp], zero channels past co,
 * in blocks of 64 voxels: the layout the channel-vector weight-gradient kernel reads. */
static void transpose_dy(const float *dys, int64_t P, int64_t nv, int64_t co, int64_t cp,
                         float *dyt)
{
    for (int64_t v0 = 0; v0 < nv; v0 += 64) {
        const int64_t v1 = imin(nv, v0 + 64);
        for (int64_t o = 0; o < cp; o++)
            for (int64_t v = v0; v < v1; v++) dyt[v * cp + o] = o < co ? dys[o * P + v] : 0.0f;
    }
}

/* dW[oc][k] = sum over the nt threads' partial sums acc[k][oc] (each per_thread apart), in
 * thread order (deterministic). Called inside the kernels' parallel region: the loop is
 * shared among its threads, after the implicit barrier of the accumulation loop. */
static void reduce_dw(const float *tw, int64_t per_thread, int nt, int64_t K, int64_t cp,
                      int64_t co, float *dw)
{
    DC_OMP_FOR
    for (int64_t o = 0; o < co; o++)
        for (int64_t k = 0; k < K; k++) {
            float s = 0;
            for (int t = 0; t < nt; t++) s += tw[(int64_t)t * per_thread + k * cp + o];
            dw[o * K + k] = s;
        }
}

/* Weight gradient with vectors along output channels: dW^T[k][oc] = sum over voxels v of
 * x_pad[k-th (channel, tap) at q_v] * dy[oc][v]; a block is 10 k's x 32 channels whose sums
 * stay in registers over the whole slab (no horizontal reductions). dy of the slab is first
 * transposed to [v][channels]. */
static void TGT ukr_cvec_dw(int64_t nv, const float *restrict dyt, int64_t ldt,
                            const float *restrict xp, const int64_t *restrict boff,
                            const int64_t *restrict qv, float *restrict acc, int64_t ld, int nk)
{
    __m512 a0[CV], a1[CV];
    const float *px[CV];
#pragma GCC unroll 10
    for (int j = 0; j < CV; j++) {
        a0[j] = _mm512_setzero_ps();
        a1[j] = _mm512_setzero_ps();
        px[j] = xp + boff[j < nk ? j : 0];
    }
    for (int64_t v = 0; v < nv; v++) {
        const __m512 d0 = _mm512_loadu_ps(dyt + v * ldt), d1 = _mm512_loadu_ps(dyt + v * ldt + 16);
        const int64_t q = qv[v];
#pragma GCC unroll 10
        for (int j = 0; j < CV; j++) {
            const __m512 xv = _mm512_set1_ps(px[j][q]);
            a0[j] = _mm512_fmadd_ps(d0, xv, a0[j]);
            a1[j] = _mm512_fmadd_ps(d1, xv, a1[j]);
        }
    }
    for (int j = 0; j < nk; j++) {
        float *r = acc + j * ld;
        _mm512_storeu_ps(r, _mm512_add_ps(_mm512_loadu_ps(r), a0[j]));
        _mm512_storeu_ps(r + 16, _mm512_add_ps(_mm512_loadu_ps(r + 16), a1[j]));
    }
}

static diffcl_status cvec_dw(diffcl_context *ctx, const dc_cgeo *g, const float *x, const float *dy,
                             float *dw)
{
    const int64_t K = g->ci * dc_cgeo_kvol(g), NI = dc_cgeo_in_vox(g), P = dc_cgeo_out_vox(g);
    const int64_t plane = g->out[1] * g->out[2], cp = round_up(g->co, 32);
    const int64_t hpwp = (g->in[1] + 2 * g->p[1]) * (g->in[2] + 2 * g->p[2]);
    const direct_geo d = direct_plan(ctx, g, (cp * plane * 2 + hpwp - 1) / imax(hpwp, 1));
    const int nt = dc_threads(ctx) > 0 ? dc_threads(ctx) : 1;
    const int64_t nvmax = d.nz * plane;
    const int64_t per_thread = g->ci * d.cs + nvmax * cp + nvmax * 2 /* qv as int64 */ + K * cp;
    const int64_t tbytes = round_up(K, 8) * (int64_t)sizeof(int64_t);
    int64_t *boff = dc_scratch(ctx, (size_t)tbytes + (size_t)(nt * per_thread) * sizeof(float));
    if (!boff) return DIFFCL_ERR_OUT_OF_MEMORY;
    float *tw = (float *)((char *)boff + tbytes);
    tap_offsets(g, &d, g->ci, boff);
    DC_OMP_PARALLEL(nt)
    {
        const int tid = dc_omp_thread();
        float *acc = tw + (int64_t)tid * per_thread; /* [K][cp], first: 8-byte aligned */
        int64_t *qv = (int64_t *)(acc + K * cp);
        float *dyt = (float *)(qv + nvmax), *xp = dyt + nvmax * cp;
        memset(acc, 0, (size_t)(K * cp) * sizeof(float));
        DC_OMP_FOR /* static: the same partial sums every run (deterministic) */
            for (int64_t it = 0; it < g->n * d.slabs; it++)
        {
            const int64_t n = it / d.slabs, z0 = (it % d.slabs) * d.nz,
                          nz = imin(d.nz, g->out[0] - z0);
            const int64_t nv = nz * plane;
            pad_slab(g, &d, x + n * g->ci * NI, g->ci, z0, xp);
            for (int64_t v = 0; v < nv; v++) {
                const int64_t z = v / plane, r = v - z * plane, yy = r / g->out[2];
                qv[v] = z * d.HpWp + yy * d.Wp + (r - yy * g->out[2]);
            }
            const float *dys = dy + n * g->co * P + z0 * plane;
            transpose_dy(dys, P, nv, g->co, cp, dyt);
            for (int64_t b = 0; b < cp / 32; b++)
                for (int64_t k0 = 0; k0 < K; k0 += CV)
                    ukr_cvec_dw(nv, dyt + b * 32, cp, xp, boff + k0, qv, acc + k0 * cp + b * 32, cp,
                                (int)imin(CV, K - k0));
        }
        /* implicit barrier; dW[oc][k] = sum over threads of acc[k][oc] */
        reduce_dw(tw, per_thread, nt, K, cp, g->co, dw);
    }
    return DIFFCL_OK;
}

/* Weight gradient of a kernel == stride convolution with 32+ output channels: the
 * channel-vector kernel over the space-to-depth rows (sums held in registers along the
 * voxels; the dot-product kernel would stream its rows through L2 once per 4 x 5 block). */
static diffcl_status s2d_dw_cvec(diffcl_context *ctx, const dc_cgeo *g, const float *x,
                                 const float *dy, float *dw)
{
    const int64_t K = g->ci * dc_cgeo_kvol(g), NI = dc_cgeo_in_vox(g), P = dc_cgeo_out_vox(g);
    const int64_t plane = g->out[1] * g->out[2], nz = s2d_planes(ctx, g, K),
                  cp = round_up(g->co, 32);
    const int64_t ld = round_up(nz * plane, 16), slabs = (g->out[0] + nz - 1) / nz;
    const int nt = dc_threads(ctx) > 0 ? dc_threads(ctx) : 1;
    const int64_t nvmax = nz * plane;
    const int64_t per_thread = K * cp + nvmax * 2 /* qv, int64 */ + nvmax * cp + K * ld;
    const int64_t tbytes = round_up(K, 8) * (int64_t)sizeof(int64_t);
    int64_t *boff = dc_scratch(ctx, (size_t)tbytes + (size_t)(nt * per_thread) * sizeof(float));
    if (!boff) return DIFFCL_ERR_OUT_OF_MEMORY;
    float *tw = (float *)((char *)boff + tbytes);
    fill_steps(boff, K, ld);
    DC_OMP_PARALLEL(nt)
    {
        const int tid = dc_omp_thread();
        float *acc = tw + (int64_t)tid * per_thread; /* [K][cp] */
        int64_t *qv = (int64_t *)(acc + K * cp);
        float *dyt = (float *)(qv + nvmax), *col = dyt + nvmax * cp;
        memset(acc, 0, (size_t)(K * cp) * sizeof(float));
        for (int64_t v = 0; v < nvmax; v++) qv[v] = v;
        DC_OMP_FOR /* static: the same partial sums every run (deterministic) */
            for (int64_t it = 0; it < g->n * slabs; it++)
        {
            const int64_t n = it / slabs, z0 = (it % slabs) * nz, m = imin(nz, g->out[0] - z0);
            const int64_t nv = m * plane;
            s2d_slab(g, x + n * g->ci * NI, z0, m, col, ld);
            const float *dys = dy + n * g->co * P + z0 * plane;
            transpose_dy(dys, P, nv, g->co, cp, dyt);
            for (int64_t b = 0; b < cp / 32; b++)
                for (int64_t k0 = 0; k0 < K; k0 += CV)
                    ukr_cvec_dw(nv, dyt + b * 32, cp, col, boff + k0, qv, acc + k0 * cp + b * 32,
                                cp, (int)imin(CV, K - k0));
        }
        reduce_dw(tw, per_thread, nt, K, cp, g->co, dw);
    }
    return DIFFCL_OK;
}

/* ----------------------------------------------------------------- drivers ---- */

static int stride_one(const dc_cgeo *g)
{
    return g->s[0] == 1 && g->s[1] == 1 && g->s[2] == 1;
}

/* Stride-1 forward and input gradient: vectors along output channels (cvec) from 32
 * channels on, vectors along voxels in padded coordinates (direct) below. Measured on the
 * V-Net levels (one core): cvec 245/248/243/186 GF/s at 32/64/128/256 channels against
 * direct 229/211/176/117 (direct wastes its padded positions on small planes, cvec wastes
 * nothing but needs 32 channels to fill its vectors). Knob: kernel 3 forces cvec, 4 direct. */
static int use_cvec(const diffcl_context *ctx, const dc_cgeo *g)
{
    if (ctx->conv_kernel == 3) return 1;
    if (ctx->conv_kernel == 4) return 0;
    return g->co >= 32;
}

diffcl_status dc_kern_conv512_fwd(diffcl_context *ctx, const dc_cgeo *g, const float *x,
                                  const float *w, const float *bias, float *y)
{
    const int64_t K = g->ci * dc_cgeo_kvol(g), P = dc_cgeo_out_vox(g), NI = dc_cgeo_in_vox(g);
    const int direct = dc_conv_is_pointwise(g);
    const int64_t a_elems = round_up(g->co, MR) * K;
    if (!direct && stride_one(g)) {
        if (use_cvec(ctx, g)) return cvec_fwd(ctx, g, x, w, bias, y, 0);
        float *ws = dc_scratch(ctx, (size_t)a_elems * sizeof(float) + direct_fwd_ws(ctx, g));
        if (!ws) return DIFFCL_ERR_OUT_OF_MEMORY;
        pack_a(w, g->co, K, 0, ws, dc_threads(ctx));
        return direct_fwd(ctx, g, x, ws, bias, y, ws + a_elems);
    }
    if (!direct && dc_conv_is_nonoverlap(g)) return s2d_fwd(ctx, g, x, w, bias, y);
    /* 1x1x1: B rows are the input's channels; otherwise vol2col into panels per tile */
    const tiles512 t = plan512(ctx, g, direct ? 0 : K * (int64_t)sizeof(float), 4 * NR);
    const int64_t b_elems = direct ? 0 : K * t.cols;
    float *ws = dc_scratch(ctx, (size_t)(a_elems + (int64_t)t.threads * b_elems) * sizeof(float) +
                                    (size_t)K * sizeof(int64_t));
    if (!ws) return DIFFCL_ERR_OUT_OF_MEMORY;
    float *ap = ws, *bp0 = ws + a_elems;
    int64_t *boff = (int64_t *)(bp0 + (int64_t)t.threads * b_elems);
    fill_steps(boff, K, direct ? NI : NR);
    pack_a(w, g->co, K, 0, ap, t.threads);
    DC_OMP_PARALLEL_FOR_DYNAMIC(t.threads)
    for (int64_t it = 0; it < g->n * t.tiles; it++) {
        const int64_t n = it / t.tiles, p0 = (it % t.tiles) * t.cols, p1 = imin(P, p0 + t.cols);
        float *yt = y + n * g->co * P + p0;
        if (direct) {
            gemm_nn(g->co, p1 - p0, K, ap, x + n * g->ci * NI + p0, NR, boff, yt, P, bias, 0);
        } else {
            float *bp = bp0 + (int64_t)dc_omp_thread() * b_elems;
            pack_cols(g, x + n * g->ci * NI, p0, p1, 0, K, bp, 1, K, 0);
            gemm_nn(g->co, p1 - p0, K, ap, bp, K * NR, boff, yt, P, bias, 0);
        }
    }
    return DIFFCL_OK;
}

diffcl_status dc_kern_conv512_bwd_data(diffcl_context *ctx, const dc_cgeo *g, const float *dy,
                                       const float *w, float *dx)
{
    const int64_t K = g->ci * dc_cgeo_kvol(g), P = dc_cgeo_out_vox(g), NI = dc_cgeo_in_vox(g);
    const int64_t kvol = dc_cgeo_kvol(g);
    const int direct = dc_conv_is_pointwise(g), nonoverlap = dc_conv_is_nonoverlap(g);
    if (!direct && dc_conv_bwd_data_as_fwd(g)) {
        /* stride 1: dx = conv(dy, flip(W)^T) with padding d(k-1)-p */
        dc_cgeo g2 = *g;
        g2.ci = g->co;
        g2.co = g->ci;
        for (int a = 0; a < 3; a++) {
            g2.in[a] = g->out[a];
            g2.out[a] = g->in[a];
            g2.p[a] = g->d[a] * (g->k[a] - 1) - g->p[a];
        }
        if (use_cvec(ctx, &g2))
            return cvec_fwd(ctx, &g2, dy, w, NULL, dx, 1); /* flips as it packs */
        const size_t wn = (size_t)(g->co * K);
        float *wf = dc_alloc(ctx, wn * sizeof(float));
        if (!wf) return DIFFCL_ERR_OUT_OF_MEMORY;
        for (int64_t o = 0; o < g->co; o++)
            for (int64_t c = 0; c < g->ci; c++)
                for (int64_t k = 0; k < kvol; k++)
                    wf[(c * g->co + o) * kvol + (kvol - 1 - k)] = w[(o * g->ci + c) * kvol + k];
        diffcl_status s = dc_kern_conv512_fwd(ctx, &g2, dy, wf, NULL, dx);
        dc_free(ctx, wf, wn * sizeof(float));
        return s;
    }
    if (!direct && nonoverlap) return s2d_bwd_data(ctx, g, dy, w, dx);
    /* cols (K x tile) = W^T (K x Co) . dy tile (Co x tile); B rows are dy's channels */
    const tiles512 t = plan512(ctx, g, direct ? 0 : K * (int64_t)sizeof(float), 4 * NR);
    const int64_t a_elems = round_up(K, MR) * g->co, c_elems = direct ? 0 : K * t.cols;
    float *ws = dc_scratch(ctx, (size_t)(a_elems + (int64_t)t.threads * c_elems) * sizeof(float) +
                                    (size_t)g->co * sizeof(int64_t));
    if (!ws) return DIFFCL_ERR_OUT_OF_MEMORY;
    float *ap = ws, *cols = ws + a_elems;
    int64_t *boff = (int64_t *)(cols + (int64_t)t.threads * c_elems);
    fill_steps(boff, g->co, P);
    pack_a(w, K, g->co, 1, ap, t.threads);
    const int exact = nonoverlap && g->in[0] == g->out[0] * g->k[0] &&
                      g->in[1] == g->out[1] * g->k[1] && g->in[2] == g->out[2] * g->k[2];
    if (!direct && !exact) {
        DC_OMP_PARALLEL_FOR(t.threads)
        for (int64_t i = 0; i < g->n * g->ci; i++)
            memset(dx + i * NI, 0, (size_t)NI * sizeof(float));
    }
    if (direct || nonoverlap || g->n >= t.threads || t.threads == 1) {
        /* tiles write disjoint parts of dx (or one sample per thread when windows overlap) */
        const int by_sample = !direct && !nonoverlap;
        const int64_t items = by_sample ? g->n : g->n * t.tiles;
        DC_OMP_PARALLEL_FOR_DYNAMIC(t.threads)
        for (int64_t it = 0; it < items; it++) {
            float *col = cols + (int64_t)dc_omp_thread() * c_elems;
            const int64_t i0 = by_sample ? it * t.tiles : it,
                          i1 = by_sample ? i0 + t.tiles : it + 1;
            for (int64_t ii = i0; ii < i1; ii++) {
                const int64_t n = ii / t.tiles, p0 = (ii % t.tiles) * t.cols,
                              p1 = imin(P, p0 + t.cols);
                const float *dyt = dy + n * g->co * P + p0;
                if (direct) {
                    gemm_nn(K, p1 - p0, g->co, ap, dyt, NR, boff, dx + n * g->ci * NI + p0, NI,
                            NULL, 0);
                } else {
                    gemm_nn(K, p1 - p0, g->co, ap, dyt, NR, boff, col, t.cols, NULL, 0);
                    unpack_cols(g, col, t.cols, p0, p1, 0, K, dx + n * g->ci * NI, nonoverlap);
                }
            }
        }
    } else {
        /* overlapping windows, fewer samples than threads: tiles in turn, each split over
         * the threads (GEMM by column blocks, then the scatter by channels) */
        for (int64_t it = 0; it < g->n * t.tiles; it++) {
            const int64_t n = it / t.tiles, p0 = (it % t.tiles) * t.cols, p1 = imin(P, p0 + t.cols);
            const int64_t np = p1 - p0, nq = (np + NR - 1) / NR;
            const float *dyt = dy + n * g->co * P + p0;
            DC_OMP_PARALLEL(t.threads)
            {
                DC_OMP_FOR
                for (int64_t q = 0; q < nq; q++)
                    gemm_nn(K, imin(NR, np - q * NR), g->co, ap, dyt + q * NR, NR, boff,
                            cols + q * NR, t.cols, NULL, 0);
                DC_OMP_FOR
                for (int64_t c = 0; c < g->ci; c++)
                    unpack_cols(g, cols, t.cols, p0, p1, c * kvol, (c + 1) * kvol,
                                dx + n * g->ci * NI, 0);
            }
        }
    }
    return DIFFCL_OK;
}

diffcl_status dc_kern_conv512_bwd_weight(diffcl_context *ctx, const dc_cgeo *g, const float *x,
                                         const float *dy, float *dw)
{
    const int64_t K = g->ci * dc_cgeo_kvol(g), P = dc_cgeo_out_vox(g), NI = dc_cgeo_in_vox(g);
    const int direct = dc_conv_is_pointwise(g);
    /* (the dot products over gathered columns measured slower than over padded positions) */
    if (!direct && stride_one(g))
        return use_cvec(ctx, g) ? cvec_dw(ctx, g, x, dy, dw) : direct_dw(ctx, g, x, dy, dw);
    if (!direct && dc_conv_is_nonoverlap(g))
        return use_cvec(ctx, g) ? s2d_dw_cvec(ctx, g, x, dy, dw) : s2d_dw(ctx, g, x, dy, dw);
    const int64_t wn = g->co * K;
    const tiles512 t = plan512(ctx, g, direct ? 0 : K * (int64_t)sizeof(float), 1024);
    const int64_t c_elems = direct ? 0 : K * t.cols;
    const int n_acc = t.threads - 1; /* thread 0 accumulates into dw */
    const size_t tbytes = (size_t)round_up(K, 8) * sizeof(int64_t); /* offset table first */
    int64_t *boff = dc_scratch(
        ctx, tbytes + (size_t)((int64_t)t.threads * c_elems + (int64_t)n_acc * wn) * sizeof(float));
    if (!boff) return DIFFCL_ERR_OUT_OF_MEMORY;
    float *ws = (float *)((char *)boff + tbytes);
    float *accs = ws + (int64_t)t.threads * c_elems;
    fill_steps(boff, K, direct ? NI : t.cols);
    memset(dw, 0, (size_t)wn * sizeof(float));
    DC_OMP_PARALLEL(t.threads)
    {
        const int tid = dc_omp_thread();
        float *acc = tid == 0 ? dw : accs + (int64_t)(tid - 1) * wn;
        if (tid) memset(acc, 0, (size_t)wn * sizeof(float));
        DC_OMP_FOR /* static: the same partial sums every run (deterministic) */
            for (int64_t it = 0; it < g->n * t.tiles; it++)
        {
            const int64_t n = it / t.tiles, p0 = (it % t.tiles) * t.cols, p1 = imin(P, p0 + t.cols);
            const float *xn = x + n * g->ci * NI;
            if (direct) {
                gemm_nt(g->co, K, p1 - p0, dy + n * g->co * P + p0, P, xn + p0, boff, acc, K);
            } else {
                float *col = ws + (int64_t)tid * c_elems;
                pack_cols(g, xn, p0, p1, 0, K, col, 0, K, t.cols);
                gemm_nt(g->co, K, p1 - p0, dy + n * g->co * P + p0, P, col, boff, acc, K);
            }
        }
        if (n_acc > 0) {
            DC_OMP_FOR
            for (int64_t i = 0; i < wn; i++) {
                float s = dw[i];
                for (int a = 0; a < n_acc; a++) s += accs[(int64_t)a * wn + i];
                dw[i] = s;
            }
        }
    }
    return DIFFCL_OK;
}

#else /* no AVX-512 code in this build */

diffcl_status dc_kern_conv512_fwd(diffcl_context *ctx, const dc_cgeo *g, const float *x,
                                  const float *w, const float *bias, float *y)
{
    return dc_error(DIFFCL_ERR_INTERNAL, "AVX-512 convolution not built");
}
diffcl_status dc_kern_conv512_bwd_data(diffcl_context *ctx, const dc_cgeo *g, const float *dy,
                                       const float *w, float *dx)
{
    return dc_error(DIFFCL_ERR_INTERNAL, "AVX-512 convolution not built");
}
diffcl_status dc_kern_conv512_bwd_weight(diffcl_context *ctx, const dc_cgeo *g, const float *x,
                                         const float *dy, float *dw)
{
    return dc_error(DIFFCL_ERR_INTERNAL, "AVX-512 convolution not built");
}

#endif
