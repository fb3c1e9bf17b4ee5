/* CPU kernels of the analytic BEV -> camera renderer (busch2026 Sec. III-B, "Rendering Module").
 *
 * A render is a bilinear gather: pixel (u, v) of camera k reads the BEV map of its batch element
 * at the point where its viewing ray meets the ground. The camera rig is fixed within a scene, so
 * bevlib.native precomputes per rig, once, the valid pixels as row segments and their four
 * bilinear taps (cell index, weight) in grid_sample's order (nw, ne, sw, se). These kernels then
 * touch only valid pixels (about a third of a nuScenes image) and keep the C channels of a BEV cell
 * in one 16-float block, so each tap is one contiguous vector load or store:
 *
 *   forward:  out[k, c, r, q] = fma(se, v_se, fma(sw, v_sw, fma(ne, v_ne, nw * v_nw)))
 *             the same operations, in the same order, as torch's vectorised CPU grid_sample
 *             (bilinear, zeros padding, align_corners=False), so the result is bit-identical;
 *   backward: grad_bev[m, c, cell] = sum over pixels and taps of weight * grad_out[k, c, r, q],
 *             accumulated per thread; consecutive pixels of a row that read the same four cells
 *             are summed in registers first, so a cell is written once per run, not per pixel.
 *
 * Layouts (all C-contiguous):
 *   bev, acc   (M, nblk, HW1, 16) float32: channel c of cell i at [m, c / 16, i, c % 16]; row
 *              HW1 - 1 is zero and is where out-of-grid taps point (their weight is kept, as in
 *              grid_sample, whose masked loads read 0).
 *   out, grad  (BN, C, h, w) float32.
 *   row_ptr    (BN * h + 1) int64: segments of image row R = k * h + r are row_ptr[R] .. row_ptr[R + 1].
 *   segs       (S, 3) int64: (q0, q1, first tap) of a run of valid pixels [q0, q1) of a row.
 *   idx, wt    (Nv, 4) int32 / float32: taps of the valid pixels.
 *   map_of_cam (BN) int64: which BEV map (batch element) camera k renders.
 * bounds (n + 1) int64 splits the image rows into n ranges of about equal work (bevlib.native);
 * range t runs on OpenMP thread t. Built with -fopenmp the library shares the OpenMP runtime torch
 * loaded (same soname, libgomp.so.1), so the kernels run on torch's own intra-op threads instead
 * of competing with them while they spin after a torch op; without OpenMP the ranges run in turn.
 * Return 0, or -1 when a scratch buffer cannot be allocated.
 */
#include <math.h>
#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdlib.h>
#include <string.h>

#define LANES 16

static float *alloc_tile(int64_t floats) {
    /* aligned_alloc wants a size that is a multiple of the alignment. */
    size_t bytes = (size_t)(((floats * (int64_t)sizeof(float) + 63) / 64) * 64);
    return (float *)aligned_alloc(64, bytes);
}

static int forward_rows(const float *bev, int64_t nblk, int64_t HW1, int64_t C,
                          const int64_t *row_ptr, const int64_t *segs, const int32_t *idx,
                          const float *wt, const int64_t *map_of_cam, int64_t h, int64_t w,
                          int64_t row0, int64_t row1, float *out) {
    /* tile[c * ld + q]: one image row of a channel block; the padded stride keeps the 16 rows of
       the tile out of one cache set. */
    const int64_t ld = w + LANES;
    float *tile = alloc_tile(LANES * ld);
    if (!tile) return -1;
    for (int64_t R = row0; R < row1; ++R) {
        const int64_t k = R / h, r = R % h, m = map_of_cam[k];
        const int64_t s0 = row_ptr[R], s1 = row_ptr[R + 1];
        for (int64_t b = 0; b < nblk; ++b) {
            const float *src = bev + (m * nblk + b) * HW1 * LANES;
            const int64_t c0 = b * LANES, nc = C - c0 < LANES ? C - c0 : LANES;
            for (int64_t s = s0; s < s1; ++s) {
                const int64_t q0 = segs[3 * s], q1 = segs[3 * s + 1], t0 = segs[3 * s + 2];
                for (int64_t q = q0; q < q1; ++q) {
                    const int64_t p = t0 + (q - q0);
                    const float *v0 = src + LANES * (int64_t)idx[4 * p];
                    const float *v1 = src + LANES * (int64_t)idx[4 * p + 1];
                    const float *v2 = src + LANES * (int64_t)idx[4 * p + 2];
                    const float *v3 = src + LANES * (int64_t)idx[4 * p + 3];
                    const float w0 = wt[4 * p], w1 = wt[4 * p + 1], w2 = wt[4 * p + 2], w3 = wt[4 * p + 3];
                    float v[LANES];
                    for (int c = 0; c < LANES; ++c)
                        v[c] = fmaf(v3[c], w3, fmaf(v2[c], w2, fmaf(v1[c], w1, v0[c] * w0)));
                    for (int64_t c = 0; c < nc; ++c) tile[c * ld + q] = v[c];
                }
            }
            for (int64_t c = 0; c < nc; ++c) {
                float *o = out + ((k * C + c0 + c) * h + r) * w;
                const float *tc = tile + c * ld;
                int64_t cur = 0;
                for (int64_t s = s0; s < s1; ++s) {
                    const int64_t q0 = segs[3 * s], q1 = segs[3 * s + 1];
                    memset(o + cur, 0, sizeof(float) * (size_t)(q0 - cur));
                    memcpy(o + q0, tc + q0, sizeof(float) * (size_t)(q1 - q0));
                    cur = q1;
                }
                memset(o + cur, 0, sizeof(float) * (size_t)(w - cur));
            }
        }
    }
    free(tile);
    return 0;
}

/* 16 float32 lanes: GCC/Clang vector extension, one register on AVX-512, two or four elsewhere. */
typedef float vec16 __attribute__((vector_size(64), aligned(4)));

static inline vec16 load16(const float *p) {
    vec16 v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void add16(float *p, vec16 v) {
    vec16 d = load16(p) + v;
    memcpy(p, &d, sizeof d);
}

static inline int same_taps(const int32_t *a, const int32_t *b) {
    uint64_t x[2], y[2];
    memcpy(x, a, 16);
    memcpy(y, b, 16);
    return x[0] == y[0] && x[1] == y[1];
}

static int backward_rows(const float *grad, int64_t nblk, int64_t HW1, int64_t C,
                           const int64_t *row_ptr, const int64_t *segs, const int32_t *idx,
                           const float *wt, const int64_t *map_of_cam, int64_t h, int64_t w,
                           int64_t row0, int64_t row1, float *acc, int64_t acc_floats) {
    /* tile[q * 16 + c]: the upstream gradient of one image row, channels-last. */
    float *tile = alloc_tile(LANES * w);
    if (!tile) return -1;
    memset(acc, 0, sizeof(float) * (size_t)acc_floats);
    memset(tile, 0, sizeof(float) * (size_t)(LANES * w));
    for (int64_t R = row0; R < row1; ++R) {
        const int64_t k = R / h, r = R % h, m = map_of_cam[k];
        const int64_t s0 = row_ptr[R], s1 = row_ptr[R + 1];
        if (s0 == s1) continue;
        for (int64_t b = 0; b < nblk; ++b) {
            float *dst = acc + (m * nblk + b) * HW1 * LANES;
            const int64_t c0 = b * LANES, nc = C - c0 < LANES ? C - c0 : LANES;
            for (int64_t s = s0; s < s1; ++s) {
                const int64_t q0 = segs[3 * s], q1 = segs[3 * s + 1];
                for (int64_t c = 0; c < nc; ++c) {
                    const float *gc = grad + ((k * C + c0 + c) * h + r) * w;
                    for (int64_t q = q0; q < q1; ++q) tile[q * LANES + c] = gc[q];
                }
                /* A partial last block must not carry the previous block's lanes. */
                for (int64_t c = nc; c < LANES; ++c)
                    for (int64_t q = q0; q < q1; ++q) tile[q * LANES + c] = 0.0f;
            }
            for (int64_t s = s0; s < s1; ++s) {
                const int64_t q0 = segs[3 * s], q1 = segs[3 * s + 1], t0 = segs[3 * s + 2];
                int64_t start = t0;
                vec16 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
                for (int64_t q = q0; q < q1; ++q) {
                    const int64_t p = t0 + (q - q0);
                    if (!same_taps(idx + 4 * p, idx + 4 * start)) {
                        const int32_t *ts = idx + 4 * start;
                        add16(dst + LANES * (int64_t)ts[0], a0);
                        add16(dst + LANES * (int64_t)ts[1], a1);
                        add16(dst + LANES * (int64_t)ts[2], a2);
                        add16(dst + LANES * (int64_t)ts[3], a3);
                        a0 = a1 = a2 = a3 = (vec16){0};
                        start = p;
                    }
                    const vec16 gq = load16(tile + q * LANES);
                    a0 += wt[4 * p] * gq;
                    a1 += wt[4 * p + 1] * gq;
                    a2 += wt[4 * p + 2] * gq;
                    a3 += wt[4 * p + 3] * gq;
                }
                const int32_t *ts = idx + 4 * start;
                add16(dst + LANES * (int64_t)ts[0], a0);
                add16(dst + LANES * (int64_t)ts[1], a1);
                add16(dst + LANES * (int64_t)ts[2], a2);
                add16(dst + LANES * (int64_t)ts[3], a3);
            }
        }
    }
    free(tile);
    return 0;
}

int bevlib_render_forward(const float *bev, int64_t nblk, int64_t HW1, int64_t C,
                          const int64_t *row_ptr, const int64_t *segs, const int32_t *idx,
                          const float *wt, const int64_t *map_of_cam, int64_t h, int64_t w,
                          const int64_t *bounds, int64_t n, float *out) {
    int status = 0;
#ifdef _OPENMP
#pragma omp parallel for num_threads((int)n) schedule(static, 1) reduction(min : status)
#endif
    for (int64_t t = 0; t < n; ++t) {
        int rc = forward_rows(bev, nblk, HW1, C, row_ptr, segs, idx, wt, map_of_cam, h, w,
                              bounds[t], bounds[t + 1], out);
        if (rc < status) status = rc;
    }
    return status;
}

/* Thread t accumulates into acc + t * acc_floats (zeroed here); bevlib_unpack_grad sums them. */
int bevlib_render_backward(const float *grad, int64_t nblk, int64_t HW1, int64_t C,
                           const int64_t *row_ptr, const int64_t *segs, const int32_t *idx,
                           const float *wt, const int64_t *map_of_cam, int64_t h, int64_t w,
                           const int64_t *bounds, int64_t n, float *acc, int64_t acc_floats) {
    int status = 0;
#ifdef _OPENMP
#pragma omp parallel for num_threads((int)n) schedule(static, 1) reduction(min : status)
#endif
    for (int64_t t = 0; t < n; ++t) {
        int rc = backward_rows(grad, nblk, HW1, C, row_ptr, segs, idx, wt, map_of_cam, h, w,
                               bounds[t], bounds[t + 1], acc + t * acc_floats, acc_floats);
        if (rc < status) status = rc;
    }
    return status;
}

/* bev (M, C, HW) -> blocks (M, nblk, HW + 1, 16): channels-last, zero in the padding lanes and in
   the extra row HW. Single-threaded: a map is small (1.2 MB at C = 14, 150 x 150). */
void bevlib_pack_blocks(const float *bev, int64_t M, int64_t C, int64_t HW, int64_t nblk, float *blocks) {
    memset(blocks, 0, sizeof(float) * (size_t)(M * nblk * (HW + 1) * LANES));
    for (int64_t m = 0; m < M; ++m)
        for (int64_t c = 0; c < C; ++c) {
            const float *src = bev + (m * C + c) * HW;
            float *dst = blocks + (m * nblk + c / LANES) * (HW + 1) * LANES + c % LANES;
            for (int64_t i = 0; i < HW; ++i) dst[i * LANES] = src[i];
        }
}

/* Sum the n per-thread accumulators acc (n, M, nblk, HW + 1, 16) into grad (M, C, HW). */
void bevlib_unpack_grad(const float *acc, int64_t n, int64_t M, int64_t C, int64_t HW, int64_t nblk, float *grad) {
    const int64_t per = M * nblk * (HW + 1) * LANES;
    for (int64_t m = 0; m < M; ++m)
        for (int64_t b = 0; b < nblk; ++b) {
            const int64_t c0 = b * LANES, nc = C - c0 < LANES ? C - c0 : LANES;
            const float *src = acc + (m * nblk + b) * (HW + 1) * LANES;
            float *dst = grad + (m * C + c0) * HW;
            for (int64_t i = 0; i < HW; ++i) {
                vec16 v = load16(src + i * LANES);
                for (int64_t t = 1; t < n; ++t) v += load16(src + t * per + i * LANES);
                for (int64_t c = 0; c < nc; ++c) dst[c * HW + i] = v[c];
            }
        }
}

/* Plan building for a new rig (bevlib.native.build_plan_from_rig): busch2026's rendering module
 * meets a new rig at every keyframe on real data, where each camera has its own ego pose. Per
 * pixel, in one pass over the image rows of all B * N cameras: the ray / ground-plane hit of
 * bevlib.render.ground_hits, the grid test and normalised coordinates of sampling_grid, and the
 * bilinear taps of bevlib.native.build_plan -- the same float64 / float32 operations in the same
 * order as that numpy code (the library is built with -ffp-contract=off, so nothing is fused),
 * hence a plan identical to the one built from the numpy sampling grid.
 *
 *   M (BN, 3, 3) float64: ego ray of pixel (u, v) = M[:, 0] u + M[:, 1] v + M[:, 2];
 *   O (BN, 3) float64: camera centre in the ego frame (metres);
 *   ext = (x_min, x_max, y_min, y_max) metres of the BEV grid.
 * Pass 1 (bevlib_plan_count) marks the valid pixels and counts them and their runs per row;
 * Python turns the counts into offsets; pass 2 (bevlib_plan_fill) writes runs and taps (returns
 * 0, or -1 when a thread's row buffer cannot be allocated). */
/* Pixels [q0, q1) of image row v of camera (M, O): valid[q] (when valid != NULL) or the
 * normalised float32 (gx[q], gy[q]) (garbage where not valid). Branch-free, so the compiler
 * vectorises the divisions; (M1 v) is hoisted out of the loop, which keeps numpy's
 * ((M0 u) + (M1 v)) + M2. */
/* The hit of pixel u's ray: its ego z slope rz and ground point (x, y) (meaningful where rz < 0). */
static inline void ray_hit(const double *M, double u, double bx, double by, double bz, double ox, double oy,
                           double noz, double *rz, double *x, double *y) {
    *rz = M[6] * u + bz + M[8];
    const double s = noz / *rz;
    *x = ox + s * (M[0] * u + bx + M[2]);
    *y = oy + s * (M[3] * u + by + M[5]);
}

static void row_hits(const double *M, const double *O, const double *ext, double v, int64_t q0, int64_t q1,
                     uint8_t *restrict valid, float *restrict gx, float *restrict gy) {
    const double bx = M[1] * v, by = M[4] * v, bz = M[7] * v, ox = O[0], oy = O[1], noz = -O[2];
    const double x_min = ext[0], x_max = ext[1], y_min = ext[2], y_max = ext[3];
    const double dx = x_max - x_min, dy = y_max - y_min;
    const int up = O[2] > 0;
    double rz, x, y;
    if (valid != NULL) {
        for (int64_t q = q0; q < q1; ++q) {
            ray_hit(M, (double)q, bx, by, bz, ox, oy, noz, &rz, &x, &y);
            valid[q] = (uint8_t)((rz < -1e-9) & up & (x >= x_min) & (x <= x_max) & (y >= y_min) & (y <= y_max));
        }
        return;
    }
    for (int64_t q = q0; q < q1; ++q) {
        ray_hit(M, (double)q, bx, by, bz, ox, oy, noz, &rz, &x, &y);
        gx[q] = (float)(2.0 * (y_max - y) / dy - 1.0);
        gy[q] = (float)(2.0 * (x_max - x) / dx - 1.0);
    }
}

/* Whether no pixel of row v can be valid: the camera is not above the ground, or the ray's z is
 * clearly non-negative at both ends of the row (it is affine in u, so then everywhere; the margin
 * dwarfs the rounding of the per-pixel sum). About half the rows of a rig lie above the horizon. */
static int row_above_horizon(const double *M, const double *O, double v, int64_t w) {
    const double bz = M[7] * v;
    return !(O[2] > 0) || (M[6] * 0.0 + bz + M[8] > 1e-6 && M[6] * (double)(w - 1) + bz + M[8] > 1e-6);
}

void bevlib_plan_count(const double *M, const double *O, const double *ext, int64_t BN, int64_t h, int64_t w,
                       uint8_t *valid, int64_t *nvalid, int64_t *nseg, int64_t n) {
#pragma omp parallel for num_threads((int)n) schedule(dynamic, 16)
    for (int64_t R = 0; R < BN * h; ++R) {
        const double *Mk = M + 9 * (R / h), *Ok = O + 3 * (R / h);
        const double v = (double)(R % h);
        uint8_t *row = valid + R * w;
        if (row_above_horizon(Mk, Ok, v, w)) {
            memset(row, 0, (size_t)w);
            nvalid[R] = nseg[R] = 0;
            continue;
        }
        row_hits(Mk, Ok, ext, v, 0, w, row, NULL, NULL);
        int64_t count = 0, runs = 0;
        uint8_t prev = 0;
        for (int64_t q = 0; q < w; ++q) {
            count += row[q];
            runs += row[q] & !prev;
            prev = row[q];
        }
        nvalid[R] = count;
        nseg[R] = runs;
    }
}

int bevlib_plan_fill(const double *M, const double *O, const double *ext, int64_t BN, int64_t h, int64_t w,
                     int64_t H, int64_t W, const uint8_t *valid, const int64_t *row_ptr, const int64_t *row_first,
                     int64_t *segs, int32_t *idx, float *wt, int64_t n) {
    const double half_w = (double)W / 2, half_h = (double)H / 2;
    int status = 0;
#pragma omp parallel num_threads((int)n) reduction(min : status)
    {
        float *g = (float *)malloc(2 * (size_t)w * sizeof(float));   /* gx then gy of one row */
        if (g == NULL) status = -1;
#pragma omp for schedule(dynamic, 16)
        for (int64_t R = 0; R < BN * h; ++R) {
            if (row_first[R + 1] == row_first[R] || g == NULL) continue;
            const uint8_t *row = valid + R * w;
            int64_t lo = 0, hi = w;          /* the span of the row's valid pixels */
            while (!row[lo]) ++lo;
            while (!row[hi - 1]) --hi;
            row_hits(M + 9 * (R / h), O + 3 * (R / h), ext, (double)(R % h), lo, hi, NULL, g, g + w);
            int64_t s = row_ptr[R], p = row_first[R];
            for (int64_t q = lo; q < hi; ++q) {
                if (!row[q]) continue;
                if (q == 0 || !row[q - 1]) {
                    int64_t q1 = q;
                    while (q1 < w && row[q1]) ++q1;
                    segs[3 * s] = q, segs[3 * s + 1] = q1, segs[3 * s + 2] = p;
                    ++s;
                }
                const float ix = (float)((double)(g[q] + 1.0f) * half_w - 0.5);
                const float iy = (float)((double)(g[w + q] + 1.0f) * half_h - 0.5);
                const float x0 = floorf(ix), y0 = floorf(iy);
                const float fx = ix - x0, fy = iy - y0, ex = 1.0f - fx, ey = 1.0f - fy;
                wt[4 * p] = ey * ex, wt[4 * p + 1] = ey * fx, wt[4 * p + 2] = fy * ex, wt[4 * p + 3] = fy * fx;
                for (int t = 0; t < 4; ++t) {
                    const int64_t xi = (int64_t)x0 + (t & 1), yi = (int64_t)y0 + (t >> 1);
                    idx[4 * p + t] = (int32_t)((xi >= 0 && xi < W && yi >= 0 && yi < H) ? yi * W + xi : H * W);
                }
                ++p;
            }
        }
        free(g);
    }
    return status;
}
