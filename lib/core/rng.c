/* Philox-4x32-10 counter-based generator (Salmon et al., SC'11).
 * Counter = (block, iteration, index, stream), key = seed: draw number k of a key is a
 * pure function of (key, k), so any thread may compute any slice of a fill. */
#include <math.h>

#include "core/core_internal.h"

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static inline void mulhilo(uint32_t a, uint32_t b, uint32_t *hi, uint32_t *lo)
{
    uint64_t p = (uint64_t)a * b;
    *hi = (uint32_t)(p >> 32);
    *lo = (uint32_t)p;
}

static void philox4x32_10(const uint32_t in[4], uint64_t seed, uint32_t out[4])
{
    uint32_t c0 = in[0], c1 = in[1], c2 = in[2], c3 = in[3];
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int r = 0; r < 10; r++) {
        uint32_t hi0, lo0, hi1, lo1;
        mulhilo(PHILOX_M0, c0, &hi0, &lo0);
        mulhilo(PHILOX_M1, c2, &hi1, &lo1);
        uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0;
        c1 = lo1;
        c2 = n2;
        c3 = lo0;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

diffcl_rng_key diffcl_rng_key_make(uint64_t seed, uint32_t stream, uint32_t index,
                                   uint32_t iteration)
{
    diffcl_rng_key k;
    k.seed = seed;
    k.stream = stream;
    k.index = index;
    k.iteration = iteration;
    k.reserved = 0;
    return k;
}

/* Draw number `n` of `key`: block n/4 of the counter space, lane n%4.
 * The block number takes 32 bits of counter word 0 and the iteration's high half shares
 * nothing: 2^34 draws per (seed, stream, index, iteration). */
void diffcl_rng_bits(diffcl_rng_key key, uint64_t offset, size_t n, uint32_t *out)
{
    uint32_t ctr[4] = {0, key.iteration, key.index, key.stream}, block[4];
    size_t i = 0;
    while (i < n) {
        uint64_t k = offset + i;
        ctr[0] = (uint32_t)(k >> 2);
        ctr[1] = key.iteration ^ (uint32_t)(k >> 34) * 0x85EBCA6Bu;
        philox4x32_10(ctr, key.seed, block);
        for (unsigned lane = (unsigned)(k & 3); lane < 4 && i < n; lane++) out[i++] = block[lane];
    }
}

/* 24 high bits -> float in [0,1): exact and never 1.0f. */
static inline float u01(uint32_t x)
{
    return (float)(x >> 8) * (1.0f / 16777216.0f);
}

void diffcl_rng_uniform(diffcl_rng_key key, uint64_t offset, size_t n, float lo, float hi,
                        float *out)
{
    uint32_t buf[256];
    for (size_t i = 0; i < n; i += 256) {
        size_t m = n - i < 256 ? n - i : 256;
        diffcl_rng_bits(key, offset + i, m, buf);
        for (size_t j = 0; j < m; j++) out[i + j] = lo + (hi - lo) * u01(buf[j]);
    }
}

/* Normal draw number k uses bits 2*(k/2) and 2*(k/2)+1 (Box-Muller pair), so an element's
 * value does not depend on where a fill starts. */
void diffcl_rng_normal(diffcl_rng_key key, uint64_t offset, size_t n, float mean, float stddev,
                       float *out)
{
    for (size_t i = 0; i < n;) {
        uint64_t k = offset + i;
        uint64_t pair = k >> 1;
        uint32_t b[2];
        diffcl_rng_bits(key, pair * 2, 2, b);
        double u1 = ((double)(b[0] >> 8) + 1.0) / 16777217.0; /* (0,1]: log is finite */
        double u2 = (double)(b[1] >> 8) / 16777216.0;
        double r = sqrt(-2.0 * log(u1));
        double z[2] = {r * cos(2.0 * M_PI * u2), r * sin(2.0 * M_PI * u2)};
        for (unsigned lane = (unsigned)(k & 1); lane < 2 && i < n; lane++)
            out[i++] = (float)(mean + stddev * z[lane]);
    }
}
