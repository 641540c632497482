/* cmd_cat.c - `qshard cat`: one tensor's values, raw, on standard output,
 * for shell pipelines and debugging.  It streams one chunk at a time
 * through qs_qfile_read_rows, so memory stays at about a chunk whatever the
 * tensor's size, and every chunk's checksum is checked before its values
 * are written. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static void help(FILE *out)
{
	fputs("usage: qshard cat FILE NAME [--dtype bf16|f16|f32] [--rows A:B]\n"
	      "\n"
	      "Writes tensor NAME's values to standard output, row-major, little-endian.\n"
	      "\n"
	      "      --dtype bf16|f16|f32  dtype of the values (default: f32 for quantized\n"
	      "                            tensors, the stored dtype for raw ones)\n"
	      "      --rows A:B            rows A to B-1 only (rows: all dimensions but the\n"
	      "                            last); A or B may be left out\n"
	      "  -h, --help                this help\n",
	      out);
}

/* "A:B", "A:", ":B" or ":"; false on anything else. */
static bool parse_rows(const char *text, bool *has_a, uint64_t *a, bool *has_b, uint64_t *b)
{
	const char *colon = strchr(text, ':');
	if (!colon)
		return false;
	*has_a = colon != text;
	*has_b = colon[1] != '\0';
	char *end;
	if (*has_a) {
		if (text[0] < '0' || text[0] > '9')
			return false;
		errno = 0;
		*a = strtoull(text, &end, 10);
		if (errno || end != colon)
			return false;
	}
	if (*has_b) {
		if (colon[1] < '0' || colon[1] > '9')
			return false;
		errno = 0;
		*b = strtoull(colon + 1, &end, 10);
		if (errno || *end)
			return false;
	}
	return true;
}

/* Streams rows [a, b) of tensor i, one chunk's share at a time. */
static int write_rows(struct qs_qfile *qf, size_t i, const struct qs_tensor_info *t,
		      uint64_t a, uint64_t b, uint64_t cols, enum qs_dtype dtype,
		      const char *path)
{
	struct qs_diag diag = {{0}};
	void *buf = NULL;
	int status = QS_EXIT_OK;
	for (uint32_t c = 0; c < t->chunks && status == QS_EXIT_OK; c++) {
		struct qs_chunk_info ci;
		if (qs_qfile_chunk(qf, i, c, &ci) < 0)
			break;
		uint64_t lo = ci.row_begin > a ? ci.row_begin : a;
		uint64_t hi = ci.row_begin + ci.row_count < b ? ci.row_begin + ci.row_count : b;
		if (lo >= hi)
			continue;
		size_t len = (size_t)((hi - lo) * cols * qs_dtype_size(dtype));
		void *n = realloc(buf, len ? len : 1);
		if (!n) {
			cli_error("'%s': tensor '%s': out of memory", path, t->name);
			status = QS_EXIT_FAILURE;
			break;
		}
		buf = n;
		int rc = qs_qfile_read_rows(qf, i, lo, hi - lo, dtype, buf, len, &diag);
		if (rc < 0) {
			status = cli_fail(rc, &diag);
			break;
		}
		if (fwrite(buf, 1, len, stdout) != len) {
			cli_error("standard output: %s", strerror(errno));
			status = QS_EXIT_FAILURE;
		}
	}
	free(buf);
	if (fflush(stdout) != 0 && status == QS_EXIT_OK) {
		cli_error("standard output: %s", strerror(errno));
		status = QS_EXIT_FAILURE;
	}
	return status;
}

int cmd_cat(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"dtype", required_argument, NULL, 'd'},
		{"rows", required_argument, NULL, 'r'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	static const char *const names[] = {"bf16", "f16", "f32", NULL};
	static const enum qs_dtype values[] = {QS_DTYPE_BF16, QS_DTYPE_F16, QS_DTYPE_F32};
	bool has_dtype = false, has_a = false, has_b = false;
	enum qs_dtype dtype = QS_DTYPE_F32;
	uint64_t a = 0, b = 0;
	const char *rows_text = NULL;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'd': {
			int k = cli_choice("--dtype", optarg, names);
			if (k < 0)
				return QS_EXIT_USAGE;
			dtype = values[k];
			has_dtype = true;
			break;
		}
		case 'r':
			rows_text = optarg;
			if (!parse_rows(optarg, &has_a, &a, &has_b, &b)) {
				cli_error("--rows must be A:B, A: or :B with row numbers (got '%s')",
					  optarg);
				return QS_EXIT_USAGE;
			}
			break;
		case 'h':
			help(stdout);
			return QS_EXIT_OK;
		default:
			help(stderr);
			return QS_EXIT_USAGE;
		}
	}
	if (optind != argc - 2) {
		cli_error("cat needs one FILE and one tensor NAME (see 'qshard cat --help')");
		return QS_EXIT_USAGE;
	}
	const char *path = argv[optind], *name = argv[optind + 1];
	/* binary on a terminal helps nobody and can upset it */
	if (isatty(STDOUT_FILENO)) {
		cli_error("standard output is a terminal; redirect it to a file or a pipe");
		return QS_EXIT_USAGE;
	}
	struct qs_diag diag = {{0}};
	struct qs_qfile *qf;
	int rc = qs_qfile_open(path, &qf, &diag);
	if (rc < 0)
		return cli_fail(rc, &diag);
	size_t i;
	int status = QS_EXIT_OK;
	if (qs_qfile_find(qf, name, &i) < 0) {
		cli_error("'%s': no tensor '%s' (see 'qshard inspect')", path, name);
		qs_qfile_free(qf);
		return QS_EXIT_USAGE;
	}
	struct qs_tensor_info t;
	qs_qfile_tensor(qf, i, &t);
	if (!has_dtype && strcmp(t.scheme, "raw") == 0)
		dtype = t.dtype;
	uint64_t rows = 1, cols = t.ndim ? t.shape[t.ndim - 1] : 1;
	for (uint32_t d = 0; d + 1 < t.ndim; d++)
		rows *= t.shape[d];
	if (!has_a)
		a = 0;
	if (!has_b)
		b = rows;
	if (a > b || b > rows) {
		cli_error("'%s': tensor '%s' has %" PRIu64 " rows; --rows %s is outside them", path,
			  name, rows, rows_text);
		status = QS_EXIT_USAGE;
	} else {
		status = write_rows(qf, i, &t, a, b, cols, dtype, path);
	}
	qs_qfile_free(qf);
	return status;
}
