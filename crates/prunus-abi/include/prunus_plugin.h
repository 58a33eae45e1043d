/*
 * prunus_plugin.h: the C ABI of prunus method plugins, version 1.
 *
 * A plugin is a shared library exporting one function, prunus_plugin(), which returns a
 * pointer to a PrunusPlugin table that lives as long as the library (prunus never unloads
 * it). The table's first field is the ABI version; prunus reads that field alone first and
 * refuses any other version. Only plain data crosses: f32 weights, f64 statistics, shapes,
 * NUL-terminated UTF-8 strings. The Rust types in prunus-abi (src/lib.rs) mirror this file
 * field for field.
 *
 * Ownership: what prunus passes in is borrowed for the call. What a plugin hands back (an
 * output's buffers, error and configuration strings) is the plugin's and goes back through
 * free_output / free_string, so each side frees with its own allocator.
 *
 * Threads: prunus may call decide() and group() from any thread, and more than one at a time
 * with the same state; a method must not mutate its state there.
 */
#ifndef PRUNUS_PLUGIN_H
#define PRUNUS_PLUGIN_H

#include <stdint.h>

#define PRUNUS_ABI_VERSION 1u

/* Return codes of create, group and decide. */
#define PRUNUS_OK 0           /* success */
#define PRUNUS_ERROR 1        /* failure; *error holds the reason (or is left NULL) */
#define PRUNUS_UNSUPPORTED 2  /* group(): the method does not support this pattern */

/* The statistics of each linear's inputs a method needs; each includes the ones before. */
#define PRUNUS_STATS_NONE 0u     /* the weights alone (magnitude) */
#define PRUNUS_STATS_SQ_NORM 1u  /* per input feature j, sum over tokens of x_j^2 (Wanda) */
#define PRUNUS_STATS_HESSIAN 2u  /* and the d_in x d_in Gram matrix, sum of x x^T (SparseGPT) */

/* Comparison groups: which weights compete when prunus builds the mask from scores. */
#define PRUNUS_GROUP_PER_MATRIX 0u  /* the whole linear (unstructured only) */
#define PRUNUS_GROUP_PER_ROW 1u     /* each output row (unstructured only) */
#define PRUNUS_GROUP_NM 2u          /* each M consecutive input columns of a row (N:M only) */

/* What decide() returns. */
#define PRUNUS_DECISION_SCORES 1u            /* values: one score per weight; low = pruned first */
#define PRUNUS_DECISION_MASK 2u              /* mask: the method chose the weights itself */
#define PRUNUS_DECISION_MASK_AND_WEIGHTS 3u  /* mask, and values: the rewritten weights */

/* The pattern asked for: N:M, or unstructured (n = m = 0) at a sparsity in [0, 1). */
typedef struct PrunusPattern {
    uint32_t n;
    uint32_t m;
    double sparsity; /* the fraction removed; n / m for N:M */
} PrunusPattern;

/* One linear layer and the statistics of its inputs over the calibration set. */
typedef struct PrunusLayer {
    uint64_t block;        /* decoder block index */
    const char *name;      /* e.g. "blk.3.q_proj" */
    uint64_t d_out;        /* rows (output features) */
    uint64_t d_in;         /* columns (input features) */
    const float *weight;   /* d_out * d_in, row-major */
    const double *sq_norm; /* d_in values, or NULL unless the method asked for SQ_NORM or more */
    const double *hessian; /* d_in * d_in values, row-major, or NULL unless asked for HESSIAN */
    uint64_t n_samples;    /* calibration sequences seen */
    uint64_t n_tokens;     /* calibration tokens seen */
} PrunusLayer;

/* A decision, filled in by decide() and released by free_output(). */
typedef struct PrunusOutput {
    uint32_t decision;   /* PRUNUS_DECISION_* */
    float *values;       /* SCORES: d_out * d_in scores; MASK_AND_WEIGHTS: the new weights */
    uint64_t values_len;
    uint8_t *mask;       /* MASK and MASK_AND_WEIGHTS: d_out * d_in flags, 1 = pruned, 0 = kept */
    uint64_t mask_len;
    char *notes;         /* optional JSON object recorded in the report next to the layer */
} PrunusOutput;

/* The table prunus_plugin() returns. Every string and function is required. */
typedef struct PrunusPlugin {
    uint32_t abi_version;   /* PRUNUS_ABI_VERSION; always the first field */
    const char *name;       /* registry name, e.g. "magnitude-c": lowercase letters, digits, '-' */
    const char *version;    /* bumped whenever the method's numbers can change */
    const char *summary;    /* one line for `prunus list` */
    uint32_t stats;         /* PRUNUS_STATS_* */
    /* Checks config_json (a JSON value; "null" = defaults) and makes the method's state.
     * *effective_config: the configuration with every default filled in (JSON), or NULL. */
    int32_t (*create)(const char *config_json, void **state, char **effective_config, char **error);
    /* The comparison group for a pattern, or PRUNUS_UNSUPPORTED. */
    int32_t (*group)(const void *state, const PrunusPattern *pattern, uint32_t *group, char **error);
    /* The decision for one linear at a pattern with the group group() chose for it. */
    int32_t (*decide)(const void *state, const PrunusLayer *layer, const PrunusPattern *pattern,
                      uint32_t group, PrunusOutput *out, char **error);
    void (*free_output)(PrunusOutput *out);
    void (*free_string)(char *s);
    void (*destroy)(void *state);
} PrunusPlugin;

/* The one exported symbol. */
const PrunusPlugin *prunus_plugin(void);

#endif /* PRUNUS_PLUGIN_H */
