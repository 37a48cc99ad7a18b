/* Branch-free float exp, log1p and softplus that vectorise inside `omp simd` loops
 * (libm's expf does not): the selective scan and the F32 activations use them. */
#ifndef DIFFCL_FAST_MATH_H
#define DIFFCL_FAST_MATH_H

#include <stdint.h>

/* Loops that call these are `omp simd` loops. GCC 12 at -O2 leaves most of them scalar: its
 * "very cheap" cost model refuses them, and with -ftrapping-math it will not if-convert the
 * clamps of dc_expf. Functions holding such loops (and the helpers inlined into them) ask
 * for the dynamic cost model and no FP-trap semantics (we never read FP flags). */
#if defined(__GNUC__) && !defined(__clang__)
#define DC_VEC_MATH __attribute__((optimize("vect-cost-model=dynamic", "no-trapping-math")))
#else
#define DC_VEC_MATH
#endif

/* exp for the F32 kernels: Cephes' expf polynomial (about 1 ulp on [-87, 88]) without
 * branches, so the loops over the state vectorise (libm's expf does not). Inputs below -87
 * give exp(-87) ~ 1.6e-38 instead of a denormal or 0; NaN stays NaN. */
DC_VEC_MATH
static inline float dc_expf(float x0)
{
    float x = x0 < -87.0f ? -87.0f : x0; /* selects, not fmaxf: those vectorise */
    x = x > 88.0f ? 88.0f : x;
    const float magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    float t = x * 1.44269504088896341f + magic;
    float n = t - magic;
    union {
        float f;
        uint32_t u;
    } ti = {t}, sc;
    /* unsigned: a NaN input makes these bits garbage, and signed overflow would be UB */
    uint32_t ni = ti.u - 0x4B400000u;
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    sc.u = (ni + 127u) << 23;
    float res = p * sc.f;
    return x0 != x0 ? x0 : res; /* keep NaN (the clamps drop it) */
}

/* log1p(y) for y in [0, 1], vectorisable: Cephes' logf polynomial on w = 1 + y, with
 * Kahan's correction log1p(y) = log(w) * y / (w - 1) for the rounding of 1 + y. */
DC_VEC_MATH
static inline float dc_log1pf_01(float y)
{
    float w = 1.0f + y;
    int big = w > 1.41421356f;
    float e = big ? 1.0f : 0.0f;
    float x = big ? 0.5f * w - 1.0f : w - 1.0f; /* exact */
    float z = x * x;
    float p = 7.0376836292e-2f;
    p = p * x - 1.1514610310e-1f;
    p = p * x + 1.1676998740e-1f;
    p = p * x - 1.2420140846e-1f;
    p = p * x + 1.4249322787e-1f;
    p = p * x - 1.6668057665e-1f;
    p = p * x + 2.0000714765e-1f;
    p = p * x - 2.4999993993e-1f;
    p = p * x + 3.3333331174e-1f;
    float r = p * x * z - 2.12194440e-4f * e - 0.5f * z;
    float lw = x + r + 0.693359375f * e;
    float d = w - 1.0f;
    return d == 0.0f ? y : lw * (y / d);
}

/* softplus as PyTorch (linear above 20): max(x, 0) + log1p(exp(-|x|)) in float. */
DC_VEC_MATH
static inline float dc_softplusf(float x)
{
    float ax = x < 0 ? -x : x;
    float sp = (x > 0 ? x : 0.0f) + dc_log1pf_01(dc_expf(-ax));
    return x > 20.0f ? x : sp;
}

/* Logistic function without a branch: exp(-|x|) once, then the stable form of each side. */
DC_VEC_MATH
static inline float dc_sigmoidf(float x)
{
    float e = dc_expf(x < 0 ? x : -x);
    float pos = 1.0f / (1.0f + e), neg = e / (1.0f + e);
    return x >= 0 ? pos : neg;
}

#endif
