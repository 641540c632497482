/* cli_json.c - every JSON the CLI prints (convert's --progress json events
 * and summary, inspect --json) is built as a jansson value and dumped by
 * jansson, never assembled with printf: a path holding '"', '\' or a
 * control character must still give valid JSON. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

json_t *cli_json_string(const char *s)
{
	json_t *v = json_string(s ? s : "");
	if (v)
		return v;
	/* not UTF-8 (a path is any bytes): each byte that is not ASCII
	 * becomes U+FFFD, so the value stays a string */
	size_t n = strlen(s);
	char *t = malloc(3 * n + 1), *o = t;
	if (!t)
		return json_null();
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x80) {
			*o++ = (char)c;
		} else {
			memcpy(o, "\xef\xbf\xbd", 3);
			o += 3;
		}
	}
	*o = '\0';
	v = json_string(t);
	free(t);
	return v ? v : json_null();
}

void cli_json_print(FILE *out, json_t *value, size_t flags)
{
	if (value && json_dumpf(value, out, flags | JSON_ENSURE_ASCII) == 0)
		fputc('\n', out);
	json_decref(value);
	fflush(out);
}
