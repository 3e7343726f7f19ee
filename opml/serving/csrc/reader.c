/* The record reader of opml.serving.reader: a batch of JSON records read into a column matrix in one
   pass through the CPython API. Built by opml.serving.cbuild against Python.h and loaded with
   ctypes.PyDLL (the GIL stays held while it reads the borrowed objects). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* records: a list; names: a tuple of str (schema order); kinds[j]: 0 numeric, 1 categorical; lookups: a
   tuple holding, per categorical column, a dict str -> int code (None for numeric columns).
   out[j * n + i] = column j of record i: a number (NaN for null), or a category code (-1: null or unseen).
   Returns -1 when every record is a dict with exactly the schema's keys and values of the right kinds
   (numeric: int, float or null; categorical: str or null), else the index of the first record that is not. */
Py_ssize_t opml_read_records(PyObject *records, PyObject *names, const int32_t *kinds, PyObject *lookups,
                             double *out) {
    const Py_ssize_t n = PyList_GET_SIZE(records), m = PyTuple_GET_SIZE(names);
    for (Py_ssize_t i = 0; i < n; ++i) {
        /* a key's __eq__ could run Python code (never for parsed JSON, whose keys are plain str): hold the
           record, and stop if the list shrank under us */
        if (i >= PyList_GET_SIZE(records)) return i;
        PyObject *rec = PyList_GET_ITEM(records, i);
        if (!PyDict_CheckExact(rec) || PyDict_GET_SIZE(rec) != m) return i;
        Py_INCREF(rec);
        Py_ssize_t bad = -1;
        for (Py_ssize_t j = 0; j < m && bad < 0; ++j) {
            PyObject *v = PyDict_GetItemWithError(rec, PyTuple_GET_ITEM(names, j));
            double *o = out + j * n + i;
            if (v == NULL) { PyErr_Clear(); bad = i; }
            else if (kinds[j] == 0) {
                if (v == Py_None) *o = NAN;
                else if (PyFloat_CheckExact(v)) *o = PyFloat_AS_DOUBLE(v);
                else if (PyLong_CheckExact(v)) {
                    double d = PyLong_AsDouble(v);
                    if (d == -1.0 && PyErr_Occurred()) { PyErr_Clear(); bad = i; }
                    else *o = d;
                } else bad = i;
            } else {
                if (v == Py_None) *o = -1.0;
                else if (PyUnicode_CheckExact(v)) {
                    PyObject *code = PyDict_GetItemWithError(PyTuple_GET_ITEM(lookups, j), v);
                    if (code == NULL) {
                        if (PyErr_Occurred()) { PyErr_Clear(); bad = i; }
                        else *o = -1.0;
                    } else *o = (double)PyLong_AsLong(code);
                } else bad = i;
            }
        }
        Py_DECREF(rec);
        if (bad >= 0) return bad;
    }
    return -1;
}

/* ---- a plain JSON body read straight into the same matrix, with no Python object per value ----
   opml_parse_json takes only {"data": [record, ...]} whose records are objects with exactly the schema's
   keys, numbers or null in numeric columns, strings or null in categorical ones, keys and strings in
   plain ASCII without escapes, integers of at most 18 digits and finite, normal-range floats. Anything
   else -- another form, a problem, or just a body this reader does not handle -- returns -1 and the
   caller parses the body the usual way (orjson, then opml_read_records), which names any problem. So a
   body read here gives the values orjson would give: integers exactly (int64 -> double rounds to nearest,
   like PyLong_AsDouble), floats through strtod (correctly rounded, like orjson). */
typedef struct {
    int32_t m;                  /* columns, at most 64 */
    const char *names;          /* column names, concatenated */
    const int32_t *name_off;    /* m + 1 offsets into names */
    const int32_t *kinds;       /* 0 numeric, 1 categorical */
    const char *levels;         /* category levels (UTF-8), concatenated */
    const int32_t *level_off;   /* per level: offset into levels, plus one end offset */
    const int32_t *level_code;  /* per level: its code */
    const int32_t *slot_off;    /* per column: offset of its hash slots in `slots` */
    const int32_t *slot_mask;   /* per column: its number of slots (a power of two) - 1 */
    const int32_t *slots;       /* level index, -1: empty */
    const int32_t *name_plain;  /* per column: 1 when its name is plain ASCII text (no quote, backslash or control) */
    const uint64_t *name_words; /* per column: head, tail (text_words of its name) */
    const uint64_t *level_words;/* per level: head, tail */
} json_schema_t;

/* Strings are compared and hashed by two little-endian words: tail, the last min(n, 8) bytes, and head, the
   first 8 when n > 8 (else 0); with the length they are the whole text up to 16 bytes. Python's side is
   opml.serving.reader.text_words / text_hash. Little-endian machines only (else every body takes orjson). */
static inline uint64_t load64(const char *p) { uint64_t w; memcpy(&w, p, 8); return w; }

/* v[0..n): its words; `lo`: the lowest address readable (the tail word of a short text is read from before v) */
static inline void text_words(const char *v, int64_t n, const char *lo, uint64_t *head, uint64_t *tail) {
    if (n >= 8) *tail = load64(v + n - 8);
    else if (n > 0 && v + n - 8 >= lo) *tail = load64(v + n - 8) >> (8 * (8 - n));
    else {
        uint64_t t = 0;
        for (int64_t i = 0; i < n; ++i) t |= (uint64_t)(uint8_t)v[i] << (8 * i);
        *tail = t;
    }
    *head = n > 8 ? load64(v) : 0;
}

static inline uint32_t text_hash(uint64_t head, uint64_t tail, int64_t n) {
    const uint64_t h = tail * 0x9E3779B97F4A7C15ull ^ head * 0xC2B2AE3D27D4EB4Full ^ (uint64_t)n * 0x165667B19E3779F9ull;
    return (uint32_t)(h >> 32);
}

static inline int same_bytes(const char *a, const char *b, int64_t n) {
    for (int64_t i = 0; i < n; ++i) if (a[i] != b[i]) return 0;
    return 1;
}

static inline const char *skip_ws(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) ++p;
    return p;
}

/* the end of a plain string's text starting at p (just after the quote), or NULL */
static inline const char *plain_string(const char *p, const char *end) {
    while (p < end && *p != '"') {
        const uint8_t c = (uint8_t)*p;
        if (c == '\\' || c < 0x20 || c >= 0x80) return NULL;
        ++p;
    }
    return p < end ? p : NULL;
}

static inline int is_digit(char c) { return c >= '0' && c <= '9'; }

static const double POW10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14,
                               1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* A JSON number at p: its end, the value in *v; NULL when it is not one (or one left to orjson). Decimals
   whose digits fit 2**53 with a power of ten up to 22 take one IEEE multiplication or division of two exact
   doubles (correctly rounded: Clinger's fast path); others go through strtod. */
static const char *number(const char *p, const char *end, double *v) {
    const char *q = p;
    const int neg = *q == '-';
    if (neg) ++q;
    if (q >= end) return NULL;
    const char *d0 = q;
    uint64_t mant = 0;
    int32_t sig = 0;  /* digits in mant, leading zeros excepted */
    if (*q == '0') ++q;
    else if (*q >= '1' && *q <= '9') {
        while (q < end && is_digit(*q)) { if (sig < 19) mant = mant * 10 + (uint64_t)(*q - '0'); ++sig; ++q; }
    } else return NULL;
    const int64_t digits = q - d0;
    int integer = 1;
    int32_t exp10 = 0;
    if (q < end && *q == '.') {
        const char *f = ++q;
        while (q < end && is_digit(*q)) {
            if (sig > 0 || *q != '0') { if (sig < 19) mant = mant * 10 + (uint64_t)(*q - '0'); ++sig; }
            --exp10;
            ++q;
        }
        if (q == f) return NULL;
        integer = 0;
    }
    if (q < end && (*q == 'e' || *q == 'E')) {
        ++q;
        int eneg = 0;
        if (q < end && (*q == '+' || *q == '-')) { eneg = *q == '-'; ++q; }
        const char *e = q;
        int32_t x = 0;
        while (q < end && is_digit(*q)) { if (q - e < 6) x = x * 10 + (*q - '0'); ++q; }
        if (q == e) return NULL;
        if (q - e >= 6) sig = 99;  /* a huge exponent: strtod decides */
        exp10 += eneg ? -x : x;
        integer = 0;
    }
    if (integer) {
        if (digits > 18) return NULL;
        int64_t x = 0;
        for (const char *c = d0; c < q; ++c) x = x * 10 + (*c - '0');
        *v = (double)(neg ? -x : x);
        return q;
    }
    if (sig <= 19 && mant <= ((uint64_t)1 << 53) && exp10 >= -22 && exp10 <= 22) {
        const double m = (double)mant;
        const double d = exp10 < 0 ? m / POW10[-exp10] : m * POW10[exp10];
        *v = neg ? -d : d;
        return q;
    }
    char tmp[64];
    const int64_t n = q - p;
    if (n >= (int64_t)sizeof tmp) return NULL;
    memcpy(tmp, p, (size_t)n);
    tmp[n] = 0;
    char *stop;
    errno = 0;
    const double d = strtod(tmp, &stop);
    if (stop != tmp + n || errno != 0 || !isfinite(d)) return NULL;  /* ERANGE: overflow or a subnormal */
    *v = d;
    return q;
}

static inline int name_is(const json_schema_t *s, int32_t j, const char *k, int64_t n) {
    const int32_t a = s->name_off[j], b = s->name_off[j + 1];
    return b - a == n && same_bytes(s->names + a, k, n);
}

/* a text of n bytes with words (head, tail) is `ref` (whose words are ref_words): the middle bytes are compared
   only past 16 */
static inline int same_text(const char *ref, const uint64_t *ref_words, const char *v, int64_t n, uint64_t head,
                            uint64_t tail) {
    return ref_words[0] == head && ref_words[1] == tail && (n <= 16 || same_bytes(ref + 8, v + 8, n - 16));
}

/* The key at k (just after its quote) when it is column j's plain name: the closing quote's address, else NULL.
   The same answer as plain_string then name_is (a plain name's text is its JSON text), without a scan. */
static inline const char *key_is(const json_schema_t *s, int32_t j, const char *k, const char *end,
                                 const char *lo) {
    const int32_t a = s->name_off[j], n = s->name_off[j + 1] - a;
    if (!s->name_plain[j] || end - k <= n || k[n] != '"') return NULL;
    uint64_t head, tail;
    text_words(k, n, lo, &head, &tail);
    return same_text(s->names + a, s->name_words + 2 * j, k, n, head, tail) ? k + n : NULL;
}

/* the first byte at or after p that ends a plain string's text or is not allowed in one (a quote, a backslash,
   a control byte or one past ASCII), 8 bytes at a time; `end` when there is none */
static inline const char *string_stop(const char *p, const char *end) {
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    while (end - p >= 8) {
        const uint64_t x = load64(p), q = x ^ (ones * '"'), b = x ^ (ones * '\\');
        /* per byte: zero (a quote or backslash), under 0x20, or with its high bit set; the lowest flagged byte is
           exact (borrows only flag bytes above a true one) */
        const uint64_t flags = (((q - ones) & ~q) | ((b - ones) & ~b) | ((x - ones * 0x20) & ~x) | x) & highs;
        if (flags) return p + (__builtin_ctzll(flags) >> 3);
        p += 8;
    }
    while (p < end) {
        const uint8_t c = (uint8_t)*p;
        if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80) return p;
        ++p;
    }
    return end;
}

/* The code of the plain string at v (just after its quote): -1.0 when unseen; *stop: its closing quote, NULL
   when it is not a plain string */
static inline double category(const json_schema_t *s, int32_t j, const char *v, const char *end, const char *lo,
                              const char **stop) {
    const char *p = string_stop(v, end);
    if (p >= end || *p != '"') { *stop = NULL; return -1.0; }
    *stop = p;
    const int64_t n = p - v;
    uint64_t head, tail;
    text_words(v, n, lo, &head, &tail);
    const uint32_t mask = (uint32_t)s->slot_mask[j];
    const int32_t *slots = s->slots + s->slot_off[j];
    for (uint32_t h = text_hash(head, tail, n) & mask;; h = (h + 1) & mask) {
        const int32_t k = slots[h];
        if (k < 0) return -1.0;
        const int32_t a = s->level_off[k], b = s->level_off[k + 1];
        if (b - a == n && same_text(s->levels + a, s->level_words + 2 * k, v, n, head, tail))
            return (double)s->level_code[k];
    }
}

/* out[j * cap + i] as opml_read_records writes out[j * n + i]. Returns the records read (n <= cap), or -1. */
int64_t opml_parse_json(const json_schema_t *s, const char *buf, int64_t len, double *out, int64_t cap) {
    const char *p = skip_ws(buf, buf + len), *end = buf + len;
    const int32_t m = s->m;
    const uint64_t all = m >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << m) - 1);
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
    return -1;  /* the words of text_words are little-endian */
#endif
    if (m < 1 || m > 64 || p >= end || *p != '{') return -1;
    p = skip_ws(p + 1, end);
    if (end - p < 6 || memcmp(p, "\"data\"", 6) != 0) return -1;
    p = skip_ws(p + 6, end);
    if (p >= end || *p != ':') return -1;
    p = skip_ws(p + 1, end);
    if (p >= end || *p != '[') return -1;
    p = skip_ws(p + 1, end);
    int64_t n = 0;
    for (;;) {
        if (n >= cap || p >= end || *p != '{') return -1;
        p = skip_ws(p + 1, end);
        uint64_t seen = 0;
        int32_t next = 0;  /* the column expected next: records usually keep the schema's order */
        for (;;) {
            if (p >= end || *p != '"') return -1;
            const char *k = p + 1;
            int32_t j = -1;
            if (next < m && (p = key_is(s, next, k, end, buf)) != NULL) j = next;  /* the usual case: schema order */
            else {
                if ((p = plain_string(k, end)) == NULL) return -1;
                const int64_t kn = p - k;
                for (int32_t c = 0; c < m; ++c) if (name_is(s, c, k, kn)) { j = c; break; }
            }
            if (j < 0 || ((seen >> j) & 1)) return -1;
            seen |= (uint64_t)1 << j;
            next = j + 1;
            p = skip_ws(p + 1, end);
            if (p >= end || *p != ':') return -1;
            p = skip_ws(p + 1, end);
            if (p >= end) return -1;
            double v;
            if (*p == 'n') {
                if (end - p < 4 || memcmp(p, "null", 4) != 0) return -1;
                p += 4;
                v = s->kinds[j] == 0 ? NAN : -1.0;
            } else if (s->kinds[j] == 0) {
                if ((p = number(p, end, &v)) == NULL) return -1;
            } else if (*p == '"') {
                v = category(s, j, p + 1, end, buf, &p);
                if (p == NULL) return -1;
                ++p;
            } else return -1;
            out[(int64_t)j * cap + n] = v;
            p = skip_ws(p, end);
            if (p < end && *p == ',') { p = skip_ws(p + 1, end); continue; }
            if (p < end && *p == '}') { ++p; break; }
            return -1;
        }
        if (seen != all) return -1;
        ++n;
        p = skip_ws(p, end);
        if (p < end && *p == ',') { p = skip_ws(p + 1, end); continue; }
        if (p < end && *p == ']') { ++p; break; }
        return -1;
    }
    p = skip_ws(p, end);
    if (p >= end || *p != '}') return -1;
    return skip_ws(p + 1, end) == end ? n : -1;
}
