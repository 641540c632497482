/* util.h - small helpers shared by every library module: diagnostics,
 * checked arithmetic and explicit little-endian encoding (never raw struct
 * I/O, see DESIGN.md). */
#ifndef QS_UTIL_H
#define QS_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "qshard.h"

#if defined(__GNUC__)
#define QS_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define QS_PRINTF(a, b)
#endif

/* Fills diag (if non-NULL) with a formatted message; returns err so callers
 * can write `return qs_diag_set(d, -QS_EFORMAT, "...")`. */
int qs_diag_set(struct qs_diag *diag, int err, const char *fmt, ...) QS_PRINTF(3, 4);

/* Overflow-checked arithmetic: false when the result does not fit. */
static inline bool qs_mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
	return !__builtin_mul_overflow(a, b, out);
}
static inline bool qs_add_u64(uint64_t a, uint64_t b, uint64_t *out)
{
	return !__builtin_add_overflow(a, b, out);
}

static inline void qs_put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}
static inline void qs_put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline void qs_put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t qs_get_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t qs_get_le32(const uint8_t *p)
{
	uint32_t v = 0;
	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}
static inline uint64_t qs_get_le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* Reads/writes exactly len bytes at off, retrying short transfers and EINTR.
 * Returns 0, -errno, or -QS_EFORMAT when the file ends first (read). */
int qs_pread_full(int fd, void *buf, size_t len, uint64_t off);
int qs_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);

/* Joins dir and name with a '/', malloc'd; NULL on allocation failure. */
char *qs_path_join(const char *dir, const char *name);
/* Last path component (pointer into path). */
const char *qs_basename(const char *path);

#endif /* QS_UTIL_H */
