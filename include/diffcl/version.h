/**
 * @file version.h
 * @brief Compile-time and run-time version of libdiffcl.
 *
 * The soname carries the major version (libdiffcl.so.<major>); a change that breaks the
 * ABI bumps it and is recorded in CHANGELOG.md.
 *
 * Thread safety: both functions return constants and may be called from any thread.
 */
#ifndef DIFFCL_VERSION_H
#define DIFFCL_VERSION_H

#include "diffcl/export.h"

#define DIFFCL_VERSION_MAJOR 0
#define DIFFCL_VERSION_MINOR 1
#define DIFFCL_VERSION_PATCH 0
/** One number, comparable with <, e.g. 0.1.0 -> 100. */
#define DIFFCL_VERSION_NUMBER                                                                      \
    (DIFFCL_VERSION_MAJOR * 10000 + DIFFCL_VERSION_MINOR * 100 + DIFFCL_VERSION_PATCH)
#define DIFFCL_VERSION_STRING "0.1.0"

DIFFCL_BEGIN_DECLS

/** @return DIFFCL_VERSION_NUMBER of the library actually loaded at run time. Thread-safe. */
DIFFCL_API unsigned diffcl_version_number(void);
/** @return "MAJOR.MINOR.PATCH" of the loaded library; static storage. Thread-safe. */
DIFFCL_API const char *diffcl_version_string(void);

DIFFCL_END_DECLS

#endif /* DIFFCL_VERSION_H */
