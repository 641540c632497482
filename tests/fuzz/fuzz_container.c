/* fuzz_container.c - libFuzzer harness for the qshard container readers.
 *
 * The input is a whole qshard file.  Its bytes go
 *   - to each decoder directly (header, record and index contents, the
 *     56-byte trailer frame), once as they are and once with the tag and
 *     the trailing xxh3 made right, so mutations reach the field parsing
 *     behind the checksum;
 *   - into an in-memory file that is opened (every chunk of every tensor
 *     read back), verified and unpacked into a scratch folder.  The file is
 *     tried as given and, when it differs, with every checksum the format
 *     has (skippable contents, index entries, chunk frame and payload
 *     hashes) recomputed: otherwise almost every mutation would stop at the
 *     first checksum and the structure checks behind it would never run.
 * A promise of container.h or qshard(5) that does not hold aborts.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>
#include <zstd.h>

#include "container.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                             \
	do {                                                                    \
		if (!(cond)) {                                                  \
			fprintf(stderr, "%s:%d: broken promise: %s\n", __FILE__, \
				__LINE__, #cond);                               \
			abort();                                                \
		}                                                               \
	} while (0)

/* Larger chunks are skipped: a fuzzed payload_size must not make the
 * harness itself allocate without bound. */
#define MAX_CHUNK (64u << 20)
/* Payloads up to this size are decompressed while fixing checksums. */
#define MAX_FIX_PAYLOAD (1u << 20)

static const char fname[] = "fuzz.qshard";

/* ------------------------------------------------------ checksum repair */

static void seal(uint8_t *content, size_t len)
{
	if (len >= 12)
		qs_put_le64(content + len - 8, XXH3_64bits(content, len - 8));
}

/* Walks a record content as qshard(5) lays it out and, where the chunk's
 * frame lies in the file (file may be NULL: no chunk hashes), sets
 * frame_xxh3 and payload_xxh3 to what the frame holds; then seals the
 * record. */
static void fix_record(uint8_t *file, size_t fsize, uint8_t *p, size_t len, void *scratch)
{
	if (len < 12)
		return;
	size_t at = 4, end = len - 8;
	for (int i = 0; i < 2; i++) {
		if (end - at < 2)
			goto out;
		at += 2 + qs_get_le16(p + at);
		if (at > end)
			goto out;
	}
	if (end - at < 4)
		goto out;
	unsigned ndim = p[at + 1];
	at += 4;
	if (ndim > QS_MAX_DIMS || (end - at) / 8 < ndim)
		goto out;
	at += 8 * ndim;
	if (end - at < 2)
		goto out;
	at += 2 + qs_get_le16(p + at);
	if (at > end || end - at < 12)
		goto out;
	at += 8;
	uint32_t nchunks = qs_get_le32(p + at);
	at += 4;
	for (uint32_t c = 0; file && c < nchunks && end - at >= 56; c++, at += 56) {
		uint8_t *e = p + at;
		uint64_t off = qs_get_le64(e), fsz = qs_get_le64(e + 8);
		uint64_t psz = qs_get_le64(e + 16);
		if (off > fsize || fsz > fsize - off)
			continue;
		qs_put_le64(e + 48, XXH3_64bits(file + off, (size_t)fsz));
		if (psz <= MAX_FIX_PAYLOAD) {
			size_t got = ZSTD_decompress(scratch, (size_t)psz, file + off, (size_t)fsz);
			if (!ZSTD_isError(got) && got == psz)
				qs_put_le64(e + 40, XXH3_64bits(scratch, got));
		}
	}
out:
	seal(p, len);
}

static void fix_index(uint8_t *file, size_t fsize, uint8_t *p, size_t len, void *scratch)
{
	if (len < 16) {
		seal(p, len);
		return;
	}
	size_t at = 8, end = len - 8;
	uint32_t count = qs_get_le32(p + 4);
	for (uint32_t i = 0; i < count && end - at >= 12; i++) {
		uint32_t clen = qs_get_le32(p + at + 8);
		at += 12;
		if (clen > end - at)
			break;
		fix_record(file, fsize, p + at, clen, scratch);
		at += clen;
	}
	seal(p, len);
}

/* Recomputes every checksum reachable by walking the frames from the start
 * and the trailer at the end.  Returns true if a byte changed. */
static bool fix_file(uint8_t *b, size_t n, const uint8_t *orig)
{
	void *scratch = malloc(MAX_FIX_PAYLOAD);
	if (!scratch)
		abort();
	size_t off = 0;
	while (n - off >= 8) {
		uint32_t magic = qs_get_le32(b + off);
		if ((magic & 0xFFFFFFF0u) == 0x184D2A50u) {
			uint32_t len = qs_get_le32(b + off + 4);
			if (len > n - off - 8)
				break;
			uint8_t *c = b + off + 8;
			if (magic == QS_MAGIC_RECORD)
				fix_record(b, n, c, len, scratch);
			else if (magic == QS_MAGIC_INDEX)
				fix_index(b, n, c, len, scratch);
			else if (magic == QS_MAGIC_HEADER || magic == QS_MAGIC_TRAILER)
				seal(c, len);
			off += 8 + (size_t)len;
		} else if (magic == QS_ZSTD_MAGIC) {
			size_t fs = ZSTD_findFrameCompressedSize(b + off, n - off);
			if (ZSTD_isError(fs) || fs == 0)
				break;
			off += fs;
		} else {
			break;
		}
	}
	if (n >= QS_TRAILER_FRAME_SIZE &&
	    qs_get_le32(b + n - QS_TRAILER_FRAME_SIZE) == QS_MAGIC_TRAILER)
		seal(b + n - QS_TRAILER_FRAME_SIZE + 8, QS_TRAILER_FRAME_SIZE - 8);
	free(scratch);
	return memcmp(b, orig, n) != 0;
}

/* ------------------------------------------------------------- decoders */

static void decode_all(const uint8_t *buf, size_t len)
{
	struct qs_diag d;
	struct qs_header h;
	if (qs_header_decode(fname, buf, len, &h, &d) == 0) {
		CHECK(h.version == QS_FORMAT_VERSION && h.creator && h.options);
		qs_header_release(&h);
	}
	struct qs_record r;
	if (qs_record_decode(fname, buf, len, &r, &d) == 0) {
		CHECK(r.name && r.name[0] && r.shard && r.scheme);
		CHECK(r.ndim <= QS_MAX_DIMS && (unsigned)r.dtype < QS_DTYPE_COUNT);
		CHECK(r.nchunks == 0 || r.chunks);
		qs_record_release(&r);
	}
	struct qs_record *rs;
	size_t n;
	if (qs_index_decode(fname, buf, len, &rs, &n, &d) == 0) {
		for (size_t i = 0; i < n; i++) {
			CHECK(rs[i].name && rs[i].name[0]);
			qs_record_release(&rs[i]);
		}
		free(rs);
	}
	uint8_t tr[QS_TRAILER_FRAME_SIZE] = {0};
	memcpy(tr, buf, len < sizeof(tr) ? len : sizeof(tr));
	struct qs_trailer t;
	if (qs_trailer_decode(fname, tr, &t, &d) == 0) {
		uint64_t e;
		CHECK(t.version == QS_FORMAT_VERSION);
		CHECK(qs_add_u64(t.index_offset, t.index_size, &e) &&
		      e + QS_TRAILER_FRAME_SIZE == t.file_size);
	}
}

/* The bytes as each decoder's input, and with the tag and checksum set
 * right so the fields behind them are parsed. */
static void decode_direct(const uint8_t *data, size_t size)
{
	decode_all(data, size);
	if (size < 12)
		return;
	uint8_t *b = malloc(size);
	if (!b)
		abort();
	static const char *const tags[3] = {"QSHD", "QSTR", "QSIX"};
	for (int i = 0; i < 3; i++) {
		memcpy(b, data, size);
		memcpy(b, tags[i], 4);
		if (i == 2)
			fix_index(NULL, 0, b, size, NULL);
		else
			seal(b, size);
		decode_all(b, size);
	}
	/* the trailer: magic, length and sealed content */
	if (size >= QS_TRAILER_FRAME_SIZE) {
		memcpy(b, data, QS_TRAILER_FRAME_SIZE);
		qs_put_le32(b, QS_MAGIC_TRAILER);
		qs_put_le32(b + 4, QS_TRAILER_FRAME_SIZE - 8);
		memcpy(b + 8, "QSTL", 4);
		seal(b + 8, QS_TRAILER_FRAME_SIZE - 8);
		decode_all(b, QS_TRAILER_FRAME_SIZE);
	}
	free(b);
}

/* ----------------------------------------------------------- whole file */

static int memfd = -1;
static char path[64];
static char scratch_dir[] = "/tmp/fuzz_container.XXXXXX";
static char outdir[sizeof(scratch_dir) + 8];
static bool have_scratch;

static void on_damage(const char *what, const char *detail, void *user)
{
	CHECK(what && what[0] && detail && detail[0]);
	(*(size_t *)user)++;
}

static void cleanup_scratch(void)
{
	if (have_scratch) {
		/* outdir is flat: shard names are plain file names */
		DIR *d = opendir(outdir);
		if (d) {
			struct dirent *de;
			while ((de = readdir(d))) {
				if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
					char p[sizeof(outdir) + 300];
					snprintf(p, sizeof(p), "%s/%s", outdir, de->d_name);
					unlink(p);
				}
			}
			closedir(d);
		}
		rmdir(outdir);
		rmdir(scratch_dir);
	}
}

static void setup(void)
{
	memfd = memfd_create("fuzz_container", MFD_CLOEXEC);
	if (memfd < 0 || !mkdtemp(scratch_dir)) {
		perror("fuzz_container setup");
		abort();
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
	snprintf(outdir, sizeof(outdir), "%s/out", scratch_dir);
	have_scratch = true;
	atexit(cleanup_scratch);
}

/* What unpack joins to the output folder must stay inside it. */
static bool plain_name(const char *s)
{
	return s[0] && strcmp(s, ".") && strcmp(s, "..") && !strchr(s, '/');
}

static void whole_file(const uint8_t *data, size_t size)
{
	if (ftruncate(memfd, 0) != 0 ||
	    (size && pwrite(memfd, data, size, 0) != (ssize_t)size)) {
		perror("memfd write");
		abort();
	}
	struct qs_diag d = {{0}};
	struct qs_qfile *qf = NULL;
	int rc = qs_qfile_open(path, &qf, &d);
	bool small = true;
	if (rc == 0) {
		CHECK(qs_qfile_size(qf) == size);
		CHECK(qs_qfile_options(qf) && qs_qfile_creator(qf));
		for (size_t i = 0; i < qs_qfile_count(qf); i++) {
			const struct qs_record *r = &qf->records[i];
			struct qs_tensor_info info;
			qs_qfile_tensor(qf, i, &info);
			CHECK(info.name && info.name[0] && info.scheme);
			/* refusing this is the reader's job; unpack would write
			 * outside its folder, so never let it run */
			CHECK(plain_name(r->shard));
			for (uint32_t c = 0; c < r->nchunks; c++) {
				uint64_t psz = r->chunks[c].payload_size;
				if (psz > MAX_CHUNK) {
					small = false;
					continue;
				}
				void *buf = malloc(psz ? (size_t)psz : 1);
				if (!buf)
					abort();
				struct qs_diag cd = {{0}};
				int crc = qs_qfile_read_chunk(qf, r, c, buf, &cd);
				CHECK(crc <= 0);
				free(buf);
			}
		}
		qs_qfile_free(qf);
	} else {
		CHECK(rc < 0 && d.msg[0]);
	}

	size_t damaged = 0;
	struct qs_diag vd = {{0}};
	int vrc = qs_verify(path, NULL, on_damage, &damaged, &vd);
	CHECK(vrc <= 0);
	/* a file verify passes is one the reader accepts */
	CHECK(vrc != 0 || rc == 0);
	CHECK(vrc == 0 || vd.msg[0]);

	if (rc == 0 && small) {
		struct qs_unpack_opts uo = {path, outdir, QS_DTYPE_F32, false};
		struct qs_diag ud = {{0}};
		int urc = qs_unpack(&uo, &ud);
		CHECK(urc <= 0);
		{
			DIR *dir = opendir(scratch_dir);
			CHECK(dir);
			struct dirent *de;
			while ((de = readdir(dir)))
				CHECK(!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
				      !strcmp(de->d_name, "out"));
			closedir(dir);
			dir = opendir(outdir);
			while (dir && (de = readdir(dir))) {
				char p[sizeof(outdir) + 300];
				if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
					continue;
				snprintf(p, sizeof(p), "%s/%s", outdir, de->d_name);
				CHECK(unlink(p) == 0);
			}
			if (dir)
				closedir(dir);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (memfd < 0)
		setup();
	decode_direct(data, size);
	whole_file(data, size);
	uint8_t *fixed = malloc(size ? size : 1);
	if (!fixed)
		abort();
	memcpy(fixed, data, size);
	if (fix_file(fixed, size, data))
		whole_file(fixed, size);
	free(fixed);
	return 0;
}
