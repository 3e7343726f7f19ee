/* The featurizer of opml.serving.cfeaturize: the record reader's matrix (columns x rows: numbers, NaN for
   missing, and category codes, -1 for missing or unseen) straight into a model's feature matrix (rows x
   features), in one pass, with the float64 operations of FeatureBlock._assemble and
   CompiledFeaturizer.transform (numpy) in the same order: median imputation, missing indicators, frequency
   tables (searchsorted + equality), the joint frequency key, one-hot blocks, the per-column scaler, then the
   ordinal codes (-1 or NaN for unseen). Plain C: no Python.h. */

#include <math.h>
#include <stdint.h>

typedef struct {
    int32_t nn;                  /* numeric columns */
    const double *median;        /* nn */
    int32_t n_ind;               /* missing indicators */
    const int32_t *ind;          /* n_ind: index into the numeric columns */
    int32_t n_freq;              /* frequency-encoded columns */
    const int32_t *freq_num;     /* n_freq: index into the numeric columns */
    const int32_t *freq_off;     /* n_freq + 1: offsets into freq_value / freq_share */
    const double *freq_value;    /* per table: its sorted, distinct, finite values */
    const double *freq_share;    /* per table: each value's share */
    int32_t joint;               /* 1: a joint frequency column follows */
    const int64_t *radix;        /* n_freq */
    int64_t n_uniq;
    const int64_t *uniq;         /* sorted, distinct joint keys */
    const double *joint_share;   /* n_uniq */
    int32_t nc;                  /* categorical columns */
    int32_t onehot;              /* 1: one-hot blocks in the dense part; 0: ordinal codes after it */
    const int64_t *levels;       /* nc: levels of each categorical column */
    int64_t max_onehot;
    int32_t unknown_nan;         /* ordinal codes: negative -> NaN */
    int32_t n_dense, width;
    int32_t scale_op;            /* 0 none, 1 x / a, 2 x - a, 3 (x - a) / b, 4 x * a + b (two roundings) */
    const double *scale_a, *scale_b;  /* n_dense each (when the op uses them) */
} feat_spec_t;

/* pos = numpy's searchsorted(a[0..n), x) (side left: the first i with !(a[i] < x); n >= 1), branch-free halving;
   a NaN x gives 0 here and n in numpy, which the callers' equality check makes alike (unseen) */
#define LOWER_BOUND(a, n, x, pos) do {                                          \
        __typeof__(a) b_ = (a);                                                 \
        for (int64_t len_ = (n); len_ > 1;) {                                   \
            const int64_t half_ = len_ >> 1;                                    \
            b_ = b_[half_ - 1] < (x) ? b_ + half_ : b_;                         \
            len_ -= half_;                                                      \
        }                                                                       \
        (pos) = (b_ - (a)) + (*b_ < (x));                                       \
    } while (0)

/* the level of x among a frequency table's L sorted values (searchsorted clamped to L - 1, then equality); L
   when unseen or NaN */
static inline int64_t level_of(const double *values, int64_t L, double x) {
    int64_t pos;
    LOWER_BOUND(values, L, x, pos);
    if (pos > L - 1) pos = L - 1;
    return values[pos] == x ? pos : L;
}

/* the same over the U sorted joint keys: the share of `key`, 0.0 when unseen */
static inline double joint_share_of(const int64_t *uniq, const double *share, int64_t U, int64_t key) {
    int64_t pos;
    LOWER_BOUND(uniq, U, key, pos);
    if (pos > U - 1) pos = U - 1;
    return uniq[pos] == key ? share[pos] : 0.0;
}

/* ndarray.astype(int64) of a code as x86-64 numpy does it: truncation; NaN and out-of-range give INT64_MIN */
static inline int64_t as_int64(double v) {
    if (!(v >= -9223372036854775808.0 && v < 9223372036854775808.0)) return INT64_MIN;
    return (int64_t)v;
}

/* M[row[k] * stride + i]: column row[k] of record i. num_row: nn rows of M, cat_row: nc rows. Z: n x width. */
void opml_featurize(const feat_spec_t *s, const double *M, int64_t stride, int64_t n, const int32_t *num_row,
                    const int32_t *cat_row, double *Z) {
    const int32_t nn = s->nn, width = s->width, n_dense = s->n_dense;
    double x[256];
    int64_t lv[64];
    for (int64_t i = 0; i < n; ++i) {
        double *z = Z + i * width;
        int32_t at = 0;
        for (int32_t k = 0; k < nn; ++k) {
            const double v = M[(int64_t)num_row[k] * stride + i];
            x[k] = v;
            z[at++] = isnan(v) ? s->median[k] : v;
        }
        for (int32_t k = 0; k < s->n_ind; ++k) z[at++] = isnan(x[s->ind[k]]) ? 1.0 : 0.0;
        for (int32_t k = 0; k < s->n_freq; ++k) {
            const int32_t a = s->freq_off[k];
            const int64_t L = s->freq_off[k + 1] - a;
            const int64_t level = level_of(s->freq_value + a, L, x[s->freq_num[k]]);
            lv[k] = level;
            z[at++] = level < L ? s->freq_share[a + level] : 0.0;
        }
        if (s->joint) {
            uint64_t key = 0;  /* numpy's int64 arithmetic wraps: so does this */
            for (int32_t k = 0; k < s->n_freq; ++k) key = key * (uint64_t)s->radix[k] + (uint64_t)lv[k];
            z[at++] = joint_share_of(s->uniq, s->joint_share, s->n_uniq, (int64_t)key);
        }
        if (s->onehot) {
            for (int32_t j = 0; j < s->nc; ++j) {
                const int64_t levels = s->levels[j];
                const int64_t k = levels < s->max_onehot ? levels : s->max_onehot;
                const int64_t w = k + (levels > s->max_onehot ? 1 : 0);
                const int64_t code = as_int64(M[(int64_t)cat_row[j] * stride + i]);
                for (int64_t c = 0; c < w; ++c) z[at + c] = 0.0;
                if (code >= 0 && code < k) z[at + code] = 1.0;
                else if (code >= k && w > k) z[at + k] = 1.0;
                at += (int32_t)w;
            }
        }
        switch (s->scale_op) {
            case 1: for (int32_t c = 0; c < n_dense; ++c) z[c] = z[c] / s->scale_a[c]; break;
            case 2: for (int32_t c = 0; c < n_dense; ++c) z[c] = z[c] - s->scale_a[c]; break;
            case 3: for (int32_t c = 0; c < n_dense; ++c) z[c] = (z[c] - s->scale_a[c]) / s->scale_b[c]; break;
            case 4:
                for (int32_t c = 0; c < n_dense; ++c) {
                    const double t = z[c] * s->scale_a[c];
                    z[c] = t + s->scale_b[c];
                }
                break;
            default: break;
        }
        if (!s->onehot) {
            for (int32_t j = 0; j < s->nc; ++j) {
                const double v = M[(int64_t)cat_row[j] * stride + i];
                z[n_dense + j] = s->unknown_nan && v < 0 ? NAN : v;
            }
        }
    }
}
