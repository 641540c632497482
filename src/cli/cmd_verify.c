/* cmd_verify.c - `qshard verify`: every checksum of a qshard file, each
 * damaged part named; exit 0 only when all hold. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void help(FILE *out)
{
	fputs("usage: qshard verify FILE [--source IN]\n"
	      "\n"
	      "      --source IN   also recompute the source checksums against checkpoint IN\n"
	      "  -h, --help        this help\n",
	      out);
}

struct damage {
	const char *file;
	unsigned count;
};

static void on_damage(const char *what, const char *detail, void *user)
{
	struct damage *d = user;
	d->count++;
	if (what[0] == '\'' || what[0] == '\0')
		cli_error("'%s': %s: %s", d->file, what, detail);
	else if (!strcmp(what, "header") || !strcmp(what, "index") || !strcmp(what, "trailer") ||
		 !strcmp(what, "file"))
		cli_error("'%s': %s: %s", d->file, what, detail);
	else
		cli_error("'%s': tensor '%s': %s", d->file, what, detail);
}

int cmd_verify(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"source", required_argument, NULL, 's'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *source = NULL;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		if (c == 's') {
			source = optarg;
		} else if (c == 'h') {
			help(stdout);
			return QS_EXIT_OK;
		} else {
			help(stderr);
			return QS_EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		cli_error("verify needs one FILE (see 'qshard verify --help')");
		return QS_EXIT_USAGE;
	}
	struct damage d = {.file = argv[optind]};
	struct qs_diag diag = {{0}};
	int rc = qs_verify(argv[optind], source, on_damage, &d, &diag);
	if (rc < 0) {
		if (d.count == 0 || diag.msg[0])
			cli_fail(rc, &diag);
		/* damage of any kind is "damaged", whatever the structure */
		return rc == -QS_ECHECKSUM || rc == -QS_EFORMAT ? QS_EXIT_DAMAGED : cli_exit_code(rc);
	}
	printf("qshard: '%s': all checksums hold%s\n", argv[optind],
	       source ? ", source matches" : "");
	return QS_EXIT_OK;
}
