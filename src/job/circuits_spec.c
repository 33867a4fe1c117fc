/* "circuits": {"sets": [...], "granularity": [...], "ablation": [...], "positions": "all" | "specific"}
 * (docs/circuits.md, "Job key"). Parsing checks structure and the rules that need no model;
 * circuits_check the names against the model's edge graph and the job's position columns. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/core.h"
#include "patchsweep/plan.h"
#include "circuits_spec.h"

static const char *const set_keys[] = {"name", "edges", "nodes", "rank", "seed", "k", "threshold", "score", "metric",
                                       "positions"};
static const char *const edge_arrays[] = {"exact", "eap", "eap_ig", "eap_ig_act"};
static const char *const node_arrays[] = {"exact", "atp", "atp_qk", "atp_star"};
static const char *const ablation_names[] = {"pair", "mean", "resample", "zero"};

static int unknown_key(const cJSON *obj, const char *where, const char *const *allowed, int n) {
    for (const cJSON *it = obj->child; it; it = it->next) {
        int found = 0;
        for (int i = 0; i < n; i++) found |= strcmp(it->string, allowed[i]) == 0;
        if (!found) return ps_fail(PS_EUSER, "%s: unknown key \"%s\"", where, it->string);
    }
    return PS_OK;
}

static int index_of(const char *const *names, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0) return i;
    return -1;
}

/* "positions": "all" | "specific" of the key or of a set. */
static int parse_positions(const cJSON *v, const char *where, int *specific) {
    if (!v) return PS_OK;
    if (!cJSON_IsString(v) || (strcmp(v->valuestring, "all") != 0 && strcmp(v->valuestring, "specific") != 0))
        return ps_fail(PS_EUSER, "%s: \"positions\" must be \"all\" or \"specific\"", where);
    *specific = strcmp(v->valuestring, "specific") == 0;
    return PS_OK;
}

static int string_list(const cJSON *arr, const char *where, const char *key, char ***out, int *n) {
    if (!cJSON_IsArray(arr)) return ps_fail(PS_EUSER, "%s: \"%s\" must be an array of names", where, key);
    *n = 0;
    *out = xcalloc((size_t)cJSON_GetArraySize(arr) + 1, sizeof(char *));
    for (const cJSON *it = arr->child; it; it = it->next) {
        if (!cJSON_IsString(it)) return ps_fail(PS_EUSER, "%s: %s[%d] must be a string", where, key, *n);
        (*out)[(*n)++] = xstrdup(it->valuestring);
    }
    return PS_OK;
}

/* "rank": "edges/X" | "effects/X" | "random", and what the job must have computed for it. */
static int parse_rank(CircuitSet *s, const Job *job, const char *rank, const char *where) {
    const char *slash = strchr(rank, '/');
    if (strcmp(rank, "random") == 0) {
        s->by = RANK_RANDOM;
        return PS_OK;
    }
    int edges = slash && strncmp(rank, "edges/", 6) == 0, effects = slash && strncmp(rank, "effects/", 8) == 0;
    const char *array = slash ? slash + 1 : "";
    int which = edges ? index_of(edge_arrays, 4, array) : effects ? index_of(node_arrays, 4, array) : -1;
    if (which < 0)
        return ps_fail(PS_EUSER, "%s: \"rank\" \"%s\" is not a ranking (edges/exact, edges/eap, edges/eap_ig, edges/eap_ig_act, "
                                 "effects/exact, effects/atp, effects/atp_qk, effects/atp_star, random)", where, rank);
    s->by = edges ? RANK_EDGES : RANK_EFFECTS;
    snprintf(s->array, sizeof s->array, "%s", array);
    int computed = which == 0 ? job->exact : edges ? job->edge_estimates[which - 1] : job->estimates[which - 1];
    if (edges && !job->edges.on) return ps_fail(PS_EUSER, "%s: \"rank\" \"%s\" needs a job with \"edges\"", where, rank);
    int sites = 0;
    for (int i = 0; i < job->n_sites; i++) sites |= job->sites[i] == SITE_Z || job->sites[i] == SITE_MLP_OUT;
    if (effects && !sites)
        return ps_fail(PS_EUSER, "%s: \"rank\" \"%s\" reads the job's z and mlp_out nodes, and the job has neither", where, rank);
    if (!computed) return ps_fail(PS_EUSER, "%s: \"rank\" \"%s\": the job does not compute %s", where, rank, array);
    return PS_OK;
}

/* "k": distinct positive sizes. */
static int parse_k(CircuitSet *s, const cJSON *arr, const char *where) {
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) == 0)
        return ps_fail(PS_EUSER, "%s: \"k\" must be a non-empty array of positive integers", where);
    s->k = xmalloc(sizeof(int) * (size_t)cJSON_GetArraySize(arr));
    for (const cJSON *it = arr->child; it; it = it->next) {
        double v = cJSON_IsNumber(it) ? it->valuedouble : -1.0;
        if (v != floor(v) || v < 1 || v > JSON_SIZE_MAX)
            return ps_fail(PS_EUSER, "%s: k[%d] must be a positive integer", where, s->n_k);
        for (int j = 0; j < s->n_k; j++)
            if (s->k[j] == (int)v) return ps_fail(PS_EUSER, "%s: k lists %d twice", where, (int)v);
        s->k[s->n_k++] = (int)v;
    }
    return PS_OK;
}

static int parse_set(CircuitSet *s, const Job *job, const cJSON *obj, const char *where, int specific) {
    if (!cJSON_IsObject(obj)) return ps_fail(PS_EUSER, "%s: a set must be an object", where);
    int rc = unknown_key(obj, where, set_keys, (int)(sizeof set_keys / sizeof set_keys[0]));
    const char *name = NULL, *rank = NULL, *score = "abs", *metric = NULL;
    if (!rc) rc = json_get_string(obj, "name", where, 1, &name);
    if (!rc && (!name[0] || strlen(name) > 31)) rc = ps_fail(PS_EUSER, "%s: \"name\" must have 1 to 31 characters", where);
    if (rc) return rc;
    snprintf(s->name, sizeof s->name, "%s", name);
    const cJSON *edges = cJSON_GetObjectItemCaseSensitive(obj, "edges"), *nodes = cJSON_GetObjectItemCaseSensitive(obj, "nodes");
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(obj, "k"), *threshold = cJSON_GetObjectItemCaseSensitive(obj, "threshold");
    if ((rc = json_get_string(obj, "rank", where, 0, &rank))) return rc;
    if (!!edges + !!nodes + !!rank != 1)
        return ps_fail(PS_EUSER, "%s: give exactly one of \"edges\", \"nodes\" and \"rank\"", where);
    s->specific = specific;
    if ((rc = parse_positions(cJSON_GetObjectItemCaseSensitive(obj, "positions"), where, &s->specific))) return rc;
    if (!rank) {
        for (int i = 4; i < (int)(sizeof set_keys / sizeof set_keys[0]) - 1; i++)
            if (cJSON_GetObjectItemCaseSensitive(obj, set_keys[i]))
                return ps_fail(PS_EUSER, "%s: \"%s\" is for ranked sets (\"rank\")", where, set_keys[i]);
        s->kind = edges ? CSET_EDGES : CSET_NODES;
        return string_list(edges ? edges : nodes, where, edges ? "edges" : "nodes", &s->names, &s->n_names);
    }
    s->kind = CSET_RANK;
    if ((rc = parse_rank(s, job, rank, where))) return rc;
    long seed = 0;
    if (s->by != RANK_RANDOM && cJSON_GetObjectItemCaseSensitive(obj, "seed"))
        return ps_fail(PS_EUSER, "%s: \"seed\" is for \"rank\": \"random\"", where);
    if ((rc = json_get_int(obj, "seed", where, 0, 0, JSON_SEED_MAX, &seed))) return rc;
    s->seed = (uint64_t)seed;
    if (!!k == !!threshold) return ps_fail(PS_EUSER, "%s: a ranked set needs exactly one of \"k\" and \"threshold\"", where);
    if (threshold && s->by == RANK_RANDOM) return ps_fail(PS_EUSER, "%s: \"threshold\" needs scores; \"random\" has none", where);
    if (k && (rc = parse_k(s, k, where))) return rc;
    if (threshold) {
        s->has_threshold = 1;
        if ((rc = json_get_number(obj, "threshold", where, 1, &s->threshold))) return rc;
    }
    if ((rc = json_get_string(obj, "score", where, 0, &score))) return rc;
    if (strcmp(score, "abs") != 0 && strcmp(score, "signed") != 0)
        return ps_fail(PS_EUSER, "%s: \"score\" must be \"abs\" or \"signed\"", where);
    s->signed_score = strcmp(score, "signed") == 0;
    if ((rc = json_get_string(obj, "metric", where, 0, &metric))) return rc;
    for (int i = 0; metric && i < job->n_metrics && s->metric == 0; i++)
        if (strcmp(metric, metric_name(job->metrics[i])) == 0) s->metric = i + 1;
    if (metric && s->metric == 0) return ps_fail(PS_EUSER, "%s: \"metric\" \"%s\" is not one of the job's metrics", where, metric);
    s->metric = metric ? s->metric - 1 : 0;
    return PS_OK;
}

/* One entry of "ablation": a name, or {"mean": {"prompts_file": F}}, or {"resample": {"seeds": n, "seed": s}}. */
static int parse_ablation(CircuitsSpec *c, CircuitChoice *ch, const Job *job, const cJSON *v, const char *where,
                          const char *dir) {
    const cJSON *body = NULL;
    const char *name = cJSON_IsString(v) ? v->valuestring : NULL;
    if (cJSON_IsObject(v) && cJSON_GetArraySize(v) == 1) name = v->child->string, body = v->child;
    int kind = name ? index_of(ablation_names, 4, name) : -1;
    if (kind < 0 || (body && kind != ABLATE_MEAN && kind != ABLATE_RESAMPLE) || (body && !cJSON_IsObject(body)))
        return ps_fail(PS_EUSER, "%s: an ablation is \"pair\", \"mean\", \"resample\", \"zero\", {\"mean\": {\"prompts_file\": F}} "
                                 "or {\"resample\": {\"seeds\": N, \"seed\": S}}", where);
    *ch = (CircuitChoice){.ablation = (Ablation)kind, .seeds = 1, .mean_set = -1};
    if (kind == ABLATE_PAIR && job->corruption != CORR_PAIR)
        return ps_fail(PS_EUSER, "%s: \"pair\" ablation reads the corrupt prompts, and the job's corruption is %s", where,
                       corruption_name(job->corruption));
    if (!body) return PS_OK;
    int rc;
    if (kind == ABLATE_RESAMPLE) {
        static const char *const keys[] = {"seeds", "seed"};
        long seeds = 1, seed = 0;
        if ((rc = unknown_key(body, where, keys, 2))) return rc;
        if ((rc = json_get_int(body, "seeds", where, 0, 1, 1 << 16, &seeds))) return rc;
        if ((rc = json_get_int(body, "seed", where, 0, 0, JSON_SEED_MAX, &seed))) return rc;
        ch->seeds = (int)seeds, ch->seed = (uint64_t)seed;
        return PS_OK;
    }
    static const char *const keys[] = {"prompts_file"};
    const char *file = NULL;
    if ((rc = unknown_key(body, where, keys, 1)) || (rc = json_get_string(body, "prompts_file", where, 1, &file))) return rc;
    for (int i = 0; i < c->n_mean_sets; i++)
        if (strcmp(c->mean_sets[i].label, file) == 0) ch->mean_set = i;
    if (ch->mean_set >= 0) return PS_OK;
    char path[PATH_CAP];
    if (strlen(file) >= sizeof c->mean_sets[0].label || path_join(path, sizeof path, dir, file))
        return ps_fail(PS_EUSER, "%s: \"prompts_file\" \"%s\" is too long", where, file);
    c->mean_sets = xrealloc(c->mean_sets, sizeof(MeanSet) * (size_t)(c->n_mean_sets + 1));
    MeanSet *ms = &c->mean_sets[c->n_mean_sets];
    memset(ms, 0, sizeof *ms);
    snprintf(ms->label, sizeof ms->label, "%s", file);
    ch->mean_set = c->n_mean_sets++;
    rc = job_read_prompts_file(path, &ms->prompts, &ms->n);
    if (!rc && ms->n == 0) rc = ps_fail(PS_EUSER, "%s: no prompts", path);
    return rc ? ps_fail_context(rc, "%s: \"prompts_file\"", where) : PS_OK;
}

static void choice_name(CircuitsSpec *c, CircuitChoice *ch) {
    const char *g = ch->nodes ? "nodes" : "edges", *a = ablation_names[ch->ablation];
    if (ch->ablation == ABLATE_MEAN && ch->mean_set >= 0)
        snprintf(ch->name, sizeof ch->name, "%s %s:%s", g, a, c->mean_sets[ch->mean_set].label);
    else if (ch->ablation == ABLATE_RESAMPLE && ch->seed)
        snprintf(ch->name, sizeof ch->name, "%s %s:%d:seed%llu", g, a, ch->seeds, (unsigned long long)ch->seed);
    else if (ch->ablation == ABLATE_RESAMPLE && ch->seeds > 1)
        snprintf(ch->name, sizeof ch->name, "%s %s:%d", g, a, ch->seeds);
    else
        snprintf(ch->name, sizeof ch->name, "%s %s", g, a);
}

static int parse_body(CircuitsSpec *c, Job *job, const cJSON *v, const char *where, const char *dir) {
    static const char *const keys[] = {"sets", "granularity", "ablation", "positions"};
    if (!cJSON_IsObject(v)) return ps_fail(PS_EUSER, "%s: \"circuits\" must be an object", where);
    int rc = unknown_key(v, where, keys, 4), specific = 0;
    if (rc || (rc = parse_positions(cJSON_GetObjectItemCaseSensitive(v, "positions"), where, &specific))) return rc;
    const cJSON *sets = cJSON_GetObjectItemCaseSensitive(v, "sets");
    if (!cJSON_IsArray(sets) || cJSON_GetArraySize(sets) == 0)
        return ps_fail(PS_EUSER, "%s: \"sets\" must be a non-empty array of sets", where);
    c->sets = xcalloc((size_t)cJSON_GetArraySize(sets), sizeof(CircuitSet));
    for (const cJSON *it = sets->child; it; it = it->next) {
        char inner[4300];
        snprintf(inner, sizeof inner, "%s.sets[%d]", where, c->n_sets);
        CircuitSet *s = &c->sets[c->n_sets++];
        if ((rc = parse_set(s, job, it, inner, specific))) return rc;
        for (int j = 0; j < c->n_sets - 1; j++)
            if (strcmp(c->sets[j].name, s->name) == 0) return ps_fail(PS_EUSER, "%s: the name \"%s\" is taken", inner, s->name);
    }
    /* granularity x ablation, granularity-major */
    const cJSON *gran = cJSON_GetObjectItemCaseSensitive(v, "granularity"), *abl = cJSON_GetObjectItemCaseSensitive(v, "ablation");
    int G = gran ? cJSON_GetArraySize(gran) : 1, A = abl ? cJSON_GetArraySize(abl) : 1, levels[2] = {0, 0};
    if (gran && (!cJSON_IsArray(gran) || G == 0 || G > 2))
        return ps_fail(PS_EUSER, "%s: \"granularity\" must be a list of \"edges\" and \"nodes\"", where);
    if (abl && (!cJSON_IsArray(abl) || A == 0))
        return ps_fail(PS_EUSER, "%s: \"ablation\" must be a non-empty list of ablations", where);
    for (int g = 0; gran && g < G; g++) {
        const cJSON *it = cJSON_GetArrayItem(gran, g);
        int nodes = cJSON_IsString(it) && strcmp(it->valuestring, "nodes") == 0;
        if (!cJSON_IsString(it) || (!nodes && strcmp(it->valuestring, "edges") != 0))
            return ps_fail(PS_EUSER, "%s: granularity[%d] must be \"edges\" or \"nodes\"", where, g);
        if (g && levels[0] == nodes) return ps_fail(PS_EUSER, "%s: \"granularity\" lists \"%s\" twice", where, it->valuestring);
        levels[g] = nodes;
    }
    c->choices = xcalloc((size_t)G * A, sizeof(CircuitChoice));
    for (int g = 0; g < G; g++)
        for (int a = 0; a < A; a++) {
            CircuitChoice *ch = &c->choices[c->n_choices++];
            char inner[4300];
            snprintf(inner, sizeof inner, "%s.ablation[%d]", where, a);
            if (abl && (rc = parse_ablation(c, ch, job, cJSON_GetArrayItem(abl, a), inner, dir))) return rc;
            if (!abl) *ch = (CircuitChoice){.ablation = ABLATE_PAIR, .seeds = 1, .mean_set = -1};
            if (!abl && job->corruption != CORR_PAIR)
                return ps_fail(PS_EUSER, "%s: the default ablation \"pair\" reads the corrupt prompts, and the job's corruption is %s; "
                                         "give \"ablation\"", where, corruption_name(job->corruption));
            ch->nodes = levels[g];
            choice_name(c, ch);
            for (int j = 0; j < c->n_choices - 1; j++)
                if (strcmp(c->choices[j].name, ch->name) == 0)
                    return ps_fail(PS_EUSER, "%s: \"%s\" is listed twice", where, ch->name);
        }
    return PS_OK;
}

int circuits_parse(Job *job, const cJSON *v, const char *where, const char *dir) {
    if (!v) return PS_OK;
    char inner[4200];
    snprintf(inner, sizeof inner, "%s: circuits", where);
    job->circuits = xcalloc(1, sizeof(CircuitsSpec));
    return parse_body(job->circuits, job, v, inner, dir);
}

/* ---- against the model ------------------------------------------------------------------------- */

/* Whether name is an upstream node of the model (embed, L{l}.H{h}, L{l}.mlp). */
static int is_upstream(const ModelConfig *cfg, const char *name) {
    char text[32];
    if (strcmp(name, "embed") == 0) return 1;
    for (int l = 0; l < cfg->n_layer; l++) {
        snprintf(text, sizeof text, "L%d.mlp", l);
        if (strcmp(name, text) == 0) return 1;
        for (int h = 0; h < cfg->n_head; h++) {
            snprintf(text, sizeof text, "L%d.H%d", l, h);
            if (strcmp(name, text) == 0) return 1;
        }
    }
    return 0;
}

static int check_set(const Job *job, const CircuitSet *s, const ModelConfig *cfg, const Edge *edges, long E, const char *where) {
    if (s->kind == CSET_NODES) {
        for (int i = 0; i < s->n_names; i++)
            if (!is_upstream(cfg, s->names[i]))
                return ps_fail(PS_EUSER, "%s: nodes[%d] \"%s\" is not an upstream node of the model (embed, L{l}.H{h}, L{l}.mlp)",
                               where, i, s->names[i]);
        return PS_OK;
    }
    if (s->kind != CSET_EDGES) return PS_OK;
    int S = job_n_columns(job);
    for (int i = 0; i < s->n_names; i++) {
        char name[128], col[64];
        snprintf(name, sizeof name, "%s", s->names[i]);
        char *at = strchr(name, '@');
        if (at && !s->specific)
            return ps_fail(PS_EUSER, "%s: edges[%d] \"%s\" names a position, which needs \"positions\": \"specific\"", where, i,
                           s->names[i]);
        if (at) *at++ = 0;
        int found = 0;
        for (long e = 0; e < E && !found; e++) {
            char have[128];
            edge_name(&edges[e], have, sizeof have);
            found = strcmp(have, name) == 0;
        }
        if (!found)
            return ps_fail(PS_EUSER, "%s: edges[%d] \"%s\" is not an edge of the job's graph (docs/edges.md)", where, i, name);
        for (int j = 0; at && j < S && found < 2; j++) {
            job_column_name(job, j, col, sizeof col);
            found += strcmp(col, at) == 0;
        }
        if (at && found < 2)
            return ps_fail(PS_EUSER, "%s: edges[%d]: \"@%s\" is not a position column of the job (/position_names)", where, i, at);
    }
    return PS_OK;
}

/* The key as normalised JSON (the /circuits "job" attribute): mean sets as their token ids. */
static char *canonical(const CircuitsSpec *c) {
    cJSON *o = cJSON_CreateObject(), *sets = cJSON_AddArrayToObject(o, "sets");
    for (int i = 0; i < c->n_sets; i++) {
        const CircuitSet *s = &c->sets[i];
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "name", s->name);
        if (s->kind != CSET_RANK) {
            cJSON_AddItemToObject(j, s->kind == CSET_EDGES ? "edges" : "nodes",
                                  cJSON_CreateStringArray((const char *const *)s->names, s->n_names));
        } else {
            char rank[32];
            snprintf(rank, sizeof rank, "%s%s", s->by == RANK_EDGES ? "edges/" : s->by == RANK_EFFECTS ? "effects/" : "random",
                     s->by == RANK_RANDOM ? "" : s->array);
            cJSON_AddStringToObject(j, "rank", rank);
            if (s->by == RANK_RANDOM) cJSON_AddNumberToObject(j, "seed", (double)s->seed);
            else cJSON_AddStringToObject(j, "score", s->signed_score ? "signed" : "abs"), cJSON_AddNumberToObject(j, "metric", s->metric);
            if (s->n_k) cJSON_AddItemToObject(j, "k", cJSON_CreateIntArray(s->k, s->n_k));
            else cJSON_AddNumberToObject(j, "threshold", s->threshold);
        }
        cJSON_AddStringToObject(j, "positions", s->specific ? "specific" : "all");
        cJSON_AddItemToArray(sets, j);
    }
    cJSON *choices = cJSON_AddArrayToObject(o, "choices");
    for (int a = 0; a < c->n_choices; a++) cJSON_AddItemToArray(choices, cJSON_CreateString(c->choices[a].name));
    cJSON *means = cJSON_AddObjectToObject(o, "mean_prompts");
    for (int i = 0; i < c->n_mean_sets; i++) {
        cJSON *list = cJSON_AddArrayToObject(means, c->mean_sets[i].label);
        for (int p = 0; p < c->mean_sets[i].n; p++) cJSON_AddItemToArray(list, job_prompt_json(&c->mean_sets[i].prompts[p]));
    }
    return json_take_text(o);
}

int circuits_check(Job *job, const Model *m) {
    CircuitsSpec *c = job->circuits;
    if (!c) return PS_OK;
    const ModelConfig *cfg = &m->cfg;
    char where[4200];
    snprintf(where, sizeof where, "%s: circuits", job->path);
    int one_length = 1, rc = PS_OK;
    for (int p = 1; p < job->n_prompts; p++) one_length &= job->prompts[p].T == job->prompts[0].T;
    for (int a = 0; a < c->n_choices; a++)
        if (c->choices[a].ablation != ABLATE_PAIR && !one_length)
            return ps_fail(PS_EUSER, "%s: \"%s\" ablation needs prompts of one length (prompts[0] has %d tokens, another has more "
                                     "or fewer); use \"pair\"", where, c->choices[a].name, job->prompts[0].T);
    for (int a = 0; a < c->n_choices; a++)
        if (c->choices[a].ablation == ABLATE_RESAMPLE && job->n_prompts < 2)
            return ps_fail(PS_EUSER, "%s: \"resample\" ablation needs at least two prompts", where);
    for (int i = 0; i < c->n_mean_sets && !rc; i++) {
        MeanSet *ms = &c->mean_sets[i];
        for (int p = 0; p < ms->n && !rc; p++) {
            char at[4600];
            snprintf(at, sizeof at, "%.4200s: %s: prompts[%d]", where, ms->label, p);
            rc = job_resolve_prompt(job, &ms->prompts[p], m, at);
            for (int t = 0; !rc && t < ms->prompts[p].T; t++)
                if (ms->prompts[p].clean[t] >= cfg->vocab)
                    rc = ps_fail(PS_EUSER, "%s.clean[%d] is %d, outside the vocabulary [0, %d)", at, t, ms->prompts[p].clean[t],
                                 cfg->vocab);
            if (!rc && ms->prompts[p].T != job->prompts[0].T)
                rc = ps_fail(PS_EUSER, "%s has %d tokens; a mean's prompts need the job's length, %d", at, ms->prompts[p].T,
                             job->prompts[0].T);
        }
    }
    if (rc) return rc;
    long E = edge_graph(cfg, &job->edges, NULL);
    Edge *edges = xmalloc(sizeof(Edge) * (size_t)(E + 1));
    edge_graph(cfg, &job->edges, edges);
    for (int i = 0; i < c->n_sets && !rc; i++) {
        char inner[4300];
        snprintf(inner, sizeof inner, "%s.sets[%d]", where, i);
        rc = check_set(job, &c->sets[i], cfg, edges, E, inner);
    }
    free(edges);
    if (!rc) c->canonical = canonical(c);
    return rc;
}

void circuits_free(CircuitsSpec *c) {
    for (int i = 0; i < c->n_sets; i++) {
        for (int j = 0; j < c->sets[i].n_names; j++) free(c->sets[i].names[j]);
        free(c->sets[i].names), free(c->sets[i].k);
    }
    for (int i = 0; i < c->n_mean_sets; i++) {
        for (int p = 0; p < c->mean_sets[i].n; p++) job_prompt_free(&c->mean_sets[i].prompts[p]);
        free(c->mean_sets[i].prompts);
    }
    free(c->sets), free(c->choices), free(c->mean_sets), free(c->canonical);
    memset(c, 0, sizeof *c);
}

int circuits_rows(const CircuitsSpec *c) {
    int rows = 0;
    for (int i = 0; i < c->n_sets; i++) rows += c->sets[i].n_k ? c->sets[i].n_k : 1;
    return rows;
}

double circuits_forward_passes(const Job *job) {
    const CircuitsSpec *c = job->circuits;
    double per_prompt = 1.0, once = 0.0; /* the clean run (the full circuit) */
    for (int a = 0; a < c->n_choices; a++) {
        const CircuitChoice *ch = &c->choices[a];
        int seen = 0; /* each mean is computed once */
        for (int b = 0; b < a; b++) seen |= c->choices[b].ablation == ABLATE_MEAN && c->choices[b].mean_set == ch->mean_set;
        per_prompt += (double)ch->seeds * (1 + circuits_rows(c)); /* the empty circuit and every row, per seed */
        per_prompt += ch->ablation == ABLATE_PAIR || ch->ablation == ABLATE_RESAMPLE ? ch->seeds : 0; /* their sources */
        if (ch->ablation == ABLATE_MEAN && !seen) once += ch->mean_set < 0 ? job->n_prompts : c->mean_sets[ch->mean_set].n;
    }
    return per_prompt * job->n_prompts + once;
}
