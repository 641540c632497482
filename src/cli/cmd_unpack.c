/* cmd_unpack.c - `qshard unpack`: the dequantized checkpoint as safetensors. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void help(FILE *out)
{
	fputs("usage: qshard unpack FILE -o DIR [--dtype bf16|f16|f32] [--force]\n"
	      "\n"
	      "  -o, --output DIR          folder for the safetensors shards (created)\n"
	      "      --dtype bf16|f16|f32  dtype of dequantized tensors (default bf16)\n"
	      "      --force               replace the contents of a non-empty DIR\n"
	      "  -h, --help                this help\n",
	      out);
}

int cmd_unpack(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"output", required_argument, NULL, 'o'},
		{"dtype", required_argument, NULL, 'd'},
		{"force", no_argument, NULL, 'f'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct qs_unpack_opts o = {.dtype = QS_DTYPE_BF16};
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'o':
			o.outdir = optarg;
			break;
		case 'd': {
			static const char *const names[] = {"bf16", "f16", "f32", NULL};
			static const enum qs_dtype values[] = {QS_DTYPE_BF16, QS_DTYPE_F16,
							       QS_DTYPE_F32};
			int k = cli_choice("--dtype", optarg, names);
			if (k < 0)
				return QS_EXIT_USAGE;
			o.dtype = values[k];
			break;
		}
		case 'f':
			o.force = true;
			break;
		case 'h':
			help(stdout);
			return QS_EXIT_OK;
		default:
			help(stderr);
			return QS_EXIT_USAGE;
		}
	}
	if (optind != argc - 1 || !o.outdir) {
		cli_error("unpack needs one FILE and -o DIR (see 'qshard unpack --help')");
		return QS_EXIT_USAGE;
	}
	o.input = argv[optind];
	struct qs_diag diag = {{0}};
	int rc = qs_unpack(&o, &diag);
	if (rc < 0)
		return cli_fail(rc, &diag);
	printf("qshard: unpacked '%s' into '%s'\n", o.input, o.outdir);
	return QS_EXIT_OK;
}
