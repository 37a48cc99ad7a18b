/**
 * @file export.h
 * @brief Symbol-visibility and C++ linkage macros shared by every public header.
 */
#ifndef DIFFCL_EXPORT_H
#define DIFFCL_EXPORT_H

#if defined(_WIN32) && defined(DIFFCL_BUILDING_LIBRARY)
#define DIFFCL_API __declspec(dllexport)
#elif defined(__GNUC__) || defined(__clang__)
/* The library is built with -fvisibility=hidden: only what carries this is exported. */
#define DIFFCL_API __attribute__((visibility("default")))
#else
#define DIFFCL_API
#endif

#ifdef __cplusplus
#define DIFFCL_BEGIN_DECLS extern "C" {
#define DIFFCL_END_DECLS }
#else
#define DIFFCL_BEGIN_DECLS
#define DIFFCL_END_DECLS
#endif

#endif /* DIFFCL_EXPORT_H */
