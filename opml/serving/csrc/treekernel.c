/* The tree kernel of opml.serving.treecompile: forests flattened into tables (see that module), scored
   by walking nodes (opml_forest_predict: several trees side by side, no branch per node) or QuickScorer-style
   leaf bitmasks (opml_forest_predict_qsv).
   Built by opml.serving.cbuild (-O3 -march=native -ffp-contract=off; no -ffast-math: comparisons and
   sums stay IEEE-exact) and loaded with ctypes.CDLL. */

#include <stdint.h>
#include <math.h>
#include <string.h>

/* ---- any forest: each row down the node table, several trees side by side ---- */
typedef struct { double thr; int32_t feat, child[2], flags, cat_off, cat_len; } node_t;  /* child: left, right */
typedef struct {
    const node_t *nodes;
    const int32_t *roots;     /* per tree: node index, or ~leaf when the tree is a single leaf */
    const int32_t *group;     /* per tree: the output column it adds to */
    const uint32_t *cats;     /* category bitsets */
    const double *leaves;     /* per leaf: `width` values */
    int32_t n_trees, width, n_out, mode;
} forest_t;
static inline int in_set(const forest_t *f, const node_t *nd, int32_t c) {
    if (c < 0 || (c >> 5) >= nd->cat_len) return 0;
    return (f->cats[nd->cat_off + (c >> 5)] >> (c & 31)) & 1u;
}
/* The row's category bits: bit (int)x of feature j's word when that code is in 0..63 (XGBoost: (int)(float)x
   with (float)x >= 0), else 0 -- never in a set, as in_set has it for NaN, negative and larger codes. */
#define MAX_BITS 256
static inline void code_bits(const double *x, int32_t width, uint64_t *bits, const int mode) {
    for (int32_t j = 0; j < width; ++j) {
        const double v = x[j];
        if (mode == 2) {
            const float fv = (float)v;
            bits[j] = (fv >= 0.0f && fv < 64.0f) ? (uint64_t)1 << (int32_t)fv : 0;
        } else {
            bits[j] = (v > -1.0 && v < 64.0) ? (uint64_t)1 << (int32_t)v : 0;
        }
    }
}

/* The child of node n that row x goes to, without a branch to mispredict (a walk's left/right turns are coin
   flips to the predictor): the threshold test and the category test are both made, and the node's answer
   table (flags bits 8..15, made by treecompile from its NaN side, kind and inversion) picks the side for
   (NaN, in set, threshold test). A set within codes 0..63 (flag value 8, F_CAT64) is held in the node's
   threshold field: one AND with the row's code bit. A wider set, or a row wider than MAX_BITS (bits NULL),
   takes in_set. */
static inline int32_t child(const forest_t *f, const node_t *n, const double *x, const uint64_t *bits,
                            const int mode) {
    const int32_t feat = n->feat, flags = n->flags;
    const double v = x[feat];
    int32_t in = 0;
    if (__builtin_expect(bits != NULL, 1)) {
        uint64_t set;
        memcpy(&set, &n->thr, sizeof set);
        in = (bits[feat] & set) != 0;
    }
    if (__builtin_expect((flags & 10) == 2 || (bits == NULL && (flags & 2)), 0)) {
        int32_t c;
        if (mode == 2) {
            const float fv = (float)v;
            c = (v != v || fv < 0.0f || fv >= 2147483520.0f) ? -1 : (int32_t)fv;
        } else {
            c = (v != v || v <= -2147483648.0 || v >= 2147483648.0) ? -1 : (int32_t)v;
        }
        in = in_set(f, n, c);
    }
    int32_t num;
    if (mode == 0) num = v <= n->thr;
    else if (mode == 1) num = (double)(float)v <= n->thr;
    else num = (float)v < (float)n->thr;
    /* flags bits 8..15: the node's answer for each (NaN, in set, threshold test) -- set by treecompile */
    const int32_t left = (flags >> (8 + ((v != v) | (in << 1) | (num << 2)))) & 1;
    return n->child[left ^ 1];
}

/* One row down trees [t0, t0 + k), LANES of them side by side (independent chains of loads overlap instead
   of waiting on each other): a lane at a leaf records it in leaf[tree - t0] and takes the next tree (the one
   branch that mispredicts, once a tree). */
#define LANES 8
#define CHUNK 512       /* trees per leaf buffer */
#define ROWS_CHUNK 64   /* with several rows, trees walked per row before the next row: they stay in cache */
static inline void leaves_of(const forest_t *f, const double *x, const uint64_t *bits, int32_t t0, int32_t k,
                             int32_t *leaf, const int mode) {
    const node_t *nodes = f->nodes;
    const int32_t *roots = f->roots + t0;
    int32_t nd[LANES], tree[LANES], next = 0;
    for (int32_t j = 0; j < LANES; ++j) {
        tree[j] = next < k ? next : -1;
        nd[j] = next < k ? roots[next++] : -1;
    }
    for (;;) {
        int busy = 0;
        for (int32_t j = 0; j < LANES; ++j) {
            const int32_t c = nd[j];
            if (c >= 0) {
                nd[j] = child(f, nodes + c, x, bits, mode);
                busy = 1;
            } else if (tree[j] >= 0) {
                leaf[tree[j]] = ~c;
                tree[j] = next < k ? next : -1;
                if (next < k) nd[j] = roots[next++];
                busy = 1;
            }
        }
        if (!busy) break;
    }
}

/* out: n x n_out, holding the initial values; each row's leaves are added in tree order (the same doubles as one
   tree at a time). */
static inline void walk(const forest_t *f, const double *X, int64_t n, int64_t stride, double *out, const int mode) {
    const int32_t w = f->width, n_out = f->n_out;
    const int32_t chunk = n == 1 ? CHUNK : ROWS_CHUNK;
    int32_t leaf[CHUNK];
    uint64_t bits[MAX_BITS];
    const uint64_t *use = stride <= MAX_BITS ? bits : NULL;  /* wider rows: every category node takes in_set */
    for (int32_t t0 = 0; t0 < f->n_trees; t0 += chunk) {
        const int32_t k = f->n_trees - t0 < chunk ? f->n_trees - t0 : chunk;
        for (int64_t i = 0; i < n; ++i) {
            const double *x = X + i * stride;
            double *o = out + i * n_out;
            if (use != NULL) code_bits(x, (int32_t)stride, bits, mode);
            leaves_of(f, x, use, t0, k, leaf, mode);
            for (int32_t j = 0; j < k; ++j) {
                const double *lv = f->leaves + (int64_t)leaf[j] * w;
                double *g = o + f->group[t0 + j];
                if (mode == 2) { for (int32_t p = 0; p < w; ++p) g[p] = (double)((float)g[p] + (float)lv[p]); }
                else { for (int32_t p = 0; p < w; ++p) g[p] += lv[p]; }
            }
        }
    }
}
void opml_forest_predict(const forest_t *f, const double *X, int64_t n, int64_t stride, double *out) {
    if (f->mode == 0) walk(f, X, n, stride, out, 0);
    else if (f->mode == 1) walk(f, X, n, stride, out, 1);
    else walk(f, X, n, stride, out, 2);
}

/* ---- boosted trees of at most 64 leaves: QuickScorer-style leaf bitmasks, rows side by side ----
   Every node of a tree is tested for 8 rows at a time (GCC vector extensions: branch-free, AVX-512 /
   AVX2 / SSE as the CPU has), with the tree's leaf masks of 32 rows kept in registers; a failed test
   clears the leaves of the node's left subtree; the exit leaf is the lowest bit left (leaves are
   numbered left to right). node_start[4t .. 4t+4] groups tree t's nodes by kind: numeric with NaN
   going right, numeric with NaN going left, categorical (codes < 64), categorical (wide). */
typedef struct {
    const int32_t *feat, *kind, *cat_off, *cat_len, *node_start, *leaf_start, *group;
    const double *thr, *leaves;
    const uint64_t *mask, *bits;
    const uint32_t *cats;
    const int32_t *bit_feat;  /* LightGBM: features whose codes < 64 become bit rows (see below) */
    int32_t n_trees, width, n_out, mode, n_bit_feat, n_features;
} qs_t;

typedef double v8d __attribute__((vector_size(64)));
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8s __attribute__((vector_size(32)));
typedef int64_t v8i __attribute__((vector_size(64)));

static inline v8d load8(const double *p) { v8d x; __builtin_memcpy(&x, p, sizeof x); return x; }

/* 0 / -1 per lane: does the row go left at a numeric node? (NaN: "x <= t" false, "!(x > t)" true) */
static inline v8i num_left(v8d x, double th, int nan_left, const int mode) {
    if (mode == 2) {
        v8f xf = __builtin_convertvector(x, v8f);
        const float tf = (float)th;
        v8s r = nan_left ? ~(xf >= tf) : (xf < tf);
        return __builtin_convertvector(r, v8i);
    }
    return nan_left ? ~(x > th) : (x <= th);
}

static inline v8i sel(v8i mask, v8i a, v8i b) { return (a & mask) | (b & ~mask); }

typedef uint64_t v8u __attribute__((vector_size(64)));

/* 0 / -1 per lane: does the row go left at a categorical node (codes < 64)? */
static inline v8i cat_left(v8d x, uint64_t bits, int k, const int mode) {
    const v8i nan = x != x;
    const v8d m1 = (v8d){0} - 1.0, c64 = (v8d){0} + 64.0;
    v8d w = (v8d)sel(nan, (v8i)m1, (v8i)x);                          /* NaN -> -1 (decided below) */
    if (mode == 2) {                                                   /* XGBoost: float code, < 0 invalid */
        v8f wf = __builtin_convertvector(w, v8f);
        v8i neg = __builtin_convertvector(wf < 0.0f, v8i);
        w = (v8d)sel(neg, (v8i)m1, (v8i)__builtin_convertvector(wf, v8d));
    }
    w = (v8d)sel(w < -1.0, (v8i)m1, (v8i)w);
    w = (v8d)sel(w > 64.0, (v8i)c64, (v8i)w);
    const v8i c = __builtin_convertvector(w, v8i);                   /* truncates like (int)x */
    const v8i valid = (c >= 0) & (c < 64);
    const v8u bitsv = (v8u){0} + bits;
    const v8i inset = (v8i)((bitsv >> (v8u)(c & 63)) & 1) & valid;
    const v8i left = -(inset ^ ((k >> 2) & 1));
    const v8i nan_left = (v8i){0} - (k & 1);
    return sel(nan, nan_left, left);
}

#define QSV(NAME, MODE, VR)                                                                              \
static void NAME(const qs_t *f, const double *XT, int64_t n, int64_t from, int64_t to, double *out) { \
    /* binary LightGBM: the block's sums stay in `acc` across trees (same order, fewer memory trips) */ \
    const int one = MODE == 0 && f->width == 1 && f->n_out == 1;                                     \
    for (int64_t r0 = from; r0 < to; r0 += 8 * VR) {                                                 \
        double acc[8 * VR];                                                                          \
        if (one) for (int i = 0; i < 8 * VR; ++i) acc[i] = out[r0 + i];                              \
        for (int32_t t = 0; t < f->n_trees; ++t) {                                                   \
            const int32_t *seg = f->node_start + 4 * t;                                              \
            v8i m[VR];                                                                               \
            for (int q = 0; q < VR; ++q) m[q] = (v8i){0} - 1;                                        \
            for (int32_t j = seg[0]; j < seg[2]; ++j) {                                              \
                const double *col = XT + (int64_t)f->feat[j] * n + r0;                               \
                const double th = f->thr[j];                                                         \
                const int nl = j >= seg[1];                                                          \
                const int64_t mk = (int64_t)f->mask[j];                                              \
                for (int q = 0; q < VR; ++q) m[q] &= num_left(load8(col + 8 * q), th, nl, MODE) | mk; \
            }                                                                                        \
            for (int32_t j = seg[2]; j < seg[3]; ++j) {                                              \
                const double *col = XT + (int64_t)f->feat[j] * n + r0;                               \
                const int64_t mk = (int64_t)f->mask[j];                                              \
                const uint64_t bits = f->bits[j];                                                    \
                const int k = f->kind[j];                                                            \
                if (MODE == 0) { /* feat[j] names the feature's bit row: one AND per row */           \
                    const v8u set = (v8u){0} + bits;                                                 \
                    for (int q = 0; q < VR; ++q) {                                                   \
                        v8u b; __builtin_memcpy(&b, col + 8 * q, sizeof b);                          \
                        m[q] &= (v8i)((b & set) != 0) | mk;                                          \
                    }                                                                                \
                } else                                                                               \
                    for (int q = 0; q < VR; ++q) m[q] &= cat_left(load8(col + 8 * q), bits, k, MODE) | mk; \
            }                                                                                        \
            for (int32_t j = seg[3]; j < seg[4]; ++j) {                                              \
                const double *col = XT + (int64_t)f->feat[j] * n + r0;                               \
                const int64_t mk = (int64_t)f->mask[j];                                              \
                const int k = f->kind[j];                                                            \
                node_t nd = {0.0, 0, {0, 0}, k & 7, f->cat_off[j], f->cat_len[j]};                     \
                forest_t shim = {0, 0, 0, f->cats, 0, 0, 0, 0, MODE};                                \
                for (int q = 0; q < VR; ++q) {                                                       \
                    for (int i = 0; i < 8; ++i) {                                                    \
                        const double v = col[8 * q + i];                                             \
                        int left;                                                                    \
                        if (v != v) left = k & 1;                                                    \
                        else {                                                                       \
                            int32_t c;                                                               \
                            const float fv = (float)v;                                               \
                            if (MODE == 2) c = (fv < 0.0f || fv >= 2147483520.0f) ? -1 : (int32_t)fv; \
                            else c = (v <= -2147483648.0 || v >= 2147483648.0) ? -1 : (int32_t)v;  \
                            left = in_set(&shim, &nd, c) ^ ((k >> 2) & 1);                           \
                        }                                                                            \
                        if (!left) m[q][i] &= mk;                                                    \
                    }                                                                                \
                }                                                                                    \
            }                                                                                        \
            const int32_t g = f->group[t], l0 = f->leaf_start[t], w = f->width, n_out = f->n_out;   \
            if (one) {                                                                               \
                const double *lv0 = f->leaves + l0;                                                  \
                for (int q = 0; q < VR; ++q)                                                         \
                    for (int i = 0; i < 8; ++i) acc[8 * q + i] += lv0[__builtin_ctzll((uint64_t)m[q][i])]; \
            } else for (int q = 0; q < VR; ++q) {                                                    \
                for (int i = 0; i < 8; ++i) {                                                        \
                    const double *lv = f->leaves + (int64_t)(l0 + __builtin_ctzll((uint64_t)m[q][i])) * w; \
                    double *o = out + (r0 + 8 * q + i) * n_out + g;                                  \
                    if (MODE == 2) { for (int32_t p = 0; p < w; ++p) o[p] = (double)((float)o[p] + (float)lv[p]); } \
                    else { for (int32_t p = 0; p < w; ++p) o[p] += lv[p]; }                          \
                }                                                                                    \
            }                                                                                        \
        }                                                                                            \
        if (one) for (int i = 0; i < 8 * VR; ++i) out[r0 + i] = acc[i];                             \
    }                                                                                                \
}
QSV(qsv_lgbm4, 0, 4)
QSV(qsv_lgbm1, 0, 1)
QSV(qsv_xgb4, 2, 4)
QSV(qsv_xgb1, 2, 1)

/* XT: ((n_features + n_bit_feat) x stride) with stride >= n rounded up to a multiple of 8; 32 rows per
   pass, then 8. LightGBM categorical nodes over codes < 64 test bit rows: row n_features + i holds, for
   feature bit_feat[i], 1 << trunc(x) where LightGBM reads a category 0..63 (x in (-1, 64)), else 0 (NaN,
   negative, too large: never in the set, so right) -- filled here, once per call, for every node. */
void opml_forest_predict_qsv(const qs_t *f, double *XT, int64_t n, int64_t stride, double *out) {
    for (int32_t i = 0; i < f->n_bit_feat; ++i) {
        const double *x = XT + (int64_t)f->bit_feat[i] * stride;
        uint64_t *b = (uint64_t *)(XT + (int64_t)(f->n_features + i) * stride);
        for (int64_t r = 0; r < n; ++r) b[r] = (x[r] > -1.0 && x[r] < 64.0) ? (uint64_t)1 << (int32_t)x[r] : 0;
    }
    const int64_t n32 = n / 32 * 32;
    if (f->mode == 2) {
        if (n32) qsv_xgb4(f, XT, stride, 0, n32, out);
        if (n > n32) qsv_xgb1(f, XT, stride, n32, n, out);
    } else {
        if (n32) qsv_lgbm4(f, XT, stride, 0, n32, out);
        if (n > n32) qsv_lgbm1(f, XT, stride, n32, n, out);
    }
}
