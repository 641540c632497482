/* cmd_convert.c - `qshard convert`: options, progress display, signals,
 * summary.  The conversion itself is qs_convert(). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cli.h"

enum progress_mode { PROGRESS_AUTO, PROGRESS_TTY, PROGRESS_PLAIN, PROGRESS_JSON, PROGRESS_NONE };

struct progress_state {
	enum progress_mode mode;
	double last;       /* seconds of the last line printed */
	bool line_open;    /* a tty line without its newline */
};

static void help(FILE *out)
{
	char def[32];
	snprintf(def, sizeof(def), "%lluM", (unsigned long long)(qs_default_memory() >> 20));
	fprintf(out,
		"usage: qshard convert IN -o OUT [options]\n"
		"\n"
		"IN is a .safetensors file or a checkpoint folder (shards + index.json).\n"
		"\n"
		"  -o, --output OUT          output file (OUT.partial while running)\n"
		"      --scheme [REGEX=]NAME[:key=val,...]\n"
		"                            scheme for all tensors or those matching REGEX;\n"
		"                            repeatable, the last match wins (default rtn)\n"
		"      --scheme-preset q3_k_m|q4_k_m|q5_k_m|q6_k\n"
		"                            llama.cpp's per-tensor gguf types of that mix\n"
		"                            (--scheme rules still win where they match)\n"
		"      --keep REGEX          store matching tensors unquantized; repeatable\n"
		"  -T, --threads N           worker threads (default: online CPUs)\n"
		"      --level Z             zstd level 1-19 (default %d)\n"
		"      --memory SIZE         memory window, K/M/G suffixes (default %s)\n"
		"      --io uring|pread|mmap reading backend (default uring, falls back)\n"
		"      --sync tensor|end     fdatasync after each tensor (default) or at the end\n"
		"      --progress auto|plain|json|none\n"
		"                            progress on stderr (default auto: a line on a tty)\n"
		"      --resume              continue OUT.partial of an interrupted run\n"
		"      --force               discard an existing OUT.partial\n"
		"      --allow-nonfinite     quantize tensors holding NaN/Inf (NaN as 0)\n"
		"      --importance FILE     per-column importance for daq/gguf: llama.cpp\n"
		"                            imatrix (GGUF or .dat) or safetensors\n"
		"      --hessian FILE        safetensors of X^T X (or its diagonal) for gptq/athena/claq/daq\n"
		"      --part K/N            convert slice K of N into OUT.part-K-of-N.qshard\n"
		"                            (join the parts with 'qshard merge')\n"
		"      --plan-only           print the plan (of part K with --part) and exit\n"
		"      --json                --plan-only prints JSON\n"
		"  -h, --help                this help\n",
		QS_ZSTD_LEVEL_DEFAULT, def);
}

static void fmt_eta(double s, char *buf, size_t len)
{
	if (s < 0 || s > 360000)
		snprintf(buf, len, "--:--");
	else
		snprintf(buf, len, "%d:%02d:%02d", (int)s / 3600, (int)s / 60 % 60, (int)s % 60);
}

static void on_progress(const struct qs_progress *p, void *user)
{
	struct progress_state *st = user;
	if (p->notice) {
		if (st->line_open)
			fputc('\n', stderr);
		st->line_open = false;
		if (st->mode == PROGRESS_JSON)
			cli_json_print(stderr,
				       json_pack("{s:s, s:o}", "event", "notice", "message",
						 cli_json_string(p->notice)),
				       JSON_COMPACT);
		else
			cli_error("%s", p->notice);
		return;
	}
	bool last = p->tensors_done == p->tensors_total;
	if (st->mode == PROGRESS_NONE)
		return;
	double interval = st->mode == PROGRESS_TTY ? 0.25 : 1.0;
	if (!last && p->seconds - st->last < interval)
		return;
	st->last = p->seconds;
	double rate = p->seconds > 0 ? p->bytes_read / p->seconds : 0;
	double eta = rate > 0 ? (double)(p->bytes_total - p->bytes_read) / rate : -1;
	char etab[32];
	fmt_eta(eta, etab, sizeof(etab));
	switch (st->mode) {
	case PROGRESS_JSON:
		cli_json_print(stderr,
			       json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:f, s:f}", "event",
					 "progress", "tensors_done", (json_int_t)p->tensors_done,
					 "tensors_total", (json_int_t)p->tensors_total, "bytes_read",
					 (json_int_t)p->bytes_read, "bytes_total",
					 (json_int_t)p->bytes_total, "bytes_written",
					 (json_int_t)p->bytes_written, "seconds", p->seconds,
					 "eta_seconds", eta),
			       JSON_COMPACT | JSON_REAL_PRECISION(6));
		break;
	case PROGRESS_PLAIN:
	case PROGRESS_TTY:
		fprintf(stderr, "%s[%llu/%llu tensors] %.2f/%.2f GB read, %.2f GB/s, ETA %s%s",
			st->mode == PROGRESS_TTY ? "\r" : "",
			(unsigned long long)p->tensors_done, (unsigned long long)p->tensors_total,
			p->bytes_read / 1e9, p->bytes_total / 1e9, rate / 1e9, etab,
			st->mode == PROGRESS_TTY ? "\033[K" : "\n");
		st->line_open = st->mode == PROGRESS_TTY;
		break;
	default:
		break;
	}
	fflush(stderr);
}

static void print_resume_hint(int argc, char **argv)
{
	fputs("qshard: to continue, run the same command with --resume:\n  qshard", stderr);
	for (int i = 0; i < argc; i++)
		if (strcmp(argv[i], "--force") != 0 && strcmp(argv[i], "--resume") != 0)
			fprintf(stderr, " '%s'", argv[i]);
	fputs(" --resume\n", stderr);
}

int cmd_convert(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"output", required_argument, NULL, 'o'},
		{"scheme", required_argument, NULL, 's'},
		{"scheme-preset", required_argument, NULL, 'S'},
		{"keep", required_argument, NULL, 'k'},
		{"threads", required_argument, NULL, 'T'},
		{"level", required_argument, NULL, 'z'},
		{"memory", required_argument, NULL, 'm'},
		{"io", required_argument, NULL, 'i'},
		{"sync", required_argument, NULL, 'y'},
		{"progress", required_argument, NULL, 'p'},
		{"resume", no_argument, NULL, 'r'},
		{"force", no_argument, NULL, 'f'},
		{"allow-nonfinite", no_argument, NULL, 'n'},
		{"importance", required_argument, NULL, 'I'},
		{"hessian", required_argument, NULL, 'H'},
		{"part", required_argument, NULL, 'P'},
		{"plan-only", no_argument, NULL, 'L'},
		{"json", no_argument, NULL, 'J'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct qs_convert_opts o = {0};
	const char **schemes = calloc((size_t)argc + 1, sizeof(char *));
	const char **keeps = calloc((size_t)argc + 1, sizeof(char *));
	struct progress_state ps = {.mode = PROGRESS_AUTO};
	bool plan_only = false, json = false;
	char part_path[4096];
	int ret = QS_EXIT_USAGE, c;
	if (!schemes || !keeps) {
		cli_error("out of memory");
		ret = QS_EXIT_FAILURE;
		goto out;
	}
	optind = 1;
	while ((c = getopt_long(argc, argv, "o:T:h", longopts, NULL)) != -1) {
		char *end;
		switch (c) {
		case 'o': o.output = optarg; break;
		case 's': schemes[o.nschemes++] = optarg; break;
		case 'S': o.scheme_preset = optarg; break;
		case 'k': keeps[o.nkeeps++] = optarg; break;
		case 'T': {
			long v = strtol(optarg, &end, 10);
			if (*end || v < 1 || v > 1024) {
				cli_error("-T must be a number from 1 to 1024 (got '%s')", optarg);
				goto out;
			}
			o.threads = (unsigned)v;
			break;
		}
		case 'z': {
			long v = strtol(optarg, &end, 10);
			if (*end || v < 1 || v > 19) {
				cli_error("--level must be a number from 1 to 19 (got '%s')", optarg);
				goto out;
			}
			o.zstd_level = (int)v;
			break;
		}
		case 'm':
			if (!cli_parse_size(optarg, &o.memory) || o.memory == 0) {
				cli_error("--memory: '%s' is not a size (e.g. 512M, 2G)", optarg);
				goto out;
			}
			break;
		case 'i': {
			static const char *const ios[] = {"uring", "pread", "mmap", NULL};
			static const enum qs_io_backend io_values[] = {QS_IO_URING, QS_IO_PREAD,
								       QS_IO_MMAP};
			int k = cli_choice("--io", optarg, ios);
			if (k < 0)
				goto out;
			o.io = io_values[k];
			break;
		}
		case 'y': {
			static const char *const syncs[] = {"tensor", "end", NULL};
			int k = cli_choice("--sync", optarg, syncs);
			if (k < 0)
				goto out;
			o.sync = k == 0 ? QS_SYNC_TENSOR : QS_SYNC_END;
			break;
		}
		case 'p': {
			/* in the order of enum progress_mode after PROGRESS_AUTO */
			static const char *const modes[] = {"auto", "plain", "json", "none", NULL};
			static const enum progress_mode mode_values[] = {
				PROGRESS_AUTO, PROGRESS_PLAIN, PROGRESS_JSON, PROGRESS_NONE};
			int k = cli_choice("--progress", optarg, modes);
			if (k < 0)
				goto out;
			ps.mode = mode_values[k];
			break;
		}
		case 'r': o.resume = true; break;
		case 'f': o.force = true; break;
		case 'n': o.allow_nonfinite = true; break;
		case 'I': o.importance = optarg; break;
		case 'H': o.hessian = optarg; break;
		case 'P':
			if (!cli_parse_part(optarg, &o.part_k, &o.part_n))
				goto out;
			break;
		case 'L': plan_only = true; break;
		case 'J': json = true; break;
		case 'h':
			help(stdout);
			ret = QS_EXIT_OK;
			goto out;
		default:
			help(stderr);
			goto out;
		}
	}
	if (optind != argc - 1 || !o.output) {
		cli_error("convert needs one input and -o OUT (see 'qshard convert --help')");
		goto out;
	}
	if (o.resume && o.force) {
		cli_error("--resume and --force exclude each other");
		goto out;
	}
	o.input = argv[optind];
	o.schemes = schemes;
	o.keeps = keeps;
	if (json && !plan_only) {
		cli_error("--json goes with --plan-only");
		goto out;
	}
	if (plan_only) {
		ret = cli_print_plan(&o, json);
		goto out;
	}
	if (ps.mode == PROGRESS_AUTO)
		ps.mode = isatty(STDERR_FILENO) ? PROGRESS_TTY : PROGRESS_NONE;
	o.progress = on_progress;
	o.progress_user = &ps;
	o.stop = cli_stop_on_signals();

	struct qs_convert_result res;
	struct qs_diag diag = {{0}};
	int rc = qs_convert(&o, &res, &diag);
	cli_default_signals();
	if (ps.line_open)
		fputc('\n', stderr);
	if (rc < 0) {
		ret = cli_fail(rc, &diag);
		if (rc == -QS_EINTERRUPTED || rc == -ENOSPC || rc == -EIO || rc == -EDQUOT)
			print_resume_hint(argc, argv);
		goto out;
	}
	const char *written = o.output;
	if (o.part_n && qs_part_path(o.output, o.part_k, o.part_n, part_path,
				     sizeof(part_path)) == 0)
		written = part_path;
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	char in[32], outb[32];
	double rate = res.seconds > 0 ? res.input_bytes / res.seconds / 1e9 : 0;
	/* CPU cost as core-seconds: stable on a shared, noisy machine */
	double user_s = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
	double sys_s = ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
	const struct qs_stage_seconds *st = &res.stages;
	if (ps.mode == PROGRESS_JSON)
		cli_json_print(stdout,
			       json_pack("{s:s, s:o, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:I, s:I, "
					 "s:f, s:f, s:{s:f, s:f, s:f, s:f, s:f}}",
					 "event", "done", "output", cli_json_string(written),
					 "tensors", (json_int_t)res.tensors, "quantized_tensors",
					 (json_int_t)res.quantized_tensors, "input_bytes",
					 (json_int_t)res.input_bytes, "output_bytes",
					 (json_int_t)res.output_bytes, "bpw", res.bpw_nominal,
					 "bpw_on_disk", res.bpw_on_disk, "seconds", res.seconds,
					 "gb_per_s", rate, "peak_rss_bytes",
					 (json_int_t)ru.ru_maxrss * 1024, "resumed_tensors",
					 (json_int_t)res.resumed_tensors, "user_seconds", user_s,
					 "sys_seconds", sys_s, "stages", "read_wait", st->read_wait,
					 "quantize", st->quantize, "compress", st->compress, "hash",
					 st->hash, "write", st->write),
			       JSON_COMPACT | JSON_REAL_PRECISION(6));
	else
		printf("qshard: wrote '%s': %llu tensors (%llu quantized), %s in, %s out, "
		       "%.3f bpw nominal, %.3f bpw on disk, %.1f s, %.2f GB/s, peak memory %llu MiB\n",
		       written, (unsigned long long)res.tensors,
		       (unsigned long long)res.quantized_tensors, cli_human(res.input_bytes, in),
		       cli_human(res.output_bytes, outb), res.bpw_nominal, res.bpw_on_disk,
		       res.seconds, rate, (unsigned long long)ru.ru_maxrss / 1024);
	if (ps.mode != PROGRESS_JSON)
		printf("qshard: %.2f core-seconds (%.2f user + %.2f sys), %.2f per GB read; "
		       "thread-seconds: read wait %.2f, quantize %.2f, compress %.2f, hash %.2f, "
		       "write %.2f\n",
		       user_s + sys_s, user_s, sys_s,
		       res.input_bytes ? (user_s + sys_s) / (res.input_bytes / 1e9) : 0.0,
		       st->read_wait, st->quantize, st->compress, st->hash, st->write);
	ret = QS_EXIT_OK;
out:
	free(schemes);
	free(keeps);
	return ret;
}
