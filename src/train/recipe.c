/* A training recipe (models/<name>/recipe.json):
 *   {"task": "induction", "model": {"n_layer": 2, "d_model": 64, "n_head": 4, "d_mlp": 256,
 *    "n_ctx": 48}, "steps": 2000, "batch": 16, "lr": 1e-3, "weight_decay": 0.01,
 *    "warmup": 0.05, "seed": 0, "output": "."}
 * The architecture is GPT-2's; the vocabulary is the task's. */
#include <stdio.h>
#include <string.h>
#include "patchsweep/train.h"

int recipe_parse(Recipe *r, const char *path) {
    memset(r, 0, sizeof *r);
    snprintf(r->path, sizeof r->path, "%s", path);
    cJSON *root;
    int rc = json_parse_file(path, &root);
    if (rc) return rc;
    const char *task = NULL, *output = ".";
    long L = 0, d = 0, H = 0, dm = 0, n_ctx = 0, steps = 0, batch = 0, seed = 0;
    double lr = 1e-3, wd = 0.01, warmup = 0.05;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    static const char *const keys[] = {"task", "model", "steps", "batch", "lr", "weight_decay", "warmup", "seed", "output"};
    for (const cJSON *it = root->child; it && !rc; it = it->next) {
        int known = 0;
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) known |= strcmp(it->string, keys[k]) == 0;
        if (!known) rc = ps_fail(PS_EUSER, "%s: unknown key \"%s\"", path, it->string);
    }
    if (!rc) rc = json_get_string(root, "task", path, 1, &task);
    if (!rc && !cJSON_IsObject(model)) rc = ps_fail(PS_EUSER, "%s: \"model\" must be an object", path);
    if (!rc) rc = json_get_int(model, "n_layer", path, 1, 1, JSON_SIZE_MAX, &L);
    if (!rc) rc = json_get_int(model, "d_model", path, 1, 1, JSON_SIZE_MAX, &d);
    if (!rc) rc = json_get_int(model, "n_head", path, 1, 1, JSON_SIZE_MAX, &H);
    if (!rc) rc = json_get_int(model, "d_mlp", path, 1, 1, JSON_SIZE_MAX, &dm);
    if (!rc) rc = json_get_int(model, "n_ctx", path, 1, 1, JSON_SIZE_MAX, &n_ctx);
    if (!rc) rc = json_get_int(root, "steps", path, 1, 1, JSON_SIZE_MAX, &steps);
    if (!rc) rc = json_get_int(root, "batch", path, 1, 1, JSON_SIZE_MAX, &batch);
    if (!rc) rc = json_get_int(root, "seed", path, 0, 0, JSON_SEED_MAX, &seed);
    if (!rc) rc = json_get_number(root, "lr", path, 0, &lr);
    if (!rc) rc = json_get_number(root, "weight_decay", path, 0, &wd);
    if (!rc) rc = json_get_number(root, "warmup", path, 0, &warmup);
    if (!rc) rc = json_get_string(root, "output", path, 0, &output);
    if (!rc && !(r->task = task_find(task))) rc = ps_fail(PS_EUSER, "%s: task \"%s\" is not known (induction)", path, task);
    if (!rc && (L < 1 || d < 1 || H < 1 || d % H || dm < 1 || n_ctx < 2 || steps < 1 || batch < 1 || seed < 0))
        rc = ps_fail(PS_EUSER, "%s: sizes, steps and batch must be positive, d_model a multiple of n_head", path);
    if (!rc) {
        char dir[4096];
        path_dirname(dir, sizeof dir, path);
        rc = path_join(r->output, sizeof r->output, dir, output);
        r->cfg = (ModelConfig){.model_type = "gpt2", .n_layer = (int)L, .d_model = (int)d, .n_head = (int)H,
                               .n_kv_head = (int)H, .d_head = (int)(d / H), .d_mlp = (int)dm, .vocab = r->task->vocab,
                               .n_ctx = (int)n_ctx, .norm_eps = 1e-5f, .norm = NORM_LAYER, .act = ACT_GELU_TANH,
                               .learned_pos = 1, .tied_unembed = 1, .linear_bias = 1};
        r->steps = (int)steps, r->batch = (int)batch, r->lr = lr, r->weight_decay = wd, r->warmup_frac = warmup;
        r->seed = (uint64_t)seed;
    }
    cJSON_Delete(root);
    return rc;
}
