/* libFuzzer harness: model_load on a folder holding config.json (the input up to its first NUL
 * byte) and, when the input has a NUL, model.safetensors (the bytes after it): config parsing
 * for every architecture (model_config_parse via model_read_config), the allocation it sizes, and
 * the tensor table read against the checkpoint. */
#include <stdint.h>
#include <string.h>
#include "fuzz_util.h"
#include "patchsweep/core.h"
#include "patchsweep/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[512];
    const uint8_t *nul = memchr(data, 0, size);
    size_t n = nul ? (size_t)(nul - data) : size;
    fuzz_write(path, sizeof path, "config.json", data, n);
    if (nul) fuzz_write(path, sizeof path, "model.safetensors", nul + 1, size - n - 1);
    else fuzz_unlink("model.safetensors");
    Model m;
    int rc = model_load(&m, fuzz_tmpdir());
    if (rc == PS_OK) model_free(&m);
    fuzz_outcome(rc);
    ps_error_clear();
    return 0;
}
