/* cmd_merge.c - `qshard merge OUT PART...`: joins the part files of
 * `convert --part K/N` into OUT, byte-identical to a single convert.  The
 * checks and the copy are qs_merge(). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void help(FILE *out)
{
	fputs("usage: qshard merge OUT PART... [options]\n"
	      "\n"
	      "Joins the part files OUT.part-K-of-N.qshard of one split convert (every K\n"
	      "of one N, any order) into OUT (OUT.partial while running).\n"
	      "\n"
	      "      --remove-parts        delete the parts once OUT is complete\n"
	      "      --force               discard an existing OUT.partial\n"
	      "      --progress plain|none progress on stderr (default none)\n"
	      "  -h, --help                this help\n",
	      out);
}

static void on_progress(const struct qs_progress *p, void *user)
{
	(void)user;
	fprintf(stderr, "[%llu/%llu tensors] %.2f/%.2f GB copied, %.1f s\n",
		(unsigned long long)p->tensors_done, (unsigned long long)p->tensors_total,
		p->bytes_read / 1e9, p->bytes_total / 1e9, p->seconds);
}

int cmd_merge(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"remove-parts", no_argument, NULL, 'R'},
		{"force", no_argument, NULL, 'f'},
		{"progress", required_argument, NULL, 'p'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct qs_merge_opts o = {0};
	bool plain = false;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'R': o.remove_parts = true; break;
		case 'f': o.force = true; break;
		case 'p': {
			static const char *const modes[] = {"plain", "none", NULL};
			int k = cli_choice("--progress", optarg, modes);
			if (k < 0)
				return QS_EXIT_USAGE;
			plain = k == 0;
			break;
		}
		case 'h':
			help(stdout);
			return QS_EXIT_OK;
		default:
			help(stderr);
			return QS_EXIT_USAGE;
		}
	}
	if (argc - optind < 2) {
		cli_error("merge needs OUT and at least one PART (see 'qshard merge --help')");
		return QS_EXIT_USAGE;
	}
	o.output = argv[optind];
	o.parts = (const char *const *)argv + optind + 1;
	o.nparts = (size_t)(argc - optind - 1);
	if (cli_is_qshard_file(o.output)) {
		unsigned k, n;
		struct qs_qfile *qf;
		struct qs_diag d;
		/* `merge PART...` without OUT would otherwise overwrite a part */
		if (qs_qfile_open(o.output, &qf, &d) == 0) {
			bool part = qs_qfile_part(qf, &k, &n);
			qs_qfile_free(qf);
			if (part) {
				cli_error("'%s' is part %u of %u: the first argument is the output",
					  o.output, k, n);
				return QS_EXIT_USAGE;
			}
		}
	}
	if (plain)
		o.progress = on_progress;
	o.stop = cli_stop_on_signals();
	struct qs_merge_result res;
	struct qs_diag diag = {{0}};
	int rc = qs_merge(&o, &res, &diag);
	cli_default_signals();
	if (rc < 0)
		return cli_fail(rc, &diag);
	char out[32];
	printf("qshard: wrote '%s': %llu tensors (%llu split between parts) from %llu parts, "
	       "%s, %.2f s, %.0f MB/s\n",
	       o.output, (unsigned long long)res.tensors, (unsigned long long)res.split_tensors,
	       (unsigned long long)res.parts, cli_human(res.output_bytes, out), res.seconds,
	       res.seconds > 0 ? res.output_bytes / res.seconds / 1e6 : 0.0);
	return QS_EXIT_OK;
}
