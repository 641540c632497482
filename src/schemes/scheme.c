/* scheme.c - the table of quantization schemes and the parser for the
 * "NAME[:key=val,...]" part of a --scheme rule, driven by each scheme's
 * parameter table (param.h). */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "scheme.h"
#include "util.h"

/* The registry: one line a scheme, naming the `qs_scheme_NAME` ops table
 * its file defines (HACKING.md, Adding a scheme).  Order is the order
 * "known: ..." lists them in. */
#define QS_SCHEMES(X) \
	X(rtn)        \
	X(adpq)       \
	X(daq)        \
	X(claq)       \
	X(gptq)       \
	X(gptq_clip)  \
	X(athena)     \
	X(gguf)       \
	X(rtn_sym)    \
	/* a new scheme: one line above this one */

#define QS_SCHEME_DECLARE(name) extern const struct qs_scheme_ops qs_scheme_##name;
QS_SCHEMES(QS_SCHEME_DECLARE)
#define QS_SCHEME_ENTRY(name) &qs_scheme_##name,
const struct qs_scheme_ops *const qs_scheme_registry[] = {QS_SCHEMES(QS_SCHEME_ENTRY) NULL};

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

/* ---- the parameter table walk (param.h) ---- */

static unsigned get(const struct qs_scheme *s, const struct qs_param *p)
{
	unsigned v;
	memcpy(&v, (const char *)s->params + p->offset, sizeof(v));
	return v;
}

static void put(struct qs_scheme *s, const struct qs_param *p, unsigned v)
{
	memcpy((char *)s->params + p->offset, &v, sizeof(v));
}

/* A plain number is shown as is, anything else quoted: "(got 5)", "(got 'x')". */
static bool plain_number(const char *val)
{
	unsigned v;
	return qs_scheme_parse_uint(val, &v) == 0;
}

static int param_arg(struct qs_scheme *s, const char *key, const char *val,
		     struct qs_diag *diag)
{
	const struct qs_param *p = s->ops->params;
	char legal[160];
	unsigned v;

	for (; p->name; p++)
		if (strcmp(p->name, key) == 0)
			break;
	if (!p->name) {
		size_t used = 0;
		legal[0] = '\0';
		for (p = s->ops->params; p->name && used < sizeof(legal); p++)
			used += (size_t)snprintf(legal + used, sizeof(legal) - used, "%s%s",
						 p == s->ops->params ? "" : ", ", p->name);
		return qs_diag_set(diag, -QS_EUSAGE, "%s: unknown parameter '%s' (known: %s)",
				   s->ops->name, key, legal);
	}
	if (!qs_param_parse(p, val, &v)) {
		bool q = !plain_number(val);
		qs_param_describe(p, legal, sizeof(legal));
		return qs_diag_set(diag, -QS_EUSAGE, "%s: %s must be %s (got %s%s%s)",
				   s->ops->name, key, legal, q ? "'" : "", val, q ? "'" : "");
	}
	put(s, p, v);
	return 0;
}

/* "name:key=val,..." with every parameter in table order. */
static int write_text(struct qs_scheme *s, struct qs_diag *diag)
{
	size_t used = (size_t)snprintf(s->text, sizeof(s->text), "%s", s->ops->name);
	for (const struct qs_param *p = s->ops->params; p->name; p++) {
		char val[24];
		qs_param_format(p, get(s, p), val, sizeof(val));
		if (used < sizeof(s->text))
			used += (size_t)snprintf(s->text + used, sizeof(s->text) - used, "%c%s=%s",
						 p == s->ops->params ? ':' : ',', p->name, val);
	}
	if (used >= sizeof(s->text))
		return qs_diag_set(diag, -QS_EUSAGE, "%s: canonical text longer than %d bytes",
				   s->ops->name, QS_SCHEME_TEXT_MAX - 1);
	return 0;
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
	for (const struct qs_param *p = ops->params; p->name; p++)
		put(s, p, p->def);
	int rc = qs_scheme_each_arg(s, colon ? colon + 1 : "", param_arg, diag);
	if (rc)
		return rc;
	if (ops->check && (rc = ops->check(s, diag)) != 0)
		return rc;
	return write_text(s, diag);
}

int qs_scheme_init(struct qs_scheme *s, const struct qs_scheme_ops *ops, const void *params,
		   size_t size, struct qs_diag *diag)
{
	memset(s, 0, sizeof(*s));
	s->ops = ops;
	if (size > sizeof(s->params))
		return qs_diag_set(diag, -QS_EUSAGE, "%s: parameter struct too large", ops->name);
	memcpy(s->params, params, size);
	for (const struct qs_param *p = ops->params; p->name; p++) {
		unsigned v = get(s, p);
		if (!qs_param_valid(p, v))
			return qs_diag_set(diag, -QS_EUSAGE, "%s: %s=%u is not a legal value",
					   ops->name, p->name, v);
	}
	int rc = ops->check ? ops->check(s, diag) : 0;
	return rc ? rc : write_text(s, diag);
}

int qs_scheme_param(const struct qs_scheme *s, const char *name, unsigned *v)
{
	for (const struct qs_param *p = s->ops->params; p->name; p++)
		if (strcmp(p->name, name) == 0) {
			*v = get(s, p);
			return 0;
		}
	return -1;
}

bool qs_scheme_params_ok(const struct qs_scheme *s)
{
	if (!s->ops)
		return false;
	for (const struct qs_param *p = s->ops->params; p->name; p++)
		if (!qs_param_valid(p, get(s, p)))
			return false;
	return true;
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
