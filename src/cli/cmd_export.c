/* cmd_export.c - `qshard export`: a .qshard file as GGUF for llama.cpp. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void help(FILE *out)
{
	char def[32];
	snprintf(def, sizeof(def), "%lluM", (unsigned long long)(qs_default_memory() >> 20));
	fprintf(out,
		"usage: qshard export FILE.qshard -o OUT.gguf [--type T] [--memory SIZE]\n"
		"                     [--pre NAME | --vocab-from FILE.gguf | --no-vocab]\n"
		"                     [--name NAME]\n"
		"\n"
		"  -o, --output OUT.gguf   GGUF file to write (OUT.gguf.partial while running)\n"
		"      --type T            type for tensors with no exact GGUF form (default\n"
		"                          q8_0); f32, f16 or bf16 dequantize every tensor\n"
		"      --memory SIZE       memory window, K/M/G suffixes (default %s)\n"
		"      --pre NAME          tokenizer.ggml.pre instead of the detected one\n"
		"      --vocab-from FILE   copy the tokenizer keys of another GGUF\n"
		"      --no-vocab          write no vocabulary (tokenizer.ggml.model none)\n"
		"      --name NAME         general.name (default: the file name)\n"
		"  -h, --help              this help\n",
		def);
}

static void on_notice(const char *tensor, const char *what, void *user)
{
	(void)user;
	printf("qshard: tensor '%s': %s\n", tensor, what);
}

int cmd_export(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"output", required_argument, NULL, 'o'},
		{"type", required_argument, NULL, 't'},
		{"memory", required_argument, NULL, 'm'},
		{"pre", required_argument, NULL, 'p'},
		{"vocab-from", required_argument, NULL, 'v'},
		{"no-vocab", no_argument, NULL, 'n'},
		{"name", required_argument, NULL, 'N'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct qs_export_opts o = {.notice = on_notice};
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'o':
			o.output = optarg;
			break;
		case 't':
			o.type = optarg;
			break;
		case 'm':
			if (!cli_parse_size(optarg, &o.memory) || o.memory == 0) {
				cli_error("--memory: '%s' is not a size (e.g. 512M, 2G)", optarg);
				return QS_EXIT_USAGE;
			}
			break;
		case 'p':
			o.pre = optarg;
			break;
		case 'v':
			o.vocab_from = optarg;
			break;
		case 'n':
			o.no_vocab = true;
			break;
		case 'N':
			o.name = optarg;
			break;
		case 'h':
			help(stdout);
			return QS_EXIT_OK;
		default:
			help(stderr);
			return QS_EXIT_USAGE;
		}
	}
	if (optind != argc - 1 || !o.output) {
		cli_error("export needs one FILE.qshard and -o OUT.gguf (see 'qshard export --help')");
		return QS_EXIT_USAGE;
	}
	o.input = argv[optind];
	o.stop = cli_stop_on_signals();
	struct qs_diag diag = {{0}};
	struct qs_export_result res;
	int rc = qs_export(&o, &res, &diag);
	cli_default_signals();
	if (rc < 0)
		return cli_fail(rc, &diag);
	char out[32];
	printf("qshard: wrote '%s': %llu tensors (%llu exact, %llu requantized), %s, %.1f s, "
	       "peak buffers %llu MiB\n",
	       o.output, (unsigned long long)res.tensors, (unsigned long long)res.copied,
	       (unsigned long long)res.requantized, cli_human(res.output_bytes, out), res.seconds,
	       (unsigned long long)(res.peak_buffer_bytes >> 20));
	return QS_EXIT_OK;
}
