/* cmd_inspect.c - `qshard inspect`: the tensors of a checkpoint or a qshard
 * file as a table or as JSON (for scripts); for a checkpoint also the plan
 * convert would run on it (plan_print.c), with convert's planning options
 * or their defaults. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void help(FILE *out)
{
	fputs("usage: qshard inspect PATH [--json] [plan options]\n"
	      "\n"
	      "PATH is a qshard file, a .safetensors file or a checkpoint folder.\n"
	      "\n"
	      "      --json                print one JSON object instead of a table\n"
	      "  -h, --help                this help\n"
	      "\n"
	      "For a checkpoint, also the plan convert would run on it (its plan-only\n"
	      "listing), with these options of convert (see qshard-convert(1)) or their\n"
	      "defaults:\n"
	      "      --scheme [REGEX=]NAME[:key=val,...]   repeatable, the last match wins\n"
	      "      --scheme-preset q3_k_m|q4_k_m|q5_k_m|q6_k\n"
	      "      --keep REGEX          repeatable\n"
	      "  -T, --threads N           worker threads (default: online CPUs)\n"
	      "      --level Z             zstd level 1-19\n"
	      "      --memory SIZE         memory window, K/M/G suffixes\n"
	      "      --importance FILE     statistics for daq/claq\n"
	      "      --hessian FILE        X^T X for gptq/athena\n",
	      out);
}

static uint64_t elements(const struct qs_tensor_info *t)
{
	uint64_t n = 1;
	for (uint32_t d = 0; d < t->ndim; d++)
		n *= t->shape[d];
	return n;
}

static void shape_text(const struct qs_tensor_info *t, char *buf, size_t len)
{
	size_t at = (size_t)snprintf(buf, len, "[");
	for (uint32_t d = 0; d < t->ndim && at < len; d++)
		at += (size_t)snprintf(buf + at, len - at, "%s%llu", d ? ", " : "",
				       (unsigned long long)t->shape[d]);
	if (at < len)
		snprintf(buf + at, len - at, "]");
}

/* Both sources answer through the same two calls. */
struct source {
	bool qfile;
	struct qs_qfile *qf;
	struct qs_checkpoint *ck;
};

static size_t src_count(const struct source *s)
{
	return s->qfile ? qs_qfile_count(s->qf) : qs_checkpoint_count(s->ck);
}

static void src_tensor(const struct source *s, size_t i, struct qs_tensor_info *t)
{
	if (s->qfile)
		qs_qfile_tensor(s->qf, i, t);
	else
		qs_checkpoint_tensor(s->ck, i, t);
}

/* A checkpoint tensor is "quantizable" when convert would quantize it by
 * default; its bits per weight are the dtype's. */
static bool counts_for_bpw(const struct source *s, const struct qs_tensor_info *t)
{
	if (s->qfile)
		return strcmp(t->scheme, "raw") != 0;
	return qs_dtype_quantizable(t->dtype) && t->ndim >= 2;
}

/* Parses inspect's options into *json and the planning options *o (the
 * arrays hold argc entries).  -1 on a usage error (printed), 1 for --help,
 * 0 otherwise; *plan_opts counts planning options given. */
static int parse(int argc, char **argv, bool *json, struct qs_convert_opts *o,
		 const char **schemes, const char **keeps, int *plan_opts)
{
	static const struct option longopts[] = {
		{"json", no_argument, NULL, 'j'},
		{"scheme", required_argument, NULL, 's'},
		{"scheme-preset", required_argument, NULL, 'S'},
		{"keep", required_argument, NULL, 'k'},
		{"threads", required_argument, NULL, 'T'},
		{"level", required_argument, NULL, 'z'},
		{"memory", required_argument, NULL, 'm'},
		{"importance", required_argument, NULL, 'I'},
		{"hessian", required_argument, NULL, 'H'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "T:h", longopts, NULL)) != -1) {
		char *end;
		long v;
		*plan_opts += c != 'j' && c != 'h';
		switch (c) {
		case 'j': *json = true; break;
		case 's': schemes[o->nschemes++] = optarg; break;
		case 'S': o->scheme_preset = optarg; break;
		case 'k': keeps[o->nkeeps++] = optarg; break;
		case 'T':
			v = strtol(optarg, &end, 10);
			if (*end || v < 1 || v > 1024) {
				cli_error("-T must be a number from 1 to 1024 (got '%s')", optarg);
				return -1;
			}
			o->threads = (unsigned)v;
			break;
		case 'z':
			v = strtol(optarg, &end, 10);
			if (*end || v < 1 || v > 19) {
				cli_error("--level must be a number from 1 to 19 (got '%s')", optarg);
				return -1;
			}
			o->zstd_level = (int)v;
			break;
		case 'm':
			if (!cli_parse_size(optarg, &o->memory) || o->memory == 0) {
				cli_error("--memory: '%s' is not a size (e.g. 512M, 2G)", optarg);
				return -1;
			}
			break;
		case 'I': o->importance = optarg; break;
		case 'H': o->hessian = optarg; break;
		case 'h':
			help(stdout);
			return 1;
		default:
			help(stderr);
			return -1;
		}
	}
	return 0;
}

int cmd_inspect(int argc, char **argv)
{
	bool json = false;
	struct qs_convert_opts po = {0};
	const char **schemes = calloc((size_t)argc + 1, sizeof(char *));
	const char **keeps = calloc((size_t)argc + 1, sizeof(char *));
	int plan_opts = 0, ret = QS_EXIT_USAGE;
	if (!schemes || !keeps) {
		cli_error("out of memory");
		free(schemes);
		free(keeps);
		return QS_EXIT_FAILURE;
	}
	int p = parse(argc, argv, &json, &po, schemes, keeps, &plan_opts);
	if (p != 0) {
		free(schemes);
		free(keeps);
		return p > 0 ? QS_EXIT_OK : QS_EXIT_USAGE;
	}
	if (optind != argc - 1) {
		cli_error("inspect needs one PATH (see 'qshard inspect --help')");
		goto done;
	}
	const char *path = argv[optind];
	struct source s = {.qfile = cli_is_qshard_file(path)};
	if (s.qfile && plan_opts) {
		cli_error("'%s': a qshard file has no plan; --scheme, --memory and the other "
			  "planning options go with a checkpoint",
			  path);
		goto done;
	}
	struct qs_diag diag = {{0}};
	int rc = s.qfile ? qs_qfile_open(path, &s.qf, &diag) : qs_checkpoint_open(path, &s.ck, &diag);
	if (rc < 0) {
		ret = cli_fail(rc, &diag);
		goto done;
	}
	/* the plan's output name only names the file in its listing */
	char plan_out[4200];
	snprintf(plan_out, sizeof(plan_out), "%s.qshard", path);
	po.input = path;
	po.output = plan_out;
	po.schemes = schemes;
	po.keeps = keeps;
	json_t *plan = NULL;

	uint64_t weights = 0, bits_nominal = 0, bits_disk = 0, source_total = 0, stored_total = 0;
	json_t *root = json_object(), *list = json_array();
	if (!json)
		printf("%-56s %-6s %-16s %-24s %10s %7s %7s\n", "tensor", "dtype", "shape", "scheme",
		       "bytes", "bpw", "disk");
	for (size_t i = 0; i < src_count(&s); i++) {
		struct qs_tensor_info t;
		src_tensor(&s, i, &t);
		uint64_t n = elements(&t);
		unsigned dbits = qs_dtype_size(t.dtype) * 8;
		double bpw = s.qfile ? t.bpw_nominal : dbits;
		double disk = s.qfile ? t.bpw_on_disk : dbits;
		uint64_t bytes = s.qfile ? t.stored_bytes : t.source_bytes;
		source_total += t.source_bytes;
		stored_total += bytes;
		if (counts_for_bpw(&s, &t)) {
			weights += n;
			bits_nominal += s.qfile ? t.payload_bytes * 8 : n * dbits;
			bits_disk += s.qfile ? t.stored_bytes * 8 : n * dbits;
		}
		char shape[160];
		shape_text(&t, shape, sizeof(shape));
		const char *scheme = s.qfile ? t.scheme : "-";
		if (!json) {
			printf("%-56s %-6s %-16s %-24s %10llu %7.3f %7.3f\n", t.name,
			       qs_dtype_name(t.dtype), shape, scheme, (unsigned long long)bytes, bpw,
			       disk);
			continue;
		}
		json_t *o = json_object(), *sh = json_array();
		for (uint32_t d = 0; d < t.ndim; d++)
			json_array_append_new(sh, json_integer((json_int_t)t.shape[d]));
		json_object_set_new(o, "name", cli_json_string(t.name));
		json_object_set_new(o, "dtype", json_string(qs_dtype_name(t.dtype)));
		json_object_set_new(o, "shape", sh);
		json_object_set_new(o, "source_bytes", json_integer((json_int_t)t.source_bytes));
		if (s.qfile) {
			char hex[17];
			snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)t.source_xxh3);
			json_object_set_new(o, "scheme", cli_json_string(t.scheme));
			json_object_set_new(o, "payload_bytes", json_integer((json_int_t)t.payload_bytes));
			json_object_set_new(o, "stored_bytes", json_integer((json_int_t)t.stored_bytes));
			json_object_set_new(o, "chunks", json_integer(t.chunks));
			json_object_set_new(o, "source_xxh3", json_string(hex));
		} else {
			json_object_set_new(o, "file", cli_json_string(t.file));
		}
		json_object_set_new(o, "bpw", json_real(bpw));
		json_object_set_new(o, "bpw_on_disk", json_real(disk));
		json_array_append_new(list, o);
	}
	double bpw = weights ? (double)bits_nominal / (double)weights : 0;
	double bpw_disk = weights ? (double)bits_disk / (double)weights : 0;
	if (json) {
		json_object_set_new(root, "path", cli_json_string(path));
		json_object_set_new(root, "kind", json_string(s.qfile ? "qshard" : "checkpoint"));
		json_object_set_new(root, "tensors", list);
		json_object_set_new(root, "tensor_count", json_integer((json_int_t)src_count(&s)));
		json_object_set_new(root, "quantized_weights", json_integer((json_int_t)weights));
		json_object_set_new(root, "bpw", json_real(bpw));
		json_object_set_new(root, "bpw_on_disk", json_real(bpw_disk));
		json_object_set_new(root, "source_bytes", json_integer((json_int_t)source_total));
		json_object_set_new(root, "stored_bytes", json_integer((json_int_t)stored_total));
		if (s.qfile) {
			json_object_set_new(root, "file_bytes", json_integer((json_int_t)qs_qfile_size(s.qf)));
			json_object_set_new(root, "creator", cli_json_string(qs_qfile_creator(s.qf)));
			json_object_set_new(root, "options", cli_json_string(qs_qfile_options(s.qf)));
		} else {
			ret = cli_plan(&po, NULL, &plan);
			if (ret != QS_EXIT_OK)
				goto out;
			json_object_set_new(root, "plan", plan);
		}
		cli_json_print(stdout, root, JSON_INDENT(2));
		root = NULL;
	} else {
		json_decref(list);
		char a[32], b[32];
		printf("%zu tensors, %s source, %s %s, %.3f bpw nominal, %.3f bpw on disk "
		       "(over %llu quantized weights)\n",
		       src_count(&s), cli_human(source_total, a), cli_human(stored_total, b),
		       s.qfile ? "stored" : "on disk", bpw, bpw_disk, (unsigned long long)weights);
		if (!s.qfile) {
			fflush(stdout);
			putchar('\n');
			ret = cli_plan(&po, "plan (what convert would do with these options):",
				       NULL);
			if (ret != QS_EXIT_OK)
				goto out;
		}
	}
	ret = QS_EXIT_OK;
out:
	json_decref(root);
	if (s.qfile)
		qs_qfile_free(s.qf);
	else
		qs_checkpoint_free(s.ck);
done:
	free(schemes);
	free(keeps);
	return ret;
}
