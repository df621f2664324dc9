/*
 * deliverd: the web console's files, served at /ui.
 *
 * The files of the folder ui_dir (the built console, installed by make
 * install) are read once at start into memory: only regular files whose
 * name the router accepts (valid_ui_file: no "/", no leading ".") and whose
 * extension has a content type below, at most UI_MAX_FILES of them and
 * UI_MAX_BYTES each.  A request names a file of that list or gets 404, so
 * no request reaches the file system.  The files hold no data: every
 * figure the console shows comes from the /v1 routes, with the token the
 * user gives it, under the same roles and grants as any other client.
 */
#include "conns.h"
#include "ui.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define UI_MAX_FILES 64
#define UI_MAX_BYTES (8 * 1024 * 1024)

typedef struct
{
	char		name[UI_FILE_MAX_LEN + 1];
	const char *ctype;
	char	   *data;
	size_t		len;
} ui_file;

static ui_file files[UI_MAX_FILES];
static int	nfiles;
static const char *why_none = "the console is off (ui_dir = off)";

/* the content type of a file name, NULL when it is none the console has */
static const char *
content_type(const char *name)
{
	static const struct
	{
		const char *ext;
		const char *ctype;
	}			types[] = {
		{".html", "text/html; charset=utf-8"},
		{".js", "text/javascript; charset=utf-8"},
		{".css", "text/css; charset=utf-8"},
		{".svg", "image/svg+xml"},
		{".png", "image/png"},
		{".ico", "image/x-icon"},
		{NULL, NULL}
	};
	size_t		n = strlen(name);
	int			i;

	for (i = 0; types[i].ext; i++)
	{
		size_t		e = strlen(types[i].ext);

		if (n > e && strcmp(name + n - e, types[i].ext) == 0)
			return types[i].ctype;
	}
	return NULL;
}

/* read one file (a regular file, not a link) of the folder dfd */
static int
load_file(int dfd, const char *name, const char *ctype)
{
	/* (O_NONBLOCK: a FIFO named like a console file must not hang the start) */
	int			fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	struct stat st;
	ui_file    *f;
	size_t		got = 0;

	if (fd < 0)
		return errno == ELOOP ? 0 : -1;	/* a symbolic link: skipped */
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > UI_MAX_BYTES)
	{
		close(fd);
		return 0;
	}
	f = &files[nfiles];
	if (strlen(name) >= sizeof(f->name))
	{
		close(fd);
		return 0;
	}
	memcpy(f->name, name, strlen(name) + 1);
	f->ctype = ctype;
	f->len = (size_t) st.st_size;
	f->data = malloc(f->len + 1);
	if (!f->data)
	{
		close(fd);
		return -1;
	}
	while (got < f->len)
	{
		ssize_t		r = read(fd, f->data + got, f->len - got);

		if (r <= 0)
		{
			if (r < 0 && errno == EINTR)
				continue;
			if (r == 0)
				errno = EIO;	/* the file shrank while it was read */
			free(f->data);
			close(fd);
			return -1;
		}
		got += (size_t) r;
	}
	close(fd);
	nfiles++;
	return 0;
}

int
ui_init(const char *dir)
{
	DIR		   *d;
	struct dirent *e;
	int			dfd;

	nfiles = 0;
	if (!dir || !*dir || strcmp(dir, "off") == 0)
		return 0;
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || !(d = fdopendir(dfd)))
	{
		fprintf(stderr, "deliverd: no console: cannot open ui_dir %s: %s\n", dir, strerror(errno));
		why_none = "the console's files are not installed (see ui_dir)";
		if (dfd >= 0)
			close(dfd);
		return 0;
	}
	while ((e = readdir(d)) != NULL)
	{
		const char *ctype;

		if (!valid_ui_file(e->d_name) || !(ctype = content_type(e->d_name)))
			continue;
		if (nfiles >= UI_MAX_FILES)
		{
			fprintf(stderr, "deliverd: ui_dir %s has more than %d files: the rest is not served\n",
					dir, UI_MAX_FILES);
			break;
		}
		if (load_file(dfd, e->d_name, ctype) != 0)
		{
			fprintf(stderr, "deliverd: cannot read %s/%s: %s\n", dir, e->d_name, strerror(errno));
			closedir(d);
			return -1;
		}
	}
	closedir(d);
	why_none = "the console's files are not installed (see ui_dir)";
	return 0;
}

enum MHD_Result
ui_serve(struct MHD_Connection *c, request_t *rq)
{
	const char *name = rq->rm.file[0] ? rq->rm.file : "index.html";
	struct MHD_Response *resp;
	enum MHD_Result ret;
	int			i;

	/* /ui: to /ui/, so that the page's relative links resolve under it */
	if (strcmp(rq->path, "/ui") == 0)
	{
		resp = MHD_create_response_from_buffer(0, (void *) "", MHD_RESPMEM_PERSISTENT);
		if (!resp)
			return MHD_NO;
		MHD_add_response_header(resp, "Location", "/ui/");
		rq->status = 308;
		rq->answered = true;
		ret = MHD_queue_response(c, 308, resp);
		MHD_destroy_response(resp);
		return ret;
	}
	for (i = 0; i < nfiles; i++)
		if (strcmp(files[i].name, name) == 0)
			break;
	if (i == nfiles)
		return send_error(c, rq, 404, nfiles ? "no such file" : why_none, NULL, NULL, NULL, 0);
	resp = MHD_create_response_from_buffer(files[i].len, files[i].data, MHD_RESPMEM_PERSISTENT);
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type", files[i].ctype);
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(resp, "X-Frame-Options", "DENY");
	MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
	MHD_add_response_header(resp, "Cache-Control", "no-cache");
	MHD_add_response_header(resp, "Content-Security-Policy",
							"default-src 'self'; img-src 'self' data:; style-src 'self'; "
							"script-src 'self'; connect-src 'self'; frame-ancestors 'none'; "
							"base-uri 'none'; form-action 'none'");
	rq->status = 200;
	rq->bytes_out = files[i].len;
	rq->answered = true;
	ret = MHD_queue_response(c, 200, resp);
	MHD_destroy_response(resp);
	if (ret == MHD_YES)
		conns_phase(c, CONN_SENDING);
	return ret;
}
