/*
 * Magnitude pruning (|W|) as a prunus plugin written in C.
 *
 * Unlike the Rust example, it selects the weights itself and returns a mask
 * (PRUNUS_DECISION_MASK): per matrix for unstructured sparsity (floor(d_out * d_in * s)
 * weights go) and N of every M consecutive input columns of a row for N:M, the lowest |W|
 * first and, among equal values, the lower index first: the built-in magnitude's rule, so
 * the masks are equal bit for bit (prunus-loader's tests check that on the default model's
 * first block). Per-row groups are not offered. It takes no configuration.
 *
 * Build: cc -O2 -shared -fPIC -I ../../../crates/prunus-abi/include -o libmagnitude_c.so magnitude.c
 *
 * PRUNUS_TEST_FAULT (tests of the boundary only): 1 = a table of another ABI version,
 * 2 = no entry point.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "prunus_plugin.h"

static char *copy_string(const char *s) {
    size_t n = strlen(s) + 1;
    char *c = malloc(n);
    if (c != NULL) memcpy(c, s, n);
    return c;
}

static int32_t fail(char **error, const char *message) {
    if (error != NULL) *error = copy_string(message);
    return PRUNUS_ERROR;
}

/* The method has no state; a non-null pointer stands for it. */
static int state_token;

static int32_t create(const char *config_json, void **state, char **effective_config, char **error) {
    const char *p = config_json;
    while (*p == ' ') p++;
    if (strcmp(p, "null") != 0 && strcmp(p, "{}") != 0) {
        return fail(error, "magnitude-c takes no configuration");
    }
    *state = &state_token;
    *effective_config = copy_string("{}");
    return PRUNUS_OK;
}

static int32_t group(const void *state, const PrunusPattern *pattern, uint32_t *group, char **error) {
    (void)state;
    (void)error;
    *group = pattern->m == 0 ? PRUNUS_GROUP_PER_MATRIX : PRUNUS_GROUP_NM;
    return PRUNUS_OK;
}

typedef struct {
    float key;
    uint64_t index;
} Entry;

static int by_key_then_index(const void *a, const void *b) {
    const Entry *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return x->index < y->index ? -1 : (x->index > y->index);
}

/* Marks the k lowest |w| of weight[start .. start + len) in mask. */
static void prune_lowest(const float *weight, uint64_t start, uint64_t len, uint64_t k, Entry *scratch, uint8_t *mask) {
    for (uint64_t i = 0; i < len; i++) {
        scratch[i].key = fabsf(weight[start + i]);
        scratch[i].index = start + i;
    }
    qsort(scratch, len, sizeof(Entry), by_key_then_index);
    for (uint64_t i = 0; i < k && i < len; i++) mask[scratch[i].index] = 1;
}

static int32_t decide(const void *state, const PrunusLayer *layer, const PrunusPattern *pattern, uint32_t group,
                      PrunusOutput *out, char **error) {
    (void)state;
    uint64_t n = layer->d_out * layer->d_in;
    uint8_t *mask = calloc(n ? n : 1, 1);
    uint64_t scratch_len = group == PRUNUS_GROUP_NM ? pattern->m : n;
    Entry *scratch = malloc((scratch_len ? scratch_len : 1) * sizeof(Entry));
    if (mask == NULL || scratch == NULL) {
        free(mask);
        free(scratch);
        return fail(error, "out of memory");
    }
    if (group == PRUNUS_GROUP_NM) {
        for (uint64_t start = 0; start < n; start += pattern->m) {
            prune_lowest(layer->weight, start, pattern->m, pattern->n, scratch, mask);
        }
    } else {
        uint64_t k = (uint64_t)floor((double)n * pattern->sparsity);
        prune_lowest(layer->weight, 0, n, k, scratch, mask);
    }
    free(scratch);
    out->decision = PRUNUS_DECISION_MASK;
    out->mask = mask;
    out->mask_len = n;
    return PRUNUS_OK;
}

static void free_output(PrunusOutput *out) {
    free(out->values);
    free(out->mask);
    free(out->notes);
    out->values = NULL;
    out->mask = NULL;
    out->notes = NULL;
}

static void free_string(char *s) { free(s); }

static void destroy(void *state) { (void)state; }

static const PrunusPlugin table = {
#if defined(PRUNUS_TEST_FAULT) && PRUNUS_TEST_FAULT == 1
    .abi_version = PRUNUS_ABI_VERSION + 1,
#else
    .abi_version = PRUNUS_ABI_VERSION,
#endif
    .name = "magnitude-c",
    .version = "1",
    .summary = "magnitude |W| from a C library, selecting its own mask (example of the plugin ABI)",
    .stats = PRUNUS_STATS_NONE,
    .create = create,
    .group = group,
    .decide = decide,
    .free_output = free_output,
    .free_string = free_string,
    .destroy = destroy,
};

#if !defined(PRUNUS_TEST_FAULT) || PRUNUS_TEST_FAULT != 2
const PrunusPlugin *prunus_plugin(void) { return &table; }
#else
const PrunusPlugin *not_the_entry_point(void) { return &table; }
#endif
