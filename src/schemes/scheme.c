/* scheme.c - the table of quantization schemes and the parser for the
 * "NAME[:key=val,...]" part of a --scheme rule. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "scheme.h"
#include "util.h"

/* Order is the order "known: ..." lists them in. */
const struct qs_scheme_ops *const qs_scheme_registry[] = {
	&qs_scheme_rtn,
	&qs_scheme_adpq,
	&qs_scheme_daq,
	&qs_scheme_claq,
	&qs_scheme_gptq,
	&qs_scheme_athena,
	&qs_scheme_gguf,
	NULL,
};

static const struct qs_scheme_ops *find_n(const char *name, size_t len)
{
	for (size_t i = 0; qs_scheme_registry[i]; i++) {
		const char *known = qs_scheme_registry[i]->name;
		if (strlen(known) == len && memcmp(known, name, len) == 0)
			return qs_scheme_registry[i];
	}
	return NULL;
}

const struct qs_scheme_ops *qs_scheme_find(const char *name)
{
	return name ? find_n(name, strlen(name)) : NULL;
}

int qs_scheme_parse(const char *spec, struct qs_scheme *s, struct qs_diag *diag)
{
	const char *colon = strchr(spec, ':');
	size_t len = colon ? (size_t)(colon - spec) : strlen(spec);
	const struct qs_scheme_ops *ops = find_n(spec, len);

	memset(s, 0, sizeof(*s));
	if (!ops) {
		char known[256] = "";
		size_t used = 0;
		for (size_t i = 0; qs_scheme_registry[i]; i++) {
			int n = snprintf(known + used, sizeof(known) - used, "%s%s",
					 i ? ", " : "", qs_scheme_registry[i]->name);
			if (n < 0 || (size_t)n >= sizeof(known) - used)
				break;
			used += (size_t)n;
		}
		return qs_diag_set(diag, -QS_EUSAGE, "unknown scheme '%.*s' (known: %s)",
				   (int)(len > 200 ? 200 : len), spec, known);
	}
	s->ops = ops;
	return ops->parse(s, colon ? colon + 1 : "", diag);
}

int qs_scheme_parse_uint(const char *val, unsigned *out)
{
	unsigned v = 0;
	if (!*val)
		return -1;
	for (const char *p = val; *p; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		unsigned d = (unsigned)(*p - '0');
		if (v > (UINT_MAX - d) / 10u)
			return -1;
		v = v * 10u + d;
	}
	*out = v;
	return 0;
}

#define ARG_MAX 64

int qs_scheme_each_arg(struct qs_scheme *s, const char *args,
		       int (*fn)(struct qs_scheme *s, const char *key,
				 const char *val, struct qs_diag *diag),
		       struct qs_diag *diag)
{
	const char *name = s->ops ? s->ops->name : "scheme";
	const char *p = args;

	while (*p) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		const char *eq = memchr(p, '=', len);

		if (len >= ARG_MAX)
			return qs_diag_set(diag, -QS_EUSAGE, "%s: parameter '%.*s...' is too long",
					   name, 32, p);
		if (!eq || eq == p)
			return qs_diag_set(diag, -QS_EUSAGE,
					   "%s: expected key=value, got '%.*s'", name,
					   (int)len, p);

		char key[ARG_MAX], val[ARG_MAX];
		size_t klen = (size_t)(eq - p);
		memcpy(key, p, klen);
		key[klen] = '\0';
		memcpy(val, eq + 1, len - klen - 1);
		val[len - klen - 1] = '\0';

		/* a repeated key is more likely a typo than an override */
		for (const char *q = args; q < p;) {
			const char *qend = strchr(q, ',');
			if (strncmp(q, key, klen) == 0 && q[klen] == '=')
				return qs_diag_set(diag, -QS_EUSAGE,
						   "%s: parameter '%s' given twice", name, key);
			q = qend + 1;  /* q < p, so an earlier item ends in ',' */
		}

		int rc = fn(s, key, val, diag);
		if (rc)
			return rc;
		if (!end)
			break;
		p = end + 1;
		if (!*p)
			return qs_diag_set(diag, -QS_EUSAGE,
					   "%s: expected key=value after ','", name);
	}
	return 0;
}

int qs_scheme_parse_e4(const char *v, unsigned *out)
{
	unsigned ip = 0, fp = 0, nf = 0;
	const char *p = v;
	if (*p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (ip > 1000)
			return -1;
		ip = ip * 10 + (unsigned)(*p - '0');
	}
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return -1;
		for (; *p >= '0' && *p <= '9'; p++) {
			if (++nf > 4)
				return -1;
			fp = fp * 10 + (unsigned)(*p - '0');
		}
	}
	if (*p)
		return -1;
	while (nf++ < 4)
		fp *= 10;
	*out = ip * 10000 + fp;
	return 0;
}

void qs_scheme_fmt_e4(char *buf, size_t len, unsigned e4)
{
	if (e4 % 10000 == 0) {
		snprintf(buf, len, "%u", e4 / 10000);
		return;
	}
	snprintf(buf, len, "%u.%04u", e4 / 10000, e4 % 10000);
	size_t l = strlen(buf);
	while (l > 0 && buf[l - 1] == '0')
		buf[--l] = '\0';
}
