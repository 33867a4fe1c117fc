/* Typed access to cJSON objects with errors that name the key and what was expected. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/core.h"

/* Where a parse error sits, as line:column (1-based) of the text. */
static void position_of(const char *text, const char *at, int *line, int *column) {
    *line = 1, *column = 1;
    for (const char *c = text; c < at && *c; c++) {
        if (*c == '\n') ++*line, *column = 1;
        else ++*column;
    }
}

static int by_string(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Every object of the tree, its keys sorted and compared neighbour to neighbour (a hostile file
 * with a million keys costs n log n, not n^2). cJSON keeps duplicates and answers lookups with the
 * first, so a second "nodes" would be silently ignored: refuse instead. */
int json_check_unique_keys(const cJSON *node, const char *where) {
    for (; node; node = node->next) {
        if (cJSON_IsObject(node)) {
            int n = cJSON_GetArraySize(node), i = 0;
            char **keys = xmalloc(sizeof(char *) * (size_t)(n > 0 ? n : 1));
            for (const cJSON *it = node->child; it; it = it->next) keys[i++] = it->string ? it->string : "";
            qsort(keys, (size_t)n, sizeof(char *), by_string);
            for (i = 1; i < n; i++)
                if (strcmp(keys[i - 1], keys[i]) == 0) {
                    int rc = ps_fail(PS_EUSER, "%s: duplicate key \"%.200s\"", where, keys[i]);
                    free(keys);
                    return rc;
                }
            free(keys);
        }
        if ((cJSON_IsObject(node) || cJSON_IsArray(node)) && json_check_unique_keys(node->child, where)) return PS_EUSER;
    }
    return PS_OK;
}

int json_parse_text(const char *text, size_t len, const char *where, cJSON **out) {
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        /* the line and column of the error: that is where the user must look */
        int line, column;
        position_of(text, end ? end : text, &line, &column);
        return ps_fail(PS_EUSER, "%s:%d:%d: JSON syntax error", where, line, column);
    }
    if (json_check_unique_keys(root, where)) {
        cJSON_Delete(root);
        return PS_EUSER;
    }
    *out = root;
    return PS_OK;
}

int json_parse_file(const char *path, cJSON **out) {
    char *text;
    size_t len;
    int rc = read_text_file(path, &text, &len);
    if (rc) return rc;
    rc = json_parse_text(text, len, path, out);
    free(text);
    return rc;
}

static const cJSON *lookup(const cJSON *obj, const char *key) {
    return cJSON_GetObjectItemCaseSensitive(obj, key);
}

int json_get_number(const cJSON *obj, const char *key, const char *where, int required, double *out) {
    const cJSON *it = lookup(obj, key);
    if (!it || cJSON_IsNull(it)) {
        if (required) return ps_fail(PS_EUSER, "%s: missing key \"%s\"", where, key);
        return PS_OK;
    }
    if (!cJSON_IsNumber(it)) return ps_fail(PS_EUSER, "%s: \"%s\" must be a number", where, key);
    *out = it->valuedouble;
    return PS_OK;
}

int json_get_int(const cJSON *obj, const char *key, const char *where, int required, long lo, long hi, long *out) {
    double v = NAN;
    int rc = json_get_number(obj, key, where, required, &v);
    if (rc || isnan(v)) return rc; /* absent: the caller's default stays */
    /* compared as doubles before any conversion: 4294967296 must not wrap to 0 */
    if (!isfinite(v) || v != floor(v) || v < (double)lo || v > (double)hi)
        return ps_fail(PS_EUSER, "%s: \"%s\" must be an integer from %ld to %ld, got %.17g", where, key, lo, hi, v);
    *out = (long)v;
    return PS_OK;
}

int json_get_string(const cJSON *obj, const char *key, const char *where, int required, const char **out) {
    const cJSON *it = lookup(obj, key);
    if (!it || cJSON_IsNull(it)) {
        if (required) return ps_fail(PS_EUSER, "%s: missing key \"%s\"", where, key);
        return PS_OK;
    }
    if (!cJSON_IsString(it)) return ps_fail(PS_EUSER, "%s: \"%s\" must be a string", where, key);
    *out = it->valuestring;
    return PS_OK;
}

int json_get_bool(const cJSON *obj, const char *key, const char *where, int required, int *out) {
    const cJSON *it = lookup(obj, key);
    if (!it || cJSON_IsNull(it)) {
        if (required) return ps_fail(PS_EUSER, "%s: missing key \"%s\"", where, key);
        return PS_OK;
    }
    if (!cJSON_IsBool(it)) return ps_fail(PS_EUSER, "%s: \"%s\" must be true or false", where, key);
    *out = cJSON_IsTrue(it);
    return PS_OK;
}

char *json_take_text(cJSON *obj) {
    char *text = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    char *copy = xstrdup(text); /* cJSON's allocator is not necessarily malloc */
    cJSON_free(text);
    return copy;
}
