/* read_every.c - a libqshard client that uses nothing but include/qshard.h
 * (built against the build tree's libqshard.la by `make check`, and against
 * the installed library through `pkg-config --cflags --libs qshard` by
 * `make installcheck`).
 *
 *   read_every [-T THREADS] FILE.qshard UNPACKED_DIR DTYPE [DAMAGED]
 *   read_every --locate FILE.qshard NAME CHUNK
 *
 * Reads every tensor of FILE (quantized ones as DTYPE: f32, bf16 or f16;
 * raw ones in their own dtype, as qshard-unpack(1) writes them), whole and
 * in row ranges that cut across chunk boundaries, from THREADS threads at
 * once sharing the one open file, and compares every byte with what
 * `qshard unpack --dtype DTYPE` wrote into UNPACKED_DIR.  With DAMAGED,
 * that tensor's read must fail with a checksum error naming it and a chunk,
 * and every other tensor must still read correctly.  Exit 0 when all holds.
 * --locate prints the offset and size of a chunk's frame (for a test that
 * damages it).
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <qshard.h>

/* Where unpack put one tensor. */
struct expect {
	char *name;
	char *path;
	uint64_t offset, bytes;
	enum qs_dtype dtype;
};

static struct expect *expects;
static size_t nexpects;

static void die(const char *fmt, const char *a, const char *b)
{
	fprintf(stderr, "read_every: ");
	fprintf(stderr, fmt, a, b);
	fputc('\n', stderr);
	exit(1);
}

static char *join(const char *dir, const char *name)
{
	char *p = malloc(strlen(dir) + strlen(name) + 2);
	if (!p)
		die("out of memory%s%s", "", "");
	sprintf(p, "%s/%s", dir, name);
	return p;
}

/* Adds every tensor of one safetensors file (u64 LE header length, JSON
 * header, data: the safetensors format as its README specifies). */
static void add_shard(const char *path)
{
	FILE *f = fopen(path, "rb");
	unsigned char len8[8];
	if (!f || fread(len8, 1, 8, f) != 8)
		die("'%s': cannot read%s", path, "");
	uint64_t n = 0;
	for (int i = 7; i >= 0; i--)
		n = (n << 8) | len8[i];
	char *text = malloc(n + 1);
	if (!text || fread(text, 1, n, f) != n)
		die("'%s': cannot read the header%s", path, "");
	fclose(f);
	text[n] = '\0';
	json_error_t jerr;
	json_t *root = json_loads(text, 0, &jerr);
	free(text);
	if (!json_is_object(root))
		die("'%s': header is not JSON: %s", path, jerr.text);
	const char *key;
	json_t *v;
	json_object_foreach(root, key, v) {
		if (strcmp(key, "__metadata__") == 0)
			continue;
		expects = realloc(expects, (nexpects + 1) * sizeof(*expects));
		struct expect *e = &expects[nexpects++];
		json_t *offs = json_object_get(v, "data_offsets");
		e->name = strdup(key);
		e->path = strdup(path);
		e->offset = 8 + n + (uint64_t)json_integer_value(json_array_get(offs, 0));
		e->bytes = (uint64_t)json_integer_value(json_array_get(offs, 1)) -
			   (uint64_t)json_integer_value(json_array_get(offs, 0));
		if (qs_dtype_parse(json_string_value(json_object_get(v, "dtype")), &e->dtype) < 0)
			die("'%s': tensor '%s': unknown dtype", path, key);
	}
	json_decref(root);
}

static void load_unpacked(const char *dir)
{
	char *index = join(dir, "model.safetensors.index.json");
	json_t *root = json_load_file(index, 0, NULL);
	if (!root) {
		char *single = join(dir, "model.safetensors");
		add_shard(single);
		free(single);
	} else {
		/* each shard once */
		json_t *seen = json_object(), *map = json_object_get(root, "weight_map");
		const char *key;
		json_t *v;
		json_object_foreach(map, key, v) {
			const char *shard = json_string_value(v);
			if (json_object_get(seen, shard))
				continue;
			json_object_set_new(seen, shard, json_true());
			char *p = join(dir, shard);
			add_shard(p);
			free(p);
		}
		json_decref(seen);
		json_decref(root);
	}
	free(index);
}

static const struct expect *expect_of(const char *name)
{
	for (size_t i = 0; i < nexpects; i++)
		if (strcmp(expects[i].name, name) == 0)
			return &expects[i];
	return NULL;
}

static struct qs_qfile *qf;
static enum qs_dtype want_dtype;
static const char *damaged;
static unsigned nthreads = 1;
static atomic_int failures;
static atomic_ulong bytes_checked, reads_done;

static void failf(const char *name, const char *what)
{
	fprintf(stderr, "read_every: tensor '%s': %s\n", name, what);
	atomic_fetch_add(&failures, 1);
}

/* One tensor: whole, then in ranges of odd sizes (1 row, then a prime
 * number of rows) so that reads start and end inside chunks. */
static void check_tensor(size_t i)
{
	struct qs_tensor_info t;
	qs_qfile_tensor(qf, i, &t);
	size_t found;
	if (qs_qfile_find(qf, t.name, &found) != 0 || found != i)
		failf(t.name, "qs_qfile_find does not return its index");
	bool raw = strcmp(t.scheme, "raw") == 0;
	enum qs_dtype dt = raw ? t.dtype : want_dtype;
	uint64_t rows = 1, cols = t.ndim ? t.shape[t.ndim - 1] : 1;
	for (uint32_t d = 0; d + 1 < t.ndim; d++)
		rows *= t.shape[d];
	uint64_t row_bytes = cols * qs_dtype_size(dt), bytes = rows * row_bytes;
	uint8_t *got = malloc(bytes ? bytes : 1), *want = malloc(bytes ? bytes : 1);
	struct qs_diag diag = {{0}};
	if (!got || !want) {
		failf(t.name, "out of memory");
		goto out;
	}
	int rc = qs_qfile_read(qf, i, dt, got, bytes, &diag);
	atomic_fetch_add(&reads_done, 1);
	if (damaged && strcmp(t.name, damaged) == 0) {
		char quoted[600];
		snprintf(quoted, sizeof(quoted), "tensor '%s'", t.name);
		if (rc != -QS_ECHECKSUM)
			failf(t.name, rc ? qs_strerror(rc) : "damaged tensor read without error");
		else if (!strstr(diag.msg, quoted) || !strstr(diag.msg, "chunk "))
			failf(t.name, diag.msg);
		else
			printf("read_every: damaged as expected: %s\n", diag.msg);
		goto out;
	}
	if (rc < 0) {
		failf(t.name, diag.msg);
		goto out;
	}
	const struct expect *e = expect_of(t.name);
	if (!e) {
		failf(t.name, "not in the unpacked checkpoint");
		goto out;
	}
	if (e->dtype != dt || e->bytes != bytes) {
		failf(t.name, "dtype or size differs from the unpacked tensor");
		goto out;
	}
	int fd = open(e->path, O_RDONLY);
	if (fd < 0 || pread(fd, want, bytes, (off_t)e->offset) != (ssize_t)bytes) {
		failf(t.name, "cannot read the unpacked tensor");
		if (fd >= 0)
			close(fd);
		goto out;
	}
	close(fd);
	if (memcmp(got, want, bytes) != 0) {
		failf(t.name, "bytes differ from unpack's");
		goto out;
	}
	atomic_fetch_add(&bytes_checked, bytes);
	/* ranges: [0,1), then steps of 7 rows, each into a buffer of exactly
	 * its size */
	for (uint64_t at = 0, step = 1; at < rows; at += step, step = 7) {
		uint64_t n = rows - at < step ? rows - at : step;
		memset(got, 0xA5, n * row_bytes);
		rc = qs_qfile_read_rows(qf, i, at, n, dt, got, n * row_bytes, &diag);
		if (rc < 0 || memcmp(got, want + at * row_bytes, n * row_bytes) != 0) {
			failf(t.name, rc < 0 ? diag.msg : "a row range differs from unpack's");
			goto out;
		}
		atomic_fetch_add(&reads_done, 1);
		/* ranges every 7 rows of a 100k-row embedding would take long:
		 * after a few, jump ahead to the last rows */
		if (at > 64 && rows - at > 64)
			at = rows - 64 - step;
	}
	/* one row too many, and a buffer one byte short, are refused */
	if (qs_qfile_read_rows(qf, i, rows, 1, dt, got, row_bytes, &diag) != -QS_EUSAGE ||
	    (bytes && qs_qfile_read(qf, i, dt, got, bytes - 1, &diag) != -QS_EUSAGE))
		failf(t.name, "an out-of-bounds read was not refused");
out:
	free(got);
	free(want);
}

static void *worker(void *arg)
{
	size_t t = (size_t)(uintptr_t)arg;
	for (size_t i = t; i < qs_qfile_count(qf); i += nthreads)
		check_tensor(i);
	return NULL;
}

static int locate(const char *path, const char *name, const char *chunk)
{
	struct qs_diag diag = {{0}};
	struct qs_chunk_info ci;
	size_t i;
	if (qs_qfile_open(path, &qf, &diag) < 0)
		die("%s%s", diag.msg, "");
	if (qs_qfile_find(qf, name, &i) < 0 ||
	    qs_qfile_chunk(qf, i, (uint32_t)atoi(chunk), &ci) < 0)
		die("no tensor '%s' or no chunk %s", name, chunk);
	printf("%llu %llu\n", (unsigned long long)ci.frame_offset,
	       (unsigned long long)ci.frame_bytes);
	qs_qfile_free(qf);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 5 && strcmp(argv[1], "--locate") == 0)
		return locate(argv[2], argv[3], argv[4]);
	int arg = 1;
	if (argc > 2 && strcmp(argv[1], "-T") == 0) {
		nthreads = (unsigned)atoi(argv[2]);
		arg = 3;
	}
	if (argc - arg < 3 || argc - arg > 4 || nthreads < 1 || nthreads > 64) {
		fprintf(stderr, "usage: read_every [-T THREADS] FILE.qshard UNPACKED_DIR DTYPE [DAMAGED]\n");
		return 2;
	}
	const char *dtypes[] = {"f32", "bf16", "f16"};
	const enum qs_dtype values[] = {QS_DTYPE_F32, QS_DTYPE_BF16, QS_DTYPE_F16};
	want_dtype = QS_DTYPE_COUNT;
	for (int k = 0; k < 3; k++)
		if (strcmp(argv[arg + 2], dtypes[k]) == 0)
			want_dtype = values[k];
	if (want_dtype == QS_DTYPE_COUNT)
		die("dtype must be f32, bf16 or f16, not '%s'%s", argv[arg + 2], "");
	damaged = argc - arg == 4 ? argv[arg + 3] : NULL;
	load_unpacked(argv[arg + 1]);

	struct qs_diag diag = {{0}};
	int rc = qs_qfile_open(argv[arg], &qf, &diag);
	if (rc < 0)
		die("%s%s", diag.msg, "");
	size_t missing;
	if (qs_qfile_find(qf, "no.such.tensor", &missing) != -ENOENT)
		die("qs_qfile_find found a tensor that does not exist%s%s", "", "");
	pthread_t th[64];
	for (unsigned t = 0; t < nthreads; t++)
		if (pthread_create(&th[t], NULL, worker, (void *)(uintptr_t)t) != 0)
			die("cannot start a thread%s%s", "", "");
	for (unsigned t = 0; t < nthreads; t++)
		pthread_join(th[t], NULL);
	size_t n = qs_qfile_count(qf);
	qs_qfile_free(qf);
	if (!damaged && n != nexpects)
		die("the qshard file and the unpacked checkpoint hold different tensor counts%s%s", "",
		    "");
	printf("read_every: %zu tensors, %lu reads, %lu bytes equal to unpack's, %d failures (%u threads)\n",
	       n, (unsigned long)reads_done, (unsigned long)bytes_checked, (int)failures, nthreads);
	return failures ? 1 : 0;
}
