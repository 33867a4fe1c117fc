/* "edges": "all", or {"from": [...], "to": [...], "from_layers": [a, b], "to_layers": [a, b]}
 * (docs/edges.md). Omitted keys select everything; layer ranges are inclusive. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "patchsweep/core.h"
#include "edge_filter.h"

static const char *const up_names[N_UP_KINDS] = {"embed", "head", "mlp"};
static const char *const down_names[N_DOWN_KINDS] = {"q", "k", "v", "mlp_in", "logits"};
static const char *const edge_estimate_names[N_EDGE_ESTIMATES] = {"eap", "eap_ig", "eap_ig_act"};

const char *up_kind_name(UpKind k) { return up_names[k]; }
const char *down_kind_name(DownKind k) { return down_names[k]; }
const char *edge_estimate_name(EdgeEstimate e) { return edge_estimate_names[e]; }

#define ALL_UP ((1u << N_UP_KINDS) - 1)
#define ALL_DOWN ((1u << N_DOWN_KINDS) - 1)

/* A non-empty array of distinct names from names[0..n) into a bit set; an absent key leaves *out. */
static int kinds(const cJSON *arr, const char *where, const char *key, const char *const *names, int n, unsigned *out) {
    if (!arr) return PS_OK;
    char list[128] = "";
    for (int i = 0; i < n; i++) snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", names[i]);
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) == 0)
        return ps_fail(PS_EUSER, "%s: edges.%s must be a non-empty array of: %s", where, key, list);
    *out = 0;
    for (const cJSON *it = arr->child; it; it = it->next) {
        int found = -1;
        for (int i = 0; cJSON_IsString(it) && i < n; i++)
            if (strcmp(it->valuestring, names[i]) == 0) found = i;
        if (found < 0)
            return ps_fail(PS_EUSER, "%s: edges.%s: \"%s\" is not an edge end of that side (expected one of: %s)", where, key,
                           cJSON_IsString(it) ? it->valuestring : "?", list);
        if (*out & (1u << found)) return ps_fail(PS_EUSER, "%s: edges.%s lists \"%s\" twice", where, key, names[found]);
        *out |= 1u << found;
    }
    return PS_OK;
}

/* [first, last], inclusive, 0 <= first <= last. */
static int layer_range(const cJSON *arr, const char *where, const char *key, int *first, int *last) {
    *first = 0, *last = INT_MAX;
    if (!arr) return PS_OK;
    int ok = cJSON_IsArray(arr) && cJSON_GetArraySize(arr) == 2;
    double v[2] = {0, 0};
    for (int i = 0; ok && i < 2; i++) {
        const cJSON *it = cJSON_GetArrayItem(arr, i);
        ok = cJSON_IsNumber(it) && it->valuedouble == floor(it->valuedouble) && it->valuedouble >= 0 && it->valuedouble < 1e9;
        if (ok) v[i] = it->valuedouble;
    }
    if (!ok) return ps_fail(PS_EUSER, "%s: edges.%s must be [first, last], two layer numbers >= 0", where, key);
    if (v[0] > v[1])
        return ps_fail(PS_EUSER, "%s: edges.%s [%d, %d] is inverted (an inclusive range [first, last] needs first <= last)",
                       where, key, (int)v[0], (int)v[1]);
    *first = (int)v[0], *last = (int)v[1];
    return PS_OK;
}

int edge_filter_parse(EdgeFilter *f, const cJSON *v, const char *where) {
    memset(f, 0, sizeof *f);
    if (!v) return PS_OK;
    f->on = 1;
    f->from_kinds = ALL_UP, f->to_kinds = ALL_DOWN;
    f->from_first = f->to_first = 0, f->from_last = f->to_last = INT_MAX;
    if (cJSON_IsString(v) && strcmp(v->valuestring, "all") == 0) return PS_OK;
    if (!cJSON_IsObject(v))
        return ps_fail(PS_EUSER, "%s: \"edges\" must be \"all\" or an object with \"from\", \"to\", \"from_layers\", \"to_layers\"",
                       where);
    static const char *const keys[] = {"from", "to", "from_layers", "to_layers"};
    for (const cJSON *it = v->child; it; it = it->next) {
        int known = 0;
        for (int i = 0; i < 4; i++) known |= strcmp(it->string, keys[i]) == 0;
        if (!known)
            return ps_fail(PS_EUSER, "%s: edges: unknown key \"%s\" (expected one of: from, to, from_layers, to_layers)", where,
                           it->string);
    }
    int rc = kinds(cJSON_GetObjectItemCaseSensitive(v, "from"), where, "from", up_names, N_UP_KINDS, &f->from_kinds);
    if (!rc) rc = kinds(cJSON_GetObjectItemCaseSensitive(v, "to"), where, "to", down_names, N_DOWN_KINDS, &f->to_kinds);
    if (!rc) rc = layer_range(cJSON_GetObjectItemCaseSensitive(v, "from_layers"), where, "from_layers", &f->from_first, &f->from_last);
    if (!rc) rc = layer_range(cJSON_GetObjectItemCaseSensitive(v, "to_layers"), where, "to_layers", &f->to_first, &f->to_last);
    return rc;
}

static cJSON *kind_array(unsigned bits, const char *const *names, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++)
        if (bits & (1u << i)) cJSON_AddItemToArray(a, cJSON_CreateString(names[i]));
    return a;
}

void edge_filter_json(const EdgeFilter *f, cJSON *o) {
    if (!f->on) return;
    int everything = f->from_kinds == ALL_UP && f->to_kinds == ALL_DOWN && f->from_first == 0 && f->to_first == 0 &&
                     f->from_last == INT_MAX && f->to_last == INT_MAX;
    if (everything) { /* "all" and {} are the same job */
        cJSON_AddStringToObject(o, "edges", "all");
        return;
    }
    cJSON *e = cJSON_AddObjectToObject(o, "edges");
    cJSON_AddItemToObject(e, "from", kind_array(f->from_kinds, up_names, N_UP_KINDS));
    cJSON_AddItemToObject(e, "to", kind_array(f->to_kinds, down_names, N_DOWN_KINDS));
    if (f->from_first != 0 || f->from_last != INT_MAX) {
        int r[2] = {f->from_first, f->from_last};
        cJSON_AddItemToObject(e, "from_layers", cJSON_CreateIntArray(r, 2));
    }
    if (f->to_first != 0 || f->to_last != INT_MAX) {
        int r[2] = {f->to_first, f->to_last};
        cJSON_AddItemToObject(e, "to_layers", cJSON_CreateIntArray(r, 2));
    }
}
