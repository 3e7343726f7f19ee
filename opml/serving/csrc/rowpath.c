/* One row through every tree model of an ensemble in one call (opml.serving.rowpath).
   Built as one translation unit after treekernel.c and catboost.c, whose forest_t / oblivious_t tables
   and walkers it calls: a member is its forest's table (the same one its own kernel reads; a forest with the
   compact walker's tables, treecompile's CompiledForest.compact, takes that walker), the offset of
   its features in the row buffer, and the offset of its margins in the output (which holds the initial
   values; tree outputs are added, exactly as the member's own kernel adds them for one row). */

typedef struct {
    const void *model;  /* forest_t (kind 0), oblivious_t (kind 1) or cforest_t (kind 2: the compact walker) */
    int32_t kind, x_off, width, out_off;
} member_t;

void opml_members_predict(const member_t *members, int64_t n_members, const double *x, double *out) {
    for (int64_t i = 0; i < n_members; ++i) {
        const member_t *m = members + i;
        if (m->kind == 2)
            opml_forest_predict_compact((const cforest_t *)m->model, x + m->x_off, 1, m->width, out + m->out_off);
        else if (m->kind == 0)
            opml_forest_predict((const forest_t *)m->model, x + m->x_off, 1, m->width, out + m->out_off);
        else
            opml_oblivious_predict((const oblivious_t *)m->model, x + m->x_off, 1, m->width, out + m->out_off);
    }
}
