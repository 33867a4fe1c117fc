/* Views of a lean run: the sites a work unit reads, recomputed layer by layer from the lean
 * cache (run_layer: the same bits as the forward pass) and held only while the unit needs them.
 * A lean cache holds the block inputs, rotated keys and values; a patch of z at layer 5 reads the
 * source's and the base's z of layer 5, so its unit's views hold those two arrays and nothing
 * else. */
#include <stdlib.h>
#include <string.h>
#include "patchsweep/core.h"
#include "patchsweep/sites.h"

unsigned sites_up_to(Stage stage) {
    unsigned mask = 0;
    for (int s = 0; s < N_SITES; s++)
        if (site_stage((Site)s) <= stage) mask |= SITE_BIT(s);
    return mask;
}

/* The sites of want a lean layer does not hold. */
static unsigned missing(const LayerActs *a, unsigned want) {
    unsigned mask = 0;
    for (int s = 0; s < N_SITES; s++)
        if ((want & SITE_BIT(s)) && !site_buffer(a, (Site)s)) mask |= SITE_BIT(s);
    return mask;
}

/* A lean layer of the given model shape, for counting what it holds. */
static LayerActs lean_shape(const ModelConfig *cfg) {
    static float held;
    LayerActs a = {0};
    a.resid_pre = a.resid_post = a.k_rot = a.v = &held;
    if (!cfg->rotary_dims) a.k = &held;
    return a;
}

size_t run_view_floats(const ModelConfig *cfg, int T, const unsigned *want) {
    LayerActs lean = lean_shape(cfg);
    size_t total = 0;
    for (int l = 0; l < cfg->n_layer; l++)
        for (int s = 0; s < N_SITES; s++)
            if (missing(&lean, want[l]) & SITE_BIT(s)) total += (size_t)T * site_width(cfg, (Site)s);
    return total;
}

void run_view_build(RunView *v, const Model *m, const RunCache *c, const unsigned *want, float *scratch_room) {
    const ModelConfig *cfg = &m->cfg;
    int L = cfg->n_layer;
    memset(v, 0, sizeof *v);
    v->run = *c;
    v->of = c->id;
    v->want = xmalloc(sizeof(unsigned) * (size_t)L);
    memcpy(v->want, want, sizeof(unsigned) * (size_t)L);
    v->run.layer = xmalloc(sizeof(LayerActs) * (size_t)L);
    memcpy(v->run.layer, c->layer, sizeof(LayerActs) * (size_t)L);
    if (!c->lean) return;
    size_t total = 0;
    for (int l = 0; l < L; l++)
        for (int s = 0; s < N_SITES; s++)
            if (missing(&c->layer[l], want[l]) & SITE_BIT(s)) total += (size_t)c->T * site_width(cfg, (Site)s);
    if (!total) return;
    v->block = alloc_floats(total);
    LayerActs scratch;
    float *scratch_block = NULL, *p = v->block;
    if (scratch_room) { /* the caller's room, laid out for one layer of T rows */
        size_t sizes[N_LAYER_ACTS];
        layer_acts_sizes(cfg, 1, c->T, c->T, 0, 0, sizes);
        layer_acts_point(&scratch, scratch_room, sizes);
    } else {
        layer_scratch_init(&scratch, &scratch_block, cfg, c->T, 0);
    }
    for (int l = 0; l < L; l++) {
        unsigned need = missing(&c->layer[l], want[l]);
        if (!need) continue;
        const LayerActs *full = run_layer(m, c, l, &scratch);
        for (int s = 0; s < N_SITES; s++) {
            if (!(need & SITE_BIT(s))) continue;
            size_t n = (size_t)c->T * site_width(cfg, (Site)s);
            memcpy(p, site_buffer(full, (Site)s), sizeof(float) * n);
            *site_field(&v->run.layer[l], (Site)s) = p;
            p += n;
        }
    }
    free(scratch_block);
}

int run_view_matches(const RunView *v, const ModelConfig *cfg, const RunCache *c, const unsigned *want) {
    return v->want && v->of == c->id && memcmp(v->want, want, sizeof(unsigned) * (size_t)cfg->n_layer) == 0;
}

void run_view_free(RunView *v) {
    free(v->block);
    free(v->want);
    free(v->run.layer);
    memset(v, 0, sizeof *v);
}

/* The set's view of c with want, reused when one matches, else built; marks it used. */
static const RunCache *view_of(ViewSet *set, const Model *m, const RunCache *c, const unsigned *want, char *used,
                               float *scratch_room) {
    if (!c) return NULL;
    for (int i = 0; i < set->n; i++)
        if (run_view_matches(set->views[i], &m->cfg, c, want)) {
            used[i] = 1;
            return &set->views[i]->run;
        }
    set->views = xrealloc(set->views, sizeof(RunView *) * (size_t)(set->n + 1));
    set->views[set->n] = xmalloc(sizeof(RunView));
    run_view_build(set->views[set->n], m, c, want, scratch_room);
    used[set->n] = 1;
    return &set->views[set->n++]->run;
}

void view_set_update(ViewSet *set, const Model *m, const RunCache *const *runs, const unsigned *const *wants, int n,
                     const RunCache **out, float *scratch_room) {
    char *used = xcalloc((size_t)set->n + (size_t)n, 1);
    for (int i = 0; i < n; i++) out[i] = view_of(set, m, runs[i], wants[i], used, scratch_room);
    /* the views kept move down the list; what out points to (the RunView structures) does not move */
    int kept = 0;
    for (int i = 0; i < set->n; i++) {
        if (used[i]) {
            set->views[kept++] = set->views[i];
            continue;
        }
        run_view_free(set->views[i]);
        free(set->views[i]);
    }
    set->n = kept;
    free(used);
}

void view_set_free(ViewSet *set) {
    for (int i = 0; i < set->n; i++) run_view_free(set->views[i]), free(set->views[i]);
    free(set->views);
    memset(set, 0, sizeof *set);
}
