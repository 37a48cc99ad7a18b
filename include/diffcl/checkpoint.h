/**
 * @file checkpoint.h
 * @brief Named-tensor dictionaries and the safetensors container (read and write).
 *
 * A ::diffcl_tensor_dict maps names to tensors (insertion-ordered) plus string metadata.
 * It is the unit of every checkpoint: a model's state dict, an optimizer's state, a
 * trainer's state, and the reference fixtures of the tests.
 *
 * safetensors layout: 8-byte little-endian header length N, N bytes of JSON
 * ({"name": {"dtype": "F32", "shape": [...], "data_offsets": [b, e]}, ...,
 * "__metadata__": {"key": "value"}}), then the raw little-endian data.
 * Ownership: diffcl_tensor_dict_new() and diffcl_safetensors_load() hand out a dictionary
 * the caller owns and releases with diffcl_tensor_dict_free(); getters return borrowed
 * pointers, valid until the entry is replaced or removed or the dictionary is released.
 *
 * Errors: DIFFCL_ERR_INVALID_ARGUMENT for a NULL dictionary, name or out-pointer,
 * DIFFCL_ERR_OUT_OF_MEMORY, and the codes named per function; the detail is in
 * diffcl_last_error().
 *
 * Thread safety: a dictionary belongs to its context and is used by one thread at a time
 * (core.h); separate dictionaries may be loaded and saved concurrently.
 */
#ifndef DIFFCL_CHECKPOINT_H
#define DIFFCL_CHECKPOINT_H

#include "diffcl/tensor.h"

DIFFCL_BEGIN_DECLS

typedef struct diffcl_tensor_dict diffcl_tensor_dict;

/** New empty dictionary. */
DIFFCL_API diffcl_status diffcl_tensor_dict_new(diffcl_context *ctx, diffcl_tensor_dict **out);
/** Release the dictionary and its references to its tensors. NULL is ignored. */
DIFFCL_API void diffcl_tensor_dict_free(diffcl_tensor_dict *dict);
/** Insert or replace @p name; the dictionary takes its own reference to @p t. */
DIFFCL_API diffcl_status diffcl_tensor_dict_set(diffcl_tensor_dict *dict, const char *name,
                                                diffcl_tensor *t);
/** The tensor stored under @p name (borrowed), or NULL. */
DIFFCL_API diffcl_tensor *diffcl_tensor_dict_get(const diffcl_tensor_dict *dict, const char *name);
/** Remove @p name; DIFFCL_ERR_NOT_FOUND if absent. */
DIFFCL_API diffcl_status diffcl_tensor_dict_remove(diffcl_tensor_dict *dict, const char *name);
/** Number of tensors. */
DIFFCL_API int diffcl_tensor_dict_size(const diffcl_tensor_dict *dict);
/** Name of entry @p i (insertion order; borrowed), or NULL when out of range. */
DIFFCL_API const char *diffcl_tensor_dict_name(const diffcl_tensor_dict *dict, int i);
/** Tensor of entry @p i (borrowed), or NULL when out of range. */
DIFFCL_API diffcl_tensor *diffcl_tensor_dict_at(const diffcl_tensor_dict *dict, int i);
/** Set a metadata string (copied). */
DIFFCL_API diffcl_status diffcl_tensor_dict_set_meta(diffcl_tensor_dict *dict, const char *key,
                                                     const char *value);
/** A metadata string (borrowed), or NULL. */
DIFFCL_API const char *diffcl_tensor_dict_get_meta(const diffcl_tensor_dict *dict, const char *key);

/** Number of metadata entries. */
DIFFCL_API int diffcl_tensor_dict_meta_count(const diffcl_tensor_dict *dict);
/** Key of metadata entry @p i (borrowed), or NULL when out of range. */
DIFFCL_API const char *diffcl_tensor_dict_meta_key(const diffcl_tensor_dict *dict, int i);

/**
 * Read a safetensors file. F32, F64, U8, I32 and I64 keep their type; F16 and BF16 are
 * widened to F32; BOOL, I8, U16, I16 and U32 widen to I64 (U8 stays U8). A missing file gives
 * DIFFCL_ERR_IO, a truncated or malformed one DIFFCL_ERR_FORMAT, each with the path and the
 * problem in diffcl_last_error(); never a crash.
 */
DIFFCL_API diffcl_status diffcl_safetensors_load(diffcl_context *ctx, const char *path,
                                                 diffcl_tensor_dict **out);
/**
 * Write a safetensors file atomically: a temporary file in the same folder is written,
 * fsync'ed and renamed over @p path, so a crash never leaves a half-written checkpoint in
 * place of the previous one.
 */
DIFFCL_API diffcl_status diffcl_safetensors_save(const diffcl_tensor_dict *dict, const char *path);

DIFFCL_END_DECLS

#endif /* DIFFCL_CHECKPOINT_H */
