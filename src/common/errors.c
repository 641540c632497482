/* errors.c - qs_strerror, dtype table and version: the small lookups that
 * the X-macro lists in qshard.h generate. */
#include <string.h>
#include <strings.h>

#include "config.h"
#include "qshard.h"

const char *qs_strerror(int err)
{
	int code = err < 0 ? -err : err;
	switch (code) {
#define QS_ERROR_CASE(name, value, text) \
	case name:                       \
		return text;
		QS_ERROR_LIST(QS_ERROR_CASE)
#undef QS_ERROR_CASE
	}
	return strerror(code);
}

struct dtype_entry {
	const char *name;
	unsigned size;
};

static const struct dtype_entry dtype_table[QS_DTYPE_COUNT] = {
#define QS_DTYPE_ENTRY(name, value, text, size) [value] = {text, size},
	QS_DTYPE_LIST(QS_DTYPE_ENTRY)
#undef QS_DTYPE_ENTRY
};

const char *qs_dtype_name(enum qs_dtype dtype)
{
	if ((unsigned)dtype >= QS_DTYPE_COUNT)
		return NULL;
	return dtype_table[dtype].name;
}

unsigned qs_dtype_size(enum qs_dtype dtype)
{
	if ((unsigned)dtype >= QS_DTYPE_COUNT)
		return 0;
	return dtype_table[dtype].size;
}

int qs_dtype_parse(const char *text, enum qs_dtype *out)
{
	/* safetensors dtype strings are case-sensitive upper case */
	for (unsigned i = 0; i < QS_DTYPE_COUNT; i++) {
		/* MXFP4 only ever comes from a pair of U8 tensors */
		if (dtype_table[i].size && strcmp(text, dtype_table[i].name) == 0) {
			*out = (enum qs_dtype)i;
			return 0;
		}
	}
	return -QS_EDTYPE;
}

bool qs_dtype_quantizable(enum qs_dtype dtype)
{
	return dtype == QS_DTYPE_BF16 || dtype == QS_DTYPE_F16 || dtype == QS_DTYPE_F32;
}

const char *qs_version(void)
{
	return PACKAGE_VERSION;
}
