/* checkpoint.c - opening a checkpoint: one .safetensors file, or a folder
 * holding one, or a folder of shards named by model.safetensors.index.json.
 *
 * Everything that can be checked without reading tensor data is checked
 * here, so a conversion that runs for hours never fails on a malformed
 * header or an index that disagrees with its shards half-way through.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "safetensors.h"
#include "util.h"

#define INDEX_NAME "model.safetensors.index.json"
#define SINGLE_NAME "model.safetensors"
#define SUFFIX ".safetensors"
/* config.json of real models is a few KB; the cap keeps a stray huge file
 * from being slurped into memory. */
#define CONFIG_MAX (16u << 20)
/* The index of a 405B model is ~100 KB; allow far more but not unbounded. */
#define INDEX_MAX QS_ST_MAX_HEADER

static const char *lower_strerror(int err, char *buf, size_t len)
{
	snprintf(buf, len, "%s", strerror(err));
	if (buf[0] >= 'A' && buf[0] <= 'Z')
		buf[0] = (char)(buf[0] - 'A' + 'a');
	return buf;
}

static int sys_error(struct qs_diag *diag, int err, const char *what, const char *path)
{
	char ebuf[128];
	if (err == ELOOP)
		return qs_diag_set(diag, -err,
				   "'%s': cannot %s: too many levels of symbolic links (symlink loop?)",
				   path, what);
	return qs_diag_set(diag, -err, "'%s': cannot %s: %s", path, what,
			   lower_strerror(err, ebuf, sizeof(ebuf)));
}

void qs_checkpoint_free(struct qs_checkpoint *ckpt)
{
	if (!ckpt)
		return;
	for (size_t i = 0; i < ckpt->nshards; i++) {
		free(ckpt->shards[i].path);
		free(ckpt->shards[i].name);
		free(ckpt->shards[i].metadata_json);
	}
	free(ckpt->shards);
	for (size_t i = 0; i < ckpt->ntensors; i++)
		free(ckpt->tensors[i].name);
	free(ckpt->tensors);
	free(ckpt->config_json);
	free(ckpt->path);
	free(ckpt->dir);
	free(ckpt);
}

size_t qs_checkpoint_count(const struct qs_checkpoint *ckpt)
{
	return ckpt ? ckpt->ntensors : 0;
}

void qs_checkpoint_tensor(const struct qs_checkpoint *ckpt, size_t i,
			  struct qs_tensor_info *out)
{
	memset(out, 0, sizeof(*out));
	if (!ckpt || i >= ckpt->ntensors)
		return;
	const struct qs_st_tensor *t = &ckpt->tensors[i];
	out->name = t->name;
	out->dtype = t->dtype;
	out->ndim = t->ndim;
	memcpy(out->shape, t->shape, sizeof(out->shape));
	out->source_bytes = t->nbytes;
	out->file = ckpt->shards[t->shard].name;
}

size_t qs_checkpoint_shards(const struct qs_checkpoint *ckpt)
{
	return ckpt ? ckpt->nshards : 0;
}

uint64_t qs_checkpoint_bytes(const struct qs_checkpoint *ckpt)
{
	uint64_t sum = 0;
	for (size_t i = 0; ckpt && i < ckpt->nshards; i++)
		sum += ckpt->shards[i].size;
	return sum;
}

/* Reads a whole small file; -ENOENT passes through untouched so callers
 * can treat a missing optional file as absent. */
static int slurp(const char *path, size_t cap, char **text, size_t *len,
		 struct qs_diag *diag)
{
	*text = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return sys_error(diag, errno, "open", path);
	struct stat st;
	int ret = 0;
	if (fstat(fd, &st) < 0) {
		ret = sys_error(diag, errno, "stat", path);
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = qs_diag_set(diag, -QS_EFORMAT, "'%s': not a regular file", path);
		goto out;
	}
	if ((uint64_t)st.st_size > cap) {
		ret = qs_diag_set(diag, -QS_ETOOBIG, "'%s': larger than %zu bytes", path, cap);
		goto out;
	}
	size_t n = (size_t)st.st_size;
	char *buf = malloc(n + 1);
	if (!buf) {
		ret = qs_diag_set(diag, -ENOMEM, "'%s': out of memory", path);
		goto out;
	}
	ret = qs_pread_full(fd, buf, n, 0);
	if (ret < 0) {
		free(buf);
		if (ret == -QS_EFORMAT)
			ret = qs_diag_set(diag, ret, "'%s': file shrank while reading", path);
		else
			ret = sys_error(diag, -ret, "read", path);
		goto out;
	}
	buf[n] = '\0';
	*text = buf;
	*len = n;
out:
	close(fd);
	return ret;
}

/* config.json is informational (carried into the output): a broken one is
 * reported through config_invalid, never as a failure. */
static void load_config(struct qs_checkpoint *ck)
{
	char *path = qs_path_join(ck->dir, "config.json");
	if (!path)
		return;
	struct stat st;
	if (stat(path, &st) < 0 && errno == ENOENT) {
		free(path);
		return;
	}
	char *text;
	size_t len;
	struct qs_diag ignored;
	if (slurp(path, CONFIG_MAX, &text, &len, &ignored) < 0) {
		ck->config_invalid = true;
		free(path);
		return;
	}
	free(path);
	json_error_t jerr;
	json_t *root = json_loadb(text, len, 0, &jerr);
	if (!json_is_object(root)) {
		ck->config_invalid = true;
		free(text);
	} else {
		ck->config_json = text;
	}
	json_decref(root);
}

static int add_shard(struct qs_checkpoint *ck, const char *path, const char *name,
		     struct qs_st_header *h, struct qs_diag *diag)
{
	struct qs_st_shard *s = &ck->shards[ck->nshards];
	memset(s, 0, sizeof(*s));
	s->path = strdup(path);
	s->name = strdup(name);
	if (!s->path || !s->name) {
		free(s->path);
		free(s->name);
		return qs_diag_set(diag, -ENOMEM, "'%s': out of memory", path);
	}
	int ret = qs_st_read_file_id(path, h, &s->id, diag);
	if (ret < 0) {
		free(s->path);
		free(s->name);
		return ret;
	}
	s->size = s->id.size;
	s->mtime_ns = s->id.mtime_ns;
	s->data_offset = h->data_offset;
	s->metadata_json = h->metadata_json;
	h->metadata_json = NULL;
	ck->nshards++;
	return 0;
}

/* Moves the tensors of h (shard index ck->nshards - 1) to the end of
 * ck->tensors; the array was sized by the caller. */
static void take_tensors(struct qs_checkpoint *ck, struct qs_st_header *h)
{
	for (size_t i = 0; i < h->ntensors; i++) {
		ck->tensors[ck->ntensors] = h->tensors[i];
		ck->tensors[ck->ntensors].shard = (uint32_t)(ck->nshards - 1);
		ck->ntensors++;
	}
	free(h->tensors);
	h->tensors = NULL;
	h->ntensors = 0;
}

static int open_single(struct qs_checkpoint *ck, const char *path, const char *name,
		       struct qs_diag *diag)
{
	ck->shards = calloc(1, sizeof(*ck->shards));
	if (!ck->shards)
		return qs_diag_set(diag, -ENOMEM, "'%s': out of memory", path);
	struct qs_st_header h;
	int ret = add_shard(ck, path, name, &h, diag);
	if (ret < 0)
		return ret;
	if (h.ntensors == 0) {
		qs_st_header_release(&h);
		return qs_diag_set(diag, -QS_EFORMAT, "'%s': no tensors", path);
	}
	ck->tensors = h.tensors;
	ck->ntensors = h.ntensors;
	h.tensors = NULL;
	h.ntensors = 0;
	qs_st_header_release(&h);
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_entry(const void *a, const void *b)
{
	const struct qs_st_index_entry *x = a, *y = b;
	return strcmp(x->tensor, y->tensor);
}

/* A tensor name and its shard, sorted by name for the cross-checks. */
struct name_ref {
	const char *name;
	uint32_t shard;
};

static int cmp_ref(const void *a, const void *b)
{
	const struct name_ref *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	if (c)
		return c;
	return x->shard < y->shard ? -1 : x->shard > y->shard;
}

static int cmp_ref_name(const void *a, const void *b)
{
	return strcmp(((const struct name_ref *)a)->name, ((const struct name_ref *)b)->name);
}

/* The index and the shard headers must describe the same set of tensors,
 * each in exactly one shard: otherwise either the index or a shard is
 * stale and the output would silently miss or duplicate a tensor. */
static int cross_check(struct qs_checkpoint *ck, struct qs_st_index *idx,
		       struct qs_diag *diag)
{
	size_t n = ck->ntensors;
	struct name_ref *refs = malloc((n ? n : 1) * sizeof(*refs));
	if (!refs)
		return qs_diag_set(diag, -ENOMEM, "'%s': out of memory", ck->dir);
	for (size_t i = 0; i < n; i++) {
		refs[i].name = ck->tensors[i].name;
		refs[i].shard = ck->tensors[i].shard;
	}
	qsort(refs, n, sizeof(*refs), cmp_ref);
	int ret = 0;
	for (size_t i = 1; i < n; i++) {
		const struct name_ref *a = &refs[i - 1], *b = &refs[i];
		if (strcmp(a->name, b->name) == 0) {
			ret = qs_diag_set(diag, -QS_EFORMAT,
					  "tensor '%s' is in both '%s' and '%s'", a->name,
					  ck->shards[a->shard].name, ck->shards[b->shard].name);
			goto out;
		}
	}
	qsort(idx->entries, idx->nentries, sizeof(*idx->entries), cmp_entry);
	for (size_t i = 0; i < n; i++) {
		const struct qs_st_tensor *t = &ck->tensors[i];
		struct qs_st_index_entry key = {.tensor = t->name};
		const struct qs_st_index_entry *e =
			bsearch(&key, idx->entries, idx->nentries, sizeof(key), cmp_entry);
		const char *sname = ck->shards[t->shard].name;
		if (!e) {
			ret = qs_diag_set(diag, -QS_EFORMAT,
					  "'%s': tensor '%s' is not listed in '%s'",
					  sname, t->name, INDEX_NAME);
			goto out;
		}
		if (strcmp(e->shard, sname) != 0) {
			ret = qs_diag_set(diag, -QS_EFORMAT,
					  "'%s': tensor '%s' is in '%s' but the index puts it in '%s'",
					  INDEX_NAME, t->name, sname, e->shard);
			goto out;
		}
	}
	/* Every tensor found matched its own index entry and names are
	 * unique on both sides, so equal counts mean nothing is missing;
	 * otherwise find the first entry without a tensor. */
	if (idx->nentries != n) {
		for (size_t i = 0; i < idx->nentries; i++) {
			struct name_ref key = {.name = idx->entries[i].tensor};
			/* refs are unique by name now, so the shard tie-break of
			 * cmp_ref never matters; compare names only. */
			if (!bsearch(&key, refs, n, sizeof(key), cmp_ref_name)) {
				ret = qs_diag_set(diag, -QS_EFORMAT,
						  "'%s': tensor '%s' listed in '%s' is missing from it",
						  INDEX_NAME, idx->entries[i].tensor,
						  idx->entries[i].shard);
				goto out;
			}
		}
	}
out:
	free(refs);
	return ret;
}

static int open_sharded(struct qs_checkpoint *ck, const char *index_path,
			struct qs_diag *diag)
{
	char *text = NULL;
	size_t len = 0;
	struct qs_st_index idx = {0};
	struct qs_st_header *hdrs = NULL;
	size_t nhdrs = 0;
	int ret = slurp(index_path, INDEX_MAX, &text, &len, diag);
	if (ret < 0)
		return ret;
	ret = qs_st_parse_index(index_path, text, len, &idx, diag);
	free(text);
	if (ret < 0)
		return ret;
	if (idx.nentries == 0) {
		ret = qs_diag_set(diag, -QS_EFORMAT, "'%s': no tensors", index_path);
		goto out;
	}

	/* A model.safetensors next to shards that do not include it means two
	 * checkpoints share the folder: which one was meant is a guess. */
	bool single_listed = false;
	for (size_t i = 0; i < idx.nshards; i++)
		if (strcmp(idx.shards[i], SINGLE_NAME) == 0)
			single_listed = true;
	if (!single_listed) {
		char *p = qs_path_join(ck->dir, SINGLE_NAME);
		struct stat st;
		if (!p) {
			ret = qs_diag_set(diag, -ENOMEM, "'%s': out of memory", ck->dir);
			goto out;
		}
		bool exists = lstat(p, &st) == 0;
		free(p);
		if (exists) {
			ret = qs_diag_set(diag, -QS_EFORMAT,
					  "'%s': both a single-file checkpoint and shards ('%s' is not in '%s')",
					  ck->dir, SINGLE_NAME, INDEX_NAME);
			goto out;
		}
	}

	/* Sorted shard names give a plan order independent of how the index
	 * happens to be written. */
	qsort(idx.shards, idx.nshards, sizeof(*idx.shards), cmp_str);
	ck->shards = calloc(idx.nshards, sizeof(*ck->shards));
	hdrs = calloc(idx.nshards, sizeof(*hdrs));
	if (!ck->shards || !hdrs) {
		ret = qs_diag_set(diag, -ENOMEM, "'%s': out of memory", ck->dir);
		goto out;
	}
	size_t total = 0;
	for (size_t i = 0; i < idx.nshards; i++) {
		char *p = qs_path_join(ck->dir, idx.shards[i]);
		if (!p) {
			ret = qs_diag_set(diag, -ENOMEM, "'%s': out of memory", ck->dir);
			goto out;
		}
		ret = add_shard(ck, p, idx.shards[i], &hdrs[i], diag);
		free(p);
		if (ret < 0)
			goto out;
		nhdrs++;
		total += hdrs[i].ntensors;
	}
	ck->tensors = calloc(total ? total : 1, sizeof(*ck->tensors));
	if (!ck->tensors) {
		ret = qs_diag_set(diag, -ENOMEM, "'%s': out of memory", ck->dir);
		goto out;
	}
	/* take_tensors tags with nshards - 1, so replay the shard count. */
	size_t nsh = ck->nshards;
	for (size_t i = 0; i < nhdrs; i++) {
		ck->nshards = i + 1;
		take_tensors(ck, &hdrs[i]);
	}
	ck->nshards = nsh;
	ret = cross_check(ck, &idx, diag);
out:
	for (size_t i = 0; hdrs && i < idx.nshards; i++)
		qs_st_header_release(&hdrs[i]);
	free(hdrs);
	qs_st_index_release(&idx);
	return ret;
}

/* A folder without an index: it must hold exactly one *.safetensors file
 * (dot files are skipped, as a shell glob would). */
static int open_folder_plain(struct qs_checkpoint *ck, struct qs_diag *diag)
{
	DIR *d = opendir(ck->dir);
	if (!d)
		return sys_error(diag, errno, "open folder", ck->dir);
	char **names = NULL;
	size_t n = 0, cap = 0, entries = 0;
	int ret = 0;
	struct dirent *de;
	size_t sfx = strlen(SUFFIX);
	for (;;) {
		errno = 0;
		de = readdir(d);
		if (!de) {
			if (errno) {
				ret = sys_error(diag, errno, "read folder", ck->dir);
				goto out;
			}
			break;
		}
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		entries++;
		size_t len = strlen(de->d_name);
		if (de->d_name[0] == '.' || len <= sfx ||
		    strcmp(de->d_name + len - sfx, SUFFIX) != 0)
			continue;
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 8;
			char **nn = realloc(names, ncap * sizeof(*nn));
			if (!nn) {
				ret = qs_diag_set(diag, -ENOMEM, "'%s': out of memory", ck->dir);
				goto out;
			}
			names = nn;
			cap = ncap;
		}
		names[n] = strdup(de->d_name);
		if (!names[n]) {
			ret = qs_diag_set(diag, -ENOMEM, "'%s': out of memory", ck->dir);
			goto out;
		}
		n++;
	}
	if (n > 1)
		qsort(names, n, sizeof(*names), cmp_str);
	/* Stat every candidate first: a symlink loop or dangling link gets a
	 * message naming it rather than a vaguer count error. */
	for (size_t i = 0; i < n; i++) {
		char *p = qs_path_join(ck->dir, names[i]);
		struct stat st;
		if (!p) {
			ret = qs_diag_set(diag, -ENOMEM, "'%s': out of memory", ck->dir);
			goto out;
		}
		if (stat(p, &st) < 0) {
			ret = sys_error(diag, errno, "stat", p);
			free(p);
			goto out;
		}
		free(p);
	}
	if (entries == 0) {
		ret = qs_diag_set(diag, -QS_EFORMAT, "'%s': empty folder, no .safetensors files",
				  ck->dir);
	} else if (n == 0) {
		ret = qs_diag_set(diag, -QS_EFORMAT, "'%s': no .safetensors files", ck->dir);
	} else if (n > 1) {
		ret = qs_diag_set(diag, -QS_EFORMAT,
				  "'%s': several .safetensors files but no %s",
				  ck->dir, INDEX_NAME);
	} else {
		char *p = qs_path_join(ck->dir, names[0]);
		if (!p) {
			ret = qs_diag_set(diag, -ENOMEM, "'%s': out of memory", ck->dir);
			goto out;
		}
		ret = open_single(ck, p, names[0], diag);
		free(p);
	}
out:
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	closedir(d);
	return ret;
}

/* The folder part of a file path ("." when there is none). */
static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		return strdup(".");
	size_t len = (size_t)(slash - path);
	if (len == 0)
		len = 1; /* "/file" lives in "/" */
	char *s = malloc(len + 1);
	if (!s)
		return NULL;
	memcpy(s, path, len);
	s[len] = '\0';
	return s;
}

int qs_checkpoint_open(const char *path, struct qs_checkpoint **out,
		       struct qs_diag *diag)
{
	*out = NULL;
	if (!path || !path[0])
		return qs_diag_set(diag, -QS_EUSAGE, "no checkpoint path given");
	struct stat st;
	if (stat(path, &st) < 0)
		return sys_error(diag, errno, "open", path);
	struct qs_checkpoint *ck = calloc(1, sizeof(*ck));
	if (!ck || !(ck->path = strdup(path))) {
		free(ck);
		return qs_diag_set(diag, -ENOMEM, "'%s': out of memory", path);
	}
	int ret;
	if (S_ISREG(st.st_mode)) {
		ck->dir = dir_of(path);
		if (!ck->dir) {
			ret = qs_diag_set(diag, -ENOMEM, "'%s': out of memory", path);
			goto fail;
		}
		/* Naming the index itself is a natural way to point at a
		 * sharded checkpoint: open its folder's shards. */
		if (strcmp(qs_basename(path), INDEX_NAME) == 0) {
			ck->sharded = true;
			ret = open_sharded(ck, path, diag);
		} else {
			ret = open_single(ck, path, qs_basename(path), diag);
		}
	} else if (S_ISDIR(st.st_mode)) {
		ck->dir = strdup(path);
		char *index_path = ck->dir ? qs_path_join(ck->dir, INDEX_NAME) : NULL;
		if (!index_path) {
			ret = qs_diag_set(diag, -ENOMEM, "'%s': out of memory", path);
			goto fail;
		}
		struct stat ist;
		if (stat(index_path, &ist) == 0) {
			ck->sharded = true;
			ret = open_sharded(ck, index_path, diag);
		} else if (errno == ENOENT) {
			ret = open_folder_plain(ck, diag);
		} else {
			ret = sys_error(diag, errno, "stat", index_path);
		}
		free(index_path);
	} else {
		ret = qs_diag_set(diag, -QS_EFORMAT, "'%s': not a file or folder", path);
	}
	if (ret < 0)
		goto fail;
	load_config(ck);
	*out = ck;
	return 0;
fail:
	qs_checkpoint_free(ck);
	return ret;
}
