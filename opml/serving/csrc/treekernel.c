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

/* ---- the compact walker: 8-byte nodes, integer tests, a fixed number of steps per tree, no branch per node ----
   The row is first turned into small integers, "slots" (uint16):
   - per feature with numeric splits, its rank: how many of the forest's distinct thresholds on that feature
     (`cuts`, ascending) are below the value -- then "x <= t" is "rank <= t's index". In modes 1 and 2 the value
     is (double)(float)x, and in mode 2 the cuts are the doubles just below the float thresholds ("x < t" there).
     Two slots: NaN as rank 0 (read by nodes sending NaN left) and as the count of cuts (nodes sending it right);
   - per distinct category test (column, set), 0 when the row goes left, else 1. A code c in 0..61 is bit c, NaN
     bit 62, any other value bit 63 (negative, 62 and up); the set holds the codes going left (treecompile
     inverts XGBoost's), plus bit 62 when NaN goes left;
   - slot 0: always 0.
   A node goes left when its slot <= its `thr`. A leaf is a node too, reading slot 0, whose children are itself
   and whose `thr` is its leaf number within the tree; so a tree is walked a fixed number of steps (its depth)
   with no test for having arrived: CLANES trees side by side, each step two loads, a compare and a select,
   nothing for the branch predictor to miss (every other step from the sixth on, one check whether all lanes
   are at leaves). Trees are walked by depth within each CHUNK (`order`), CLANES of a like depth at once, their
   leaves noted, then summed in tree order: opml_forest_predict's doubles.
   treecompile builds these tables only where that is the libraries' rule exactly: no NaN threshold (nor -inf in
   mode 2), sets within codes 0..61, at most CMAX_SLOTS slots; children are int16 offsets from the node. */
typedef struct { uint16_t slot, thr; int16_t child[2]; } cnode_t;  /* child: right, left */
typedef struct {
    const cnode_t *nodes;
    const int32_t *start;      /* per tree: its root node */
    const int32_t *depth;      /* per tree: its depth (0: a single leaf) */
    const int32_t *order;      /* the trees of each CHUNK, by depth */
    const int32_t *leaf_base;  /* per tree: its first leaf */
    const int32_t *group;
    const double *leaves;
    const double *cuts;        /* per numeric feature: its distinct thresholds, ascending */
    const int32_t *cut_feat;   /* per numeric feature: its column */
    const int32_t *cut_start;  /* per numeric feature + 1: where its cuts start */
    const int32_t *cat_col;    /* per column with category tests: its column */
    const int32_t *cat_start;  /* per such column + 1: where its tests start */
    const uint64_t *cat_set;   /* per category test: the bits going left */
    int32_t n_trees, width, n_out, mode, n_num, n_cat, n_cat_col;
} cforest_t;

#define CMAX_SLOTS 16384  /* uint16 slots on the stack: 32 KB */
#define CLANES 12  /* measured: 8..14 alike, 16 and up slower (registers) */

static inline void c_slots(const cforest_t *f, const double *x, uint16_t *slot, const int mode) {
    slot[0] = 0;
    for (int32_t i = 0; i < f->n_num; ++i) {
        const double v = x[f->cut_feat[i]];
        const double *b = f->cuts + f->cut_start[i];
        const int32_t len = f->cut_start[i + 1] - f->cut_start[i];
        if (v != v) {
            slot[1 + 2 * i] = 0;
            slot[2 + 2 * i] = (uint16_t)len;
            continue;
        }
        const double u = mode == 0 ? v : (double)(float)v;
        const double *lo = b;  /* branch-free lower bound: how many cuts are < u */
        int32_t n = len;
        while (n > 1) {
            const int32_t half = n >> 1;
            lo = lo[half - 1] < u ? lo + half : lo;
            n -= half;
        }
        const uint16_t rank = (uint16_t)((lo - b) + (len > 0 && lo[0] < u));
        slot[1 + 2 * i] = rank;
        slot[2 + 2 * i] = rank;
    }
    uint16_t *cat = slot + 1 + 2 * f->n_num;
    for (int32_t c = 0; c < f->n_cat_col; ++c) {
        const double v = x[f->cat_col[c]];
        uint64_t bit;
        if (v != v) bit = (uint64_t)1 << 62;
        else if (mode == 2) {
            const float fv = (float)v;
            bit = (fv >= 0.0f && fv < 62.0f) ? (uint64_t)1 << (int32_t)fv : (uint64_t)1 << 63;
        } else {
            bit = (v > -1.0 && v < 62.0) ? (uint64_t)1 << (int32_t)v : (uint64_t)1 << 63;
        }
        const uint64_t *set = f->cat_set;
        for (int32_t i = f->cat_start[c], e = f->cat_start[c + 1]; i < e; ++i) cat[i] = (set[i] & bit) == 0;
    }
}

/* leaf[tree - t0] for trees [t0, t0 + k) */
static inline void c_leaves(const cforest_t *f, const uint16_t *slot, int32_t t0, int32_t k, int32_t *leaf) {
    const int32_t *order = f->order + t0;
    for (int32_t g = 0; g < k; g += CLANES) {
        const int32_t m = k - g < CLANES ? k - g : CLANES;
        const cnode_t *p[CLANES];
        for (int32_t j = 0; j < CLANES; ++j) p[j] = f->nodes + f->start[order[g + (j < m ? j : 0)]];
        const int32_t d = f->depth[order[g + m - 1]];  /* the deepest of the group */
        for (int32_t s = 0; s < d; ++s) {
            for (int32_t j = 0; j < CLANES; ++j) {
                const cnode_t *n = p[j];
                p[j] = n + n->child[slot[n->slot] <= n->thr];
            }
            if (s >= 5 && (s & 1)) {  /* deep trees (LightGBM's grow leaf-wise): stop once every lane is at a leaf */
                uint32_t moving = 0;
                for (int32_t j = 0; j < CLANES; ++j) {
                    uint32_t c;
                    memcpy(&c, p[j]->child, sizeof c);
                    moving |= c;
                }
                if (!moving) break;
            }
        }
        for (int32_t j = 0; j < m; ++j) leaf[order[g + j] - t0] = f->leaf_base[order[g + j]] + p[j]->thr;
    }
}

static inline void c_walk(const cforest_t *f, const double *X, int64_t n, int64_t stride, double *out, const int mode) {
    const int32_t w = f->width, n_out = f->n_out;
    int32_t leaf[CHUNK];
    uint16_t slot[CMAX_SLOTS];
    for (int64_t i = 0; i < n; ++i) {
        double *o = out + i * n_out;
        c_slots(f, X + i * stride, slot, mode);
        for (int32_t t0 = 0; t0 < f->n_trees; t0 += CHUNK) {
            const int32_t k = f->n_trees - t0 < CHUNK ? f->n_trees - t0 : CHUNK;
            c_leaves(f, slot, t0, k, leaf);
            if (w == 1 && n_out == 1) {  /* one output: the sum stays in a register (mode 2: a float, as summed) */
                const double *lv = f->leaves;
                if (mode == 2) {
                    float acc = (float)o[0];
                    for (int32_t j = 0; j < k; ++j) acc = acc + (float)lv[leaf[j]];
                    o[0] = (double)acc;
                } else {
                    double acc = o[0];
                    for (int32_t j = 0; j < k; ++j) acc += lv[leaf[j]];
                    o[0] = acc;
                }
                continue;
            }
            for (int32_t j = 0; j < k; ++j) {
                const double *lv = f->leaves + (int64_t)leaf[j] * w;
                double *g = o + f->group[t0 + j];
                if (mode == 2) { for (int32_t p = 0; p < w; ++p) g[p] = (double)((float)g[p] + (float)lv[p]); }
                else { for (int32_t p = 0; p < w; ++p) g[p] += lv[p]; }
            }
        }
    }
}

/* Rows X (n x stride) through the compact tables; out (n x n_out) holds the initial values; each row's leaves
   are added in tree order. */
void opml_forest_predict_compact(const cforest_t *f, const double *X, int64_t n, int64_t stride, double *out) {
    if (1 + 2 * f->n_num + f->n_cat > CMAX_SLOTS) return;
    if (f->mode == 0) c_walk(f, X, n, stride, out, 0);
    else if (f->mode == 1) c_walk(f, X, n, stride, out, 1);
    else c_walk(f, X, n, stride, out, 2);
}
