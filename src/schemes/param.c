/* param.c - parsing, text and validation of one typed scheme parameter
 * (param.h); scheme.c walks a scheme's table with these. */
#include <stdio.h>
#include <string.h>

#include "param.h"
#include "scheme.h"

static unsigned pow10u(unsigned n)
{
	unsigned p = 1;
	while (n--)
		p *= 10;
	return p;
}

/* "D[.D...]" with at most `decimals` fractional digits (at least one after
 * a '.'), as value * 10^decimals; -1 on anything else or above 10^5. */
static int parse_decimal(const char *v, unsigned decimals, unsigned *out)
{
	unsigned ip = 0, fp = 0, nf = 0;
	const char *p = v;
	if (*p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (ip > 100000)
			return -1;
		ip = ip * 10 + (unsigned)(*p - '0');
	}
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return -1;
		for (; *p >= '0' && *p <= '9'; p++) {
			if (++nf > decimals)
				return -1;
			fp = fp * 10 + (unsigned)(*p - '0');
		}
	}
	if (*p || ip > 100000)
		return -1;
	*out = ip * pow10u(decimals) + fp * pow10u(decimals - nf);
	return 0;
}

static void format_decimal(unsigned v, unsigned decimals, bool fixed, char *buf, size_t len)
{
	unsigned scale = pow10u(decimals);
	if (v % scale == 0 && !fixed) {
		snprintf(buf, len, "%u", v / scale);
		return;
	}
	snprintf(buf, len, "%u.%0*u", v / scale, (int)decimals, v % scale);
	size_t l = strlen(buf);
	while (!fixed && l > 0 && buf[l - 1] == '0')
		buf[--l] = '\0';
}

void qs_param_format(const struct qs_param *p, unsigned v, char *buf, size_t len)
{
	if (p->kind == QS_PARAM_DECIMAL)
		format_decimal(v, p->decimals, p->fixed, buf, len);
	else if (p->kind == QS_PARAM_NAME && v < p->nnames)
		snprintf(buf, len, "%s", p->names[v]);
	else
		snprintf(buf, len, "%u", v);
}

bool qs_param_valid(const struct qs_param *p, unsigned v)
{
	switch (p->kind) {
	case QS_PARAM_ONE_OF:
		for (unsigned i = 0; i < p->nvalues; i++)
			if (p->values[i] == v)
				return true;
		return false;
	case QS_PARAM_RANGE:
	case QS_PARAM_DECIMAL:
		return v >= p->min && v <= p->max;
	case QS_PARAM_NAME:
		return v < p->nnames;
	}
	return false;
}

bool qs_param_parse(const struct qs_param *p, const char *val, unsigned *v)
{
	unsigned t = 0;
	if (p->kind == QS_PARAM_NAME) {
		for (unsigned i = 0; i < p->nnames; i++)
			if (strcmp(val, p->names[i]) == 0) {
				*v = i;
				return true;
			}
		return false;
	}
	if (p->kind == QS_PARAM_DECIMAL ? parse_decimal(val, p->decimals, &t)
					: qs_scheme_parse_uint(val, &t))
		return false;
	if (!qs_param_valid(p, t))
		return false;
	*v = t;
	return true;
}

void qs_param_describe(const struct qs_param *p, char *buf, size_t len)
{
	size_t used = 0;
	char a[24], b[24];
	buf[0] = '\0';
	switch (p->kind) {
	case QS_PARAM_ONE_OF:
	case QS_PARAM_NAME: {
		unsigned n = p->kind == QS_PARAM_ONE_OF ? p->nvalues : p->nnames;
		used = (size_t)snprintf(buf, len, "one of ");
		for (unsigned i = 0; i < n && used < len; i++) {
			qs_param_format(p, p->kind == QS_PARAM_ONE_OF ? p->values[i] : i, a,
					sizeof(a));
			used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? ", " : "", a);
		}
		break;
	}
	case QS_PARAM_RANGE:
		snprintf(buf, len, p->max == p->min + 1 ? "%u or %u" : "%u..%u", p->min, p->max);
		break;
	case QS_PARAM_DECIMAL:
		qs_param_format(p, p->min, a, sizeof(a));
		qs_param_format(p, p->max, b, sizeof(b));
		if (p->decimals == 1)
			snprintf(buf, len, "%s..%s with at most one decimal", a, b);
		else
			snprintf(buf, len, "%s..%s with at most %u decimals", a, b, p->decimals);
		break;
	}
}
