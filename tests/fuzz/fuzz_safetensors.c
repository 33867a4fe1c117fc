/* libFuzzer harness: the safetensors reader (st_set_open -> st_open, open_index; st_read_f32, and
 * st_read_16 as a 16-bit model reads its matrices).
 * An input is model.safetensors, or, when it starts with '{', model.safetensors.index.json up to
 * the first NUL byte, with the bytes after it as the shard "fuzz.safetensors" beside the three
 * shards of tests/fixtures/models/llama-tiny-sharded. Every tensor that opens is then read. */
#include <stdint.h>
#include <string.h>
#include "fuzz_util.h"
#include "patchsweep/core.h"
#include "patchsweep/safetensors.h"

static void read_all(const StSet *s, const StFile *f) {
    for (int i = 0; i < f->n_tensors; i++) {
        const StTensor *t = &f->tensors[i];
        size_t n = (t->end - t->begin) / (size_t)t->elem_size;
        float *dst = alloc_floats(n ? n : 1);
        st_read_f32(s, t->name, t->ndim, t->shape, dst);
        st_read_16(s, t->name, t->ndim, t->shape, t->dtype[0] == 'B' ? "BF16" : "F16", (uint16_t *)dst);
        free(dst);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int shards_copied;
    char path[512];
    const char *dir = fuzz_tmpdir();
    if (size && data[0] == '{') {
        if (!shards_copied) {
            static const char *const shards[] = {"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                                                 "model-00003-of-00003.safetensors"};
            for (int i = 0; i < 3; i++) {
                snprintf(path, sizeof path, "%s/models/llama-tiny-sharded/%s", PS_FIXTURES, shards[i]);
                fuzz_copy(path, shards[i]);
            }
            shards_copied = 1;
        }
        const uint8_t *nul = memchr(data, 0, size);
        size_t n = nul ? (size_t)(nul - data) : size;
        fuzz_unlink("model.safetensors");
        fuzz_write(path, sizeof path, "model.safetensors.index.json", data, n);
        if (nul) fuzz_write(path, sizeof path, "fuzz.safetensors", nul + 1, size - n - 1);
        else fuzz_unlink("fuzz.safetensors");
    } else {
        fuzz_unlink("model.safetensors.index.json");
        fuzz_write(path, sizeof path, "model.safetensors", data, size);
    }
    StSet s;
    int rc = st_set_open(&s, dir);
    fuzz_outcome(rc);
    if (rc == PS_OK)
        for (int i = 0; i < s.n_files; i++) read_all(&s, &s.files[i]);
    st_set_close(&s);
    ps_error_clear();
    return 0;
}
