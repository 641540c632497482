/* cli.h - shared pieces of the qshard command-line front end: exit codes
 * (documented in qshard(1)), error printing and argument helpers. */
#ifndef QS_CLI_H
#define QS_CLI_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "qshard.h"

/* Exit codes: qshard(1), EXIT STATUS.  Scripts depend on them. */
enum qs_exit {
	QS_EXIT_OK = 0,
	QS_EXIT_FAILURE = 1,     /* system error: I/O, memory, permissions */
	QS_EXIT_USAGE = 2,       /* bad command line */
	QS_EXIT_BADINPUT = 3,    /* malformed checkpoint or qshard file, NaN/Inf */
	QS_EXIT_DAMAGED = 4,     /* verify found damage */
	QS_EXIT_INTERRUPTED = 5, /* stopped by a signal; --resume continues */
	QS_EXIT_RESUME = 6,      /* .partial exists, or resume refused */
	QS_EXIT_MEMORY = 7,      /* --memory too small */
};

/* Prints "qshard: MSG" to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints the diag (or qs_strerror(rc) when empty) and returns the exit
 * code for rc. */
int cli_fail(int rc, const struct qs_diag *diag);

/* For the long commands (convert, export, merge): SIGINT and SIGTERM set
 * the returned flag, which the library polls to stop at its next safe
 * point; a second signal kills at once, as users expect.
 * cli_default_signals() restores the default handlers. */
volatile int *cli_stop_on_signals(void);
void cli_default_signals(void);
int cli_exit_code(int rc);
/* "512M", "1.5G", "4096": bytes (powers of 1024); false on bad text. */
bool cli_parse_size(const char *text, uint64_t *out);
/* Index of text in the NULL-terminated names; -1 after printing
 * "OPT must be a, b or c (got 'text')". */
int cli_choice(const char *opt, const char *text, const char *const *names);
/* "K/N" of --part: 1 <= K <= N <= QS_PART_MAX; false after printing why. */
bool cli_parse_part(const char *text, unsigned *k, unsigned *n);
/* Human size "1.23 GB" (powers of 1000, as disks are sold). */
const char *cli_human(uint64_t bytes, char buf[32]);
/* True when path is a qshard file (starts with the header frame magic). */
bool cli_is_qshard_file(const char *path);

/* JSON output (cli_json.c): a string value for any C string (bytes that
 * are not UTF-8 become U+FFFD); print one value and a newline, then
 * release it (flags: jansson's, e.g. JSON_COMPACT or JSON_INDENT(2)). */
json_t *cli_json_string(const char *s);
void cli_json_print(FILE *out, json_t *value, size_t flags);

int cmd_convert(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_unpack(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_merge(int argc, char **argv);

/* convert --plan-only (plan_print.c): prints the plan of opts (the slice of
 * --part K/N) as a table or JSON; returns the exit code. */
int cli_print_plan(const struct qs_convert_opts *opts, bool json);
/* The same plan: printed as a table headed by title (NULL: the "part K of
 * N" line), or, with json non-NULL, built into *json (owned by the
 * caller).  Returns the exit code; on failure the error is printed. */
int cli_plan(const struct qs_convert_opts *opts, const char *title, json_t **json);
int cmd_cat(int argc, char **argv);

#endif /* QS_CLI_H */
