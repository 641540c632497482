/* part_id.c - how a part file (convert --part K/N) identifies itself: its
 * header's options text is the options text of the whole conversion
 * followed by " part=K/N", so --resume of one part refuses another part's
 * .partial with the usual options message, and merge recovers the whole
 * conversion's options (and their fingerprint) by cutting the suffix off.
 * Part files are named OUT.part-K-of-N.qshard (qshard.5). */
#include "container.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PART_TAG " part="

/* Strict decimal without sign or leading zero; false otherwise. */
static bool parse_num(const char *s, size_t len, unsigned *out)
{
	unsigned long v = 0;
	if (len == 0 || len > 6 || (s[0] == '0'))
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	*out = (unsigned)v;
	return true;
}

bool qs_part_id_parse(const char *options, unsigned *k, unsigned *n, size_t *prefix_len)
{
	if (!options)
		return false;
	const char *at = NULL;
	for (const char *p = strstr(options, PART_TAG); p; p = strstr(p + 1, PART_TAG))
		at = p;
	if (!at)
		return false;
	const char *num = at + strlen(PART_TAG);
	const char *slash = strchr(num, '/');
	unsigned kk, nn;
	if (!slash || !parse_num(num, (size_t)(slash - num), &kk) ||
	    !parse_num(slash + 1, strlen(slash + 1), &nn) || kk > nn || nn > QS_PART_MAX)
		return false;
	if (k)
		*k = kk;
	if (n)
		*n = nn;
	if (prefix_len)
		*prefix_len = (size_t)(at - options);
	return true;
}

char *qs_part_id_options(const char *options, unsigned k, unsigned n)
{
	size_t len = strlen(options) + sizeof(PART_TAG) + 24;
	char *s = malloc(len);
	if (s)
		snprintf(s, len, "%s" PART_TAG "%u/%u", options, k, n);
	return s;
}

int qs_part_path(const char *output, unsigned k, unsigned n, char *buf, size_t len)
{
	if (!output || k < 1 || k > n || n > QS_PART_MAX)
		return -QS_EUSAGE;
	size_t stem = strlen(output);
	/* "model.qshard" gives "model.part-2-of-4.qshard", not
	 * "model.qshard.part-2-of-4.qshard" */
	if (stem > 7 && strcmp(output + stem - 7, ".qshard") == 0)
		stem -= 7;
	int w = snprintf(buf, len, "%.*s.part-%u-of-%u.qshard", (int)stem, output, k, n);
	return w < 0 || (size_t)w >= len ? -QS_ETOOBIG : 0;
}
