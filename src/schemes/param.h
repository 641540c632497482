/* param.h - typed scheme parameters declared once, as a table.
 *
 * A scheme keeps its parameters in its own struct of `unsigned` fields
 * (struct rtn_params { unsigned bits, group; }) and describes each field
 * in a table of struct qs_param: its name (the field's name), kind, legal
 * values and default.  From that table alone come the parsing of
 * "key=val,..." (defaults first; unknown keys, bad values and repeats are
 * -QS_EUSAGE with a message naming the scheme, the key and the legal
 * values), the canonical text "name:key=val,..." in table order, the
 * validation of a parsed struct and the list of parameters that
 * tests/unit/test_scheme.c checks against the man page.
 *
 * The struct lives inside struct qs_scheme (params[], at most
 * QS_SCHEME_PARAMS_MAX fields); a scheme reads it through a one-line
 * accessor, see HACKING.md.
 */
#ifndef QS_PARAM_H
#define QS_PARAM_H

#include <stdbool.h>
#include <stddef.h>

enum qs_param_kind {
	QS_PARAM_ONE_OF,   /* an unsigned from values[] (bits=2,3,4,8) */
	QS_PARAM_RANGE,    /* an unsigned in [min, max] (iters=0..64) */
	QS_PARAM_DECIMAL,  /* "D[.D...]" with at most `decimals` fractional digits,
			    * stored as value * 10^decimals, in [min, max] */
	QS_PARAM_NAME,     /* one of names[], stored as its index */
};

struct qs_param {
	const char *name;         /* NULL ends a table */
	enum qs_param_kind kind;
	size_t offset;            /* of the unsigned field in the scheme's struct */
	unsigned def;             /* default, in stored form */
	unsigned min, max;        /* RANGE and DECIMAL bounds, stored form, inclusive */
	unsigned decimals;        /* DECIMAL: fractional digits, 1..4 */
	bool fixed;               /* DECIMAL: text shows every decimal ("3.0", not "3") */
	const unsigned *values;   /* ONE_OF, ascending */
	unsigned nvalues;
	const char *const *names; /* NAME */
	unsigned nnames;
	const char *doc;          /* one line for the reader of the source */
};

#define QS_PARAM_COUNT_(...) (sizeof((const unsigned[]){__VA_ARGS__}) / sizeof(unsigned))
#define QS_PARAM_NAMES_(...) (sizeof((const char *const[]){__VA_ARGS__}) / sizeof(char *))

/* Table entries; T is the scheme's struct, f a field of it (and the
 * parameter's name). */
#define QS_PARAM_ONE_OF(T, f, dflt, doc_, ...)                                          \
	{.name = #f, .kind = QS_PARAM_ONE_OF, .offset = offsetof(T, f), .def = (dflt),     \
	 .values = (const unsigned[]){__VA_ARGS__}, .nvalues = QS_PARAM_COUNT_(__VA_ARGS__), \
	 .doc = (doc_)}
#define QS_PARAM_RANGE(T, f, dflt, lo, hi, doc_)                                        \
	{.name = #f, .kind = QS_PARAM_RANGE, .offset = offsetof(T, f), .def = (dflt),      \
	 .min = (lo), .max = (hi), .doc = (doc_)}
#define QS_PARAM_DECIMAL(T, f, dflt, lo, hi, ndec, fixed_, doc_)                        \
	{.name = #f, .kind = QS_PARAM_DECIMAL, .offset = offsetof(T, f), .def = (dflt),    \
	 .min = (lo), .max = (hi), .decimals = (ndec), .fixed = (fixed_), .doc = (doc_)}
#define QS_PARAM_NAME(T, f, dflt, doc_, ...)                                            \
	{.name = #f, .kind = QS_PARAM_NAME, .offset = offsetof(T, f), .def = (dflt),       \
	 .names = (const char *const[]){__VA_ARGS__}, .nnames = QS_PARAM_NAMES_(__VA_ARGS__), \
	 .doc = (doc_)}
#define QS_PARAM_END {.name = NULL}

/* The value text of p's stored value v (canonical form: "4", "0.02", "nf4"). */
void qs_param_format(const struct qs_param *p, unsigned v, char *buf, size_t len);
/* Parses val for p into *v; false when val is not a legal value. */
bool qs_param_parse(const struct qs_param *p, const char *val, unsigned *v);
/* True when v is a legal stored value of p. */
bool qs_param_valid(const struct qs_param *p, unsigned v);
/* The legal values as text: "one of 2, 3, 4, 8", "0..64", "0 or 1",
 * "0..0.25 with at most 4 decimals", "one of int, fp4, nf4". */
void qs_param_describe(const struct qs_param *p, char *buf, size_t len);

#endif /* QS_PARAM_H */
