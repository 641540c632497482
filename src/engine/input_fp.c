/* input_fp.c - the inputs beside the shards that shape the output, as lines
 * of the input description --resume compares (plan.c): the files carried
 * into the container (config.json, generation_config.json, tokenizer*.json,
 * tokenizer.model), the --importance and --hessian files, and the chunking
 * actually in effect.  A resume after any of them changed would finish a
 * file that mixes two inputs (an old config.json, chunks cut two ways). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "fsafe.h"
#include "plan.h"
#include "util.h"

struct text {
	char *buf;
	size_t len, cap;
	bool oom;
};

static void add(struct text *t, const char *line)
{
	size_t n = strlen(line);
	if (t->oom)
		return;
	if (t->len + n + 1 > t->cap) {
		size_t cap = (t->cap ? t->cap : 1024);
		while (cap < t->len + n + 1)
			cap *= 2;
		char *b = realloc(t->buf, cap);
		if (!b) {
			t->oom = true;
			return;
		}
		t->buf = b;
		t->cap = cap;
	}
	memcpy(t->buf + t->len, line, n + 1);
	t->len += n;
}

/* The names whose content is carried: what a loader needs beside the
 * weights.  Kept in step with the files the container carries. */
static bool carried(const char *name)
{
	static const char *const patterns[] = {"config.json", "generation_config.json",
					       "tokenizer*.json", "tokenizer.model"};
	for (size_t i = 0; i < sizeof(patterns) / sizeof(*patterns); i++)
		if (fnmatch(patterns[i], name, 0) == 0)
			return true;
	return false;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* xxh3-64 of a whole (small) file's content, read in pieces. */
static int hash_file(int dirfd, const char *name, uint64_t *size, uint64_t *out)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	XXH3_state_t *st = XXH3_createState();
	uint8_t *piece = malloc(1 << 16);
	int err = st && piece ? 0 : -ENOMEM;
	if (!err)
		XXH3_64bits_reset(st);
	*size = 0;
	while (!err) {
		ssize_t n = read(fd, piece, 1 << 16);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			err = -errno;
		if (n <= 0)
			break;
		XXH3_64bits_update(st, piece, (size_t)n);
		*size += (uint64_t)n;
	}
	if (!err)
		*out = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	free(piece);
	close(fd);
	return err;
}

static void carried_lines(const struct qs_checkpoint *ck, struct text *t)
{
	if (!ck->dir)
		return;
	int dirfd = open(ck->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return;
	DIR *d = fdopendir(dirfd);
	if (!d) {
		close(dirfd);
		return;
	}
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (!carried(e->d_name))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 8;
			char **nn = realloc(names, cap * sizeof(*nn));
			if (!nn) {
				t->oom = true;
				break;
			}
			names = nn;
		}
		if (!(names[n] = strdup(e->d_name))) {
			t->oom = true;
			break;
		}
		n++;
	}
	/* directory order is the file system's: sort for a stable text */
	qsort(names, n, sizeof(*names), cmp_str);
	for (size_t i = 0; i < n; i++) {
		char line[1024];
		uint64_t size = 0, h = 0;
		struct stat st;
		if (fstatat(dirfd, names[i], &st, 0) != 0 || !S_ISREG(st.st_mode))
			continue;
		if (hash_file(dirfd, names[i], &size, &h) == 0)
			snprintf(line, sizeof(line), "carried '%s' size %llu xxh3 %016llx\n",
				 names[i], (unsigned long long)size, (unsigned long long)h);
		else
			snprintf(line, sizeof(line), "carried '%s' unreadable\n", names[i]);
		add(t, line);
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	closedir(d);
}

/* Statistics files can be many GB: identified like shards, by size and
 * modification time, not by content. */
static void stats_line(const char *what, const char *path, struct text *t)
{
	char line[4200];
	struct stat st;
	if (!path)
		return;
	if (stat(path, &st) != 0) {
		snprintf(line, sizeof(line), "%s '%s' missing\n", what, path);
	} else {
		struct qs_file_id id;
		qs_file_id_from_stat(&st, &id);
		snprintf(line, sizeof(line), "%s '%s' size %llu mtime %lld\n", what, path,
			 (unsigned long long)id.size, (long long)id.mtime_ns);
	}
	add(t, line);
}

char *qs_input_extras(const struct qs_checkpoint *ck, const struct qs_convert_opts *opts)
{
	struct text t = {0};
	add(&t, "");
	carried_lines(ck, &t);
	stats_line("importance", opts->importance, &t);
	stats_line("hessian", opts->hessian, &t);
	/* The chunking is in the options fingerprint (plan.c: options_text),
	 * since --memory decides it; one place says what changed. */
	if (t.oom) {
		free(t.buf);
		return NULL;
	}
	return t.buf;
}
