/* The oblivious-tree kernel of opml.serving.treecompile (CatBoost). Every tree of depth d tests one split
   per level; the leaf index has bit k set when level k's split holds. A model's distinct splits are
   evaluated once per row into a byte each, then every tree reads its d bytes:
   - float splits (kind 0 / 1): `(float)x > border` in float32, as CatBoost compares its float features;
     NaN gives 0 (kind 0) or 1 (kind 1);
   - category splits (kind 2): a byte table over the column's category codes, made by the compiler from
     the model itself: entry 0 for any code CatBoost never saw, entry c + 2 for code c in [-1, len - 3].
   Leaf values (`dim` doubles per leaf) are summed in double in tree order.
   Built by opml.serving.cbuild (no -ffast-math: comparisons and sums stay IEEE-exact). */

#include <stdint.h>
#include <stdlib.h>

typedef struct {
    const int32_t *feat;        /* per split: column of the row */
    const int32_t *kind;        /* per split: 0 / 1 float (NaN -> 0 / 1), 2 category table */
    const float *border;        /* per split: float32 border (kinds 0, 1) */
    const int32_t *table_off;   /* per split: offset of its table in `tables` (kind 2) */
    const int32_t *table_len;   /* per split: entries in its table (kind 2) */
    const uint8_t *tables;
    const int32_t *depth;       /* per tree */
    const int32_t *tree_split;  /* per tree, depth entries each: the split tested at each level */
    const int64_t *leaf_off;    /* per tree: offset of its first leaf value in `leaves` */
    const double *leaves;       /* per tree: 2**depth leaves x dim values */
    int32_t n_splits, n_trees, dim;
} oblivious_t;

static inline uint8_t split_bit(const oblivious_t *m, int32_t s, const double *x) {
    const double v = x[m->feat[s]];
    const int32_t kind = m->kind[s];
    if (kind == 2) {
        const int32_t len = m->table_len[s];
        const int64_t at = (v > -2.0 && v < (double)(len - 2)) ? (int64_t)v + 2 : 0;  /* trunc, like int64 cast */
        return m->tables[m->table_off[s] + at];
    }
    if (v != v) return (uint8_t)kind;
    return (float)v > m->border[s];
}

/* out: n x dim, holding the initial values; tree outputs are added. */
void opml_oblivious_predict(const oblivious_t *m, const double *X, int64_t n, int64_t stride, double *out) {
    uint8_t small[1024];
    uint8_t *bits = m->n_splits <= 1024 ? small : (uint8_t *)malloc((size_t)m->n_splits);
    if (bits == NULL) return;
    const int32_t dim = m->dim;
    for (int64_t i = 0; i < n; ++i) {
        const double *x = X + i * stride;
        for (int32_t s = 0; s < m->n_splits; ++s) bits[s] = split_bit(m, s, x);
        double *o = out + i * dim;
        const int32_t *ts = m->tree_split;
        if (dim == 1) {
            double sum = o[0];
            for (int32_t t = 0; t < m->n_trees; ++t) {
                const int32_t d = m->depth[t];
                uint32_t leaf = 0;
                for (int32_t k = 0; k < d; ++k) leaf |= (uint32_t)bits[ts[k]] << k;
                ts += d;
                sum += m->leaves[m->leaf_off[t] + leaf];
            }
            o[0] = sum;
        } else {
            for (int32_t t = 0; t < m->n_trees; ++t) {
                const int32_t d = m->depth[t];
                uint32_t leaf = 0;
                for (int32_t k = 0; k < d; ++k) leaf |= (uint32_t)bits[ts[k]] << k;
                ts += d;
                const double *lv = m->leaves + m->leaf_off[t] + (int64_t)leaf * dim;
                for (int32_t k = 0; k < dim; ++k) o[k] += lv[k];
            }
        }
    }
    if (bits != small) free(bits);
}
