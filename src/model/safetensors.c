/* safetensors reader. Every check the format allows is made before a byte of tensor data is
 * read, and each failure names the file and the tensor. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "patchsweep/core.h"
#include "patchsweep/kernels.h"
#include "patchsweep/safetensors.h"

/* The reference implementation refuses headers above 100 MB; so do we. */
#define ST_MAX_HEADER 100000000ULL

static int dtype_size(const char *dtype) {
    static const struct { const char *name; int size; } table[] = {
        {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2},
        {"I8", 1}, {"U64", 8}, {"U32", 4}, {"U16", 2}, {"U8", 1}, {"BOOL", 1},
        {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"F8_E8M0", 1},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(dtype, table[i].name) == 0) return table[i].size;
    return 0;
}

static int compare_begin(const void *a, const void *b) {
    const StTensor *x = *(const StTensor *const *)a, *y = *(const StTensor *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

/* Parses one header entry; data_size bounds the offsets. */
static int parse_entry(const char *path, const cJSON *item, size_t data_size, StTensor *t) {
    const char *name = item->string;
    if (!cJSON_IsObject(item))
        return ps_fail(PS_EUSER, "%s: tensor \"%s\": header entry is not an object", path, name);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsString(dtype))
        return ps_fail(PS_EUSER, "%s: tensor \"%s\": missing string \"dtype\"", path, name);
    if (!cJSON_IsArray(shape))
        return ps_fail(PS_EUSER, "%s: tensor \"%s\": missing array \"shape\"", path, name);
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2)
        return ps_fail(PS_EUSER, "%s: tensor \"%s\": \"data_offsets\" must be [begin, end]", path, name);
    t->name = xstrdup(name);
    snprintf(t->dtype, sizeof t->dtype, "%s", dtype->valuestring);
    t->elem_size = dtype_size(dtype->valuestring);
    if (!t->elem_size)
        return ps_fail(PS_EUSER, "%s: tensor \"%s\": unknown dtype \"%s\"", path, name, dtype->valuestring);
    t->ndim = cJSON_GetArraySize(shape);
    if (t->ndim > ST_MAX_DIMS)
        return ps_fail(PS_EUSER, "%s: tensor \"%s\": %d dimensions (at most %d)", path, name, t->ndim, ST_MAX_DIMS);
    /* Element count with an overflow guard: 2^62 bytes is far past any real file. */
    double bytes = t->elem_size;
    for (int i = 0; i < t->ndim; i++) {
        const cJSON *d = cJSON_GetArrayItem(shape, i);
        /* checked as a double before the conversion, which would overflow past 2^63 */
        if (!cJSON_IsNumber(d) || !(d->valuedouble >= 0) || d->valuedouble != floor(d->valuedouble) ||
            d->valuedouble > 9.0e15)
            return ps_fail(PS_EUSER, "%s: tensor \"%s\": shape entries must be non-negative integers below 2^53", path,
                           name);
        t->shape[i] = (int64_t)d->valuedouble;
        bytes *= d->valuedouble;
    }
    const cJSON *first = cJSON_GetArrayItem(offs, 0), *last = cJSON_GetArrayItem(offs, 1);
    if (!cJSON_IsNumber(first) || !cJSON_IsNumber(last))
        return ps_fail(PS_EUSER, "%s: tensor \"%s\": data_offsets must be numbers", path, name);
    double begin = first->valuedouble, end = last->valuedouble;
    if (begin < 0 || end < begin || begin != floor(begin) || end != floor(end))
        return ps_fail(PS_EUSER, "%s: tensor \"%s\": bad data_offsets", path, name);
    if (end > (double)data_size)
        return ps_fail(PS_EUSER, "%s: tensor \"%s\": data_offsets [%.0f, %.0f] run past the data area (%zu bytes)",
                       path, name, begin, end, data_size);
    t->begin = (size_t)begin;
    t->end = (size_t)end;
    if (bytes > 4.6e18 || (double)(t->end - t->begin) != bytes)
        return ps_fail(PS_EUSER, "%s: tensor \"%s\": data_offsets hold %zu bytes but shape and dtype %s need %.0f",
                       path, name, t->end - t->begin, t->dtype, bytes);
    return PS_OK;
}

static int compare_tensors(const void *a, const void *b) {
    return strcmp(((const StTensor *)a)->name, ((const StTensor *)b)->name);
}

/* bsearch's comparison: a name against a tensor. */
static int compare_name_tensor(const void *name, const void *t) { return strcmp(name, ((const StTensor *)t)->name); }

static int validate_header(StFile *f, const cJSON *root, size_t data_size) {
    int n = 0;
    for (const cJSON *it = root->child; it; it = it->next)
        if (strcmp(it->string, "__metadata__") != 0) n++;
    f->tensors = xcalloc((size_t)n, sizeof(StTensor));
    for (const cJSON *it = root->child; it; it = it->next) {
        if (strcmp(it->string, "__metadata__") == 0) {
            if (!cJSON_IsObject(it)) return ps_fail(PS_EUSER, "%s: \"__metadata__\" must be an object", f->path);
            continue;
        }
        int rc = parse_entry(f->path, it, data_size, &f->tensors[f->n_tensors]);
        f->n_tensors++;
        if (rc) return rc;
    }
    /* The table is kept sorted by name: no name twice is a check of neighbours, and st_find is a
     * binary search (a header may hold millions of entries, and a model looks up every tensor it
     * needs: linear lookups made loading quadratic in the header's size). */
    qsort(f->tensors, (size_t)n, sizeof(StTensor), compare_tensors);
    for (int i = 1; i < n; i++)
        if (strcmp(f->tensors[i - 1].name, f->tensors[i].name) == 0)
            return ps_fail(PS_EUSER, "%s: tensor \"%s\" appears twice in the header", f->path, f->tensors[i].name);
    /* No two tensors may share bytes. Empty tensors own no bytes and cannot overlap. */
    StTensor **order = xmalloc(sizeof(StTensor *) * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) order[i] = &f->tensors[i];
    qsort(order, (size_t)n, sizeof *order, compare_begin);
    const StTensor *prev = NULL;
    int rc = PS_OK;
    for (int i = 0; i < n && !rc; i++) {
        if (order[i]->end == order[i]->begin) continue;
        if (prev && order[i]->begin < prev->end)
            rc = ps_fail(PS_EUSER, "%s: tensors \"%s\" and \"%s\" overlap in the data area", f->path, prev->name,
                         order[i]->name);
        prev = order[i];
    }
    free(order);
    return rc;
}

int st_open(StFile *f, const char *path) {
    memset(f, 0, sizeof *f);
    f->path = xstrdup(path);
    int fd = open_regular_file(path, &f->size);
    if (fd < 0) return PS_EUSER;
    if (f->size == 0) {
        close(fd);
        return ps_fail(PS_EUSER, "%s: empty file, not a safetensors file", path);
    }
    f->map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        return ps_fail(PS_EUSER, "%s: cannot map (%s)", path, strerror(errno));
    }
    if (f->size < 8) return ps_fail(PS_EUSER, "%s: %zu bytes, too short for a safetensors header", path, f->size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | f->map[i];
    if (n > f->size - 8)
        return ps_fail(PS_EUSER, "%s: header length %llu runs past the end of the file (%zu bytes)", path,
                       (unsigned long long)n, f->size);
    if (n > ST_MAX_HEADER) return ps_fail(PS_EUSER, "%s: header length %llu is too large", path, (unsigned long long)n);
    f->data_start = 8 + (size_t)n;
    cJSON *root = cJSON_ParseWithLength((const char *)f->map + 8, (size_t)n);
    if (!root) return ps_fail(PS_EUSER, "%s: header is not valid JSON", path);
    int rc = cJSON_IsObject(root) ? validate_header(f, root, f->size - f->data_start)
                                  : ps_fail(PS_EUSER, "%s: header is not a JSON object", path);
    cJSON_Delete(root);
    return rc;
}

void st_close(StFile *f) {
    if (f->map) munmap(f->map, f->size);
    for (int i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    free(f->path);
    memset(f, 0, sizeof *f);
}

const StTensor *st_find(const StFile *f, const char *name) {
    if (f->n_tensors == 0) return NULL;
    return bsearch(name, f->tensors, (size_t)f->n_tensors, sizeof(StTensor), compare_name_tensor);
}

/* ---- sharded sets -------------------------------------------------------------------------- */

static int compare_entries(const void *a, const void *b) {
    return strcmp(((const StEntry *)a)->name, ((const StEntry *)b)->name);
}

static int compare_name_entry(const void *name, const void *e) { return strcmp(name, ((const StEntry *)e)->name); }

static int open_index(StSet *s, const char *dir, const char *index_path) {
    cJSON *root;
    int rc = json_parse_file(index_path, &root);
    if (rc) return rc;
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(map)) {
        cJSON_Delete(root);
        return ps_fail(PS_EUSER, "%s: missing object \"weight_map\"", index_path);
    }
    int n = cJSON_GetArraySize(map);
    s->entries = xcalloc((size_t)(n ? n : 1), sizeof(StEntry));
    char **file_names = xcalloc((size_t)n, sizeof(char *));
    s->files = xcalloc((size_t)n, sizeof(StFile));
    for (const cJSON *it = map->child; it && !rc; it = it->next) {
        if (!cJSON_IsString(it)) {
            rc = ps_fail(PS_EUSER, "%s: weight_map[\"%s\"] must be a file name", index_path, it->string);
            break;
        }
        /* Linear in the shards, which are few: each one named must exist and is opened. */
        int f = 0;
        while (f < s->n_files && strcmp(file_names[f], it->valuestring) != 0) f++;
        if (f == s->n_files) {
            if (strchr(it->valuestring, '/')) {
                rc = ps_fail(PS_EUSER, "%s: shard \"%s\" must be a file in the model folder", index_path, it->valuestring);
                break;
            }
            char path[PATH_CAP];
            file_names[s->n_files] = it->valuestring;
            rc = path_join(path, sizeof path, dir, it->valuestring);
            if (!rc) rc = st_open(&s->files[s->n_files], path);
            s->n_files++;
        }
        s->entries[s->n_entries].name = xstrdup(it->string);
        s->entries[s->n_entries++].file = f;
    }
    /* Sorted by name for st_set_find's binary search (json_parse_file refused a name twice). */
    qsort(s->entries, (size_t)s->n_entries, sizeof(StEntry), compare_entries);
    /* Every tensor the index names must really be in its shard. */
    for (int i = 0; i < s->n_entries && !rc; i++)
        if (!st_find(&s->files[s->entries[i].file], s->entries[i].name))
            rc = ps_fail(PS_EUSER, "%s: tensor \"%s\" is listed in the index but missing from it",
                         s->files[s->entries[i].file].path, s->entries[i].name);
    free(file_names);
    cJSON_Delete(root);
    return rc;
}

int st_set_open(StSet *s, const char *dir) {
    memset(s, 0, sizeof *s);
    char path[PATH_CAP];
    if (path_join(path, sizeof path, dir, "model.safetensors.index.json")) return PS_EUSER;
    if (file_exists(path)) return open_index(s, dir, path);
    if (path_join(path, sizeof path, dir, "model.safetensors")) return PS_EUSER;
    if (!file_exists(path))
        return ps_fail(PS_EUSER, "%s: no model.safetensors or model.safetensors.index.json", dir);
    s->files = xcalloc(1, sizeof(StFile));
    s->n_files = 1;
    return st_open(&s->files[0], path);
}

void st_set_close(StSet *s) {
    for (int i = 0; i < s->n_files; i++) st_close(&s->files[i]);
    for (int i = 0; i < s->n_entries; i++) free(s->entries[i].name);
    free(s->files);
    free(s->entries);
    memset(s, 0, sizeof *s);
}

const StTensor *st_set_find(const StSet *s, const char *name, const StFile **file) {
    if (s->n_entries) {
        const StEntry *e = bsearch(name, s->entries, (size_t)s->n_entries, sizeof(StEntry), compare_name_entry);
        if (!e) return NULL;
        *file = &s->files[e->file];
        return st_find(*file, name);
    }
    if (s->n_files == 0) return NULL;
    *file = &s->files[0];
    return st_find(*file, name);
}

static void shape_text(char *out, size_t cap, int ndim, const int64_t *shape) {
    size_t n = (size_t)snprintf(out, cap, "[");
    for (int i = 0; i < ndim && n < cap; i++) n += (size_t)snprintf(out + n, cap - n, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (n < cap) snprintf(out + n, cap - n, "]");
}

int st_check(const StSet *s, const char *name, int ndim, const int64_t *shape) {
    const StFile *f = NULL;
    const StTensor *t = st_set_find(s, name, &f);
    if (!t) {
        const char *where = s->n_files == 1 ? s->files[0].path : "model shards";
        return ps_fail(PS_EUSER, "%s: missing tensor \"%s\"", where, name);
    }
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same) {
        char got[128], want[128];
        shape_text(got, sizeof got, t->ndim, t->shape);
        shape_text(want, sizeof want, ndim, shape);
        return ps_fail(PS_EUSER, "%s: tensor \"%s\" has shape %s, expected %s", f->path, name, got, want);
    }
    return PS_OK;
}

int st_read_f32(const StSet *s, const char *name, int ndim, const int64_t *shape, float *dst) {
    int rc = st_check(s, name, ndim, shape);
    if (rc) return rc;
    const StFile *f = NULL;
    const StTensor *t = st_set_find(s, name, &f);
    size_t n = (t->end - t->begin) / (size_t)t->elem_size;
    const unsigned char *src = f->map + f->data_start + t->begin;
    if (strcmp(t->dtype, "F32") == 0) {
        memcpy(dst, src, n * sizeof(float)); /* the data area may be unaligned: copy, never cast */
    } else if (strcmp(t->dtype, "F16") == 0 || strcmp(t->dtype, "BF16") == 0) {
        int is_f16 = t->dtype[0] == 'F';
        for (size_t i = 0; i < n; i++) {
            uint16_t h = (uint16_t)(src[2 * i] | (src[2 * i + 1] << 8));
            dst[i] = is_f16 ? f16_widen(h) : bf16_widen(h);
        }
    } else {
        return ps_fail(PS_EUSER, "%s: tensor \"%s\" has dtype %s, expected F32, F16 or BF16", f->path, name, t->dtype);
    }
    /* A NaN or infinite weight would poison every effect downstream; refuse it here. */
    for (size_t i = 0; i < n; i++)
        if (!isfinite(dst[i]))
            return ps_fail(PS_EUSER, "%s: tensor \"%s\" holds a non-finite value at element %zu", f->path, name, i);
    return PS_OK;
}

int st_read_16(const StSet *s, const char *name, int ndim, const int64_t *shape, const char *dtype, uint16_t *dst) {
    int rc = st_check(s, name, ndim, shape);
    if (rc) return rc;
    const StFile *f = NULL;
    const StTensor *t = st_set_find(s, name, &f);
    if (strcmp(t->dtype, dtype) != 0)
        return ps_fail(PS_EUSER, "%s: tensor \"%s\" has dtype %s, expected %s like the other matrices", f->path, name,
                       t->dtype, dtype);
    size_t n = (t->end - t->begin) / 2;
    const unsigned char *src = f->map + f->data_start + t->begin;
    /* all exponent bits set: infinite or NaN */
    uint16_t exponent = strcmp(dtype, "BF16") == 0 ? 0x7f80 : 0x7c00;
    for (size_t i = 0; i < n; i++) {
        dst[i] = (uint16_t)(src[2 * i] | (src[2 * i + 1] << 8));
        if ((dst[i] & exponent) == exponent)
            return ps_fail(PS_EUSER, "%s: tensor \"%s\" holds a non-finite value at element %zu", f->path, name, i);
    }
    return PS_OK;
}
