/*
 * deliverd: its settings, from a file and the environment, and their
 * validation.
 */
#include "auth.h"
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* where make install puts the console's files (gateway/Makefile) */
#ifndef DELIVERD_UI_DIR
#define DELIVERD_UI_DIR "/usr/share/deliverd/ui"
#endif

/* the defaults */
config_t	cfg = {
	.listen = "127.0.0.1",
	.port = 8433,
	.conninfo = "dbname=deliver",
	.pool_size = 10,
	.acquire_timeout_ms = 5000,
	.max_connections = 256,
	.max_connections_per_address = 64,
	.max_body = 1024 * 1024 * 2,
	.idle_timeout = 60,
	.max_wait_ms = 30000,
	.stream_wait_ms = 5000,
	.max_streams = 64,
	.shutdown_grace = 30,
	.jwt_secret = NULL,
	.token_file = NULL,
	.anon_role = NULL,
	.metrics_role = NULL,
	.metrics_token = NULL,
	.access_log = "-",
	.threads_stack_kb = 512,
	.ui_dir = DELIVERD_UI_DIR,
	.read_only = false,
	.router = NULL,
	.shard_conninfo = NULL,
	.shard_pool_size = 0,
	.statement_timeout_ms = 5000,
	.request_timeout_ms = 10000,
	.connect_timeout_ms = 2000,
	.map_refresh_ms = 2000,
	.poll_slice_ms = 200,
	.max_batch = 10000,
};

typedef enum
{
	C_STR,						/* char * */
	C_INT,						/* int, 0 or more */
	C_LONG,						/* long, 0 or more */
	C_MS,						/* seconds (a decimal, at most a day) into long ms */
	C_MS_INT,					/* the same, into int ms */
	C_BOOL						/* on, off, true, false, 1, 0 into bool */
} ctype_t;

typedef struct
{
	const char *key;
	ctype_t		type;
	void	   *ptr;
	const char *help;
} config_key;

static const config_key config_keys[] = {
	{"listen", C_STR, &cfg.listen, "IPv4 address to listen on"},
	{"port", C_INT, &cfg.port, "HTTP port"},
	{"conninfo", C_STR, &cfg.conninfo, "libpq connection string or URI"},
	{"pool_size", C_INT, &cfg.pool_size, "Postgres connections"},
	{"acquire_timeout", C_MS_INT, &cfg.acquire_timeout_ms, "seconds a request waits for a connection"},
	{"max_connections", C_INT, &cfg.max_connections, "HTTP connections at once"},
	{"max_body", C_LONG, &cfg.max_body, "largest request body in bytes"},
	{"max_connections_per_address", C_INT, &cfg.max_connections_per_address, "HTTP connections at once from one client address (0: no limit)"},
	{"idle_timeout", C_INT, &cfg.idle_timeout, "seconds a connection may take to send a request's headers, then its body, then to read the answer, or stay idle"},
	{"max_wait", C_MS, &cfg.max_wait_ms, "longest long-poll wait in seconds"},
	{"stream_wait", C_MS, &cfg.stream_wait_ms, "seconds between SSE keep-alives"},
	{"max_streams", C_INT, &cfg.max_streams, "event streams open at once (more: 503)"},
	{"shutdown_grace", C_INT, &cfg.shutdown_grace, "seconds in-flight requests get at SIGTERM"},
	{"jwt_secret", C_STR, &cfg.jwt_secret, "HS256 secret (32+ characters)"},
	{"token_file", C_STR, &cfg.token_file, "file of \"token role\" lines"},
	{"anon_role", C_STR, &cfg.anon_role, "role of requests without a token (none: 401)"},
	{"metrics_role", C_STR, &cfg.metrics_role, "role /metrics reads queue gauges as (none: the login role)"},
	{"metrics_token", C_STR, &cfg.metrics_token, "/metrics needs Authorization: Bearer <this> (16+ characters; none: open)"},
	{"access_log", C_STR, &cfg.access_log, "file for the JSON access log, - for stderr, off"},
	{"ui_dir", C_STR, &cfg.ui_dir, "folder of the web console's files, served at /ui (off: no console)"},
	{"read_only", C_BOOL, &cfg.read_only, "on: every token is read-only (only routes that read)"},
	{"router", C_STR, &cfg.router, "cluster mode: libpq connection string of the router database"},
	{"shard_conninfo", C_STR, &cfg.shard_conninfo, "cluster: libpq options for shard connections (win over the map's)"},
	{"shard_pool_size", C_INT, &cfg.shard_pool_size, "cluster: connections per shard (0: pool_size)"},
	{"statement_timeout", C_MS_INT, &cfg.statement_timeout_ms, "cluster: seconds a statement's answer may take"},
	{"request_timeout", C_MS_INT, &cfg.request_timeout_ms, "cluster: seconds a request may take beyond its wait"},
	{"connect_timeout", C_MS_INT, &cfg.connect_timeout_ms, "cluster: seconds a connection attempt to one host may take"},
	{"map_refresh", C_MS_INT, &cfg.map_refresh_ms, "cluster: seconds between reads of the partition map"},
	{"poll_slice", C_MS_INT, &cfg.poll_slice_ms, "cluster: seconds a long poll waits on one partition at a time"},
	{"max_batch", C_INT, &cfg.max_batch, "cluster: most messages of a batch send, ids of a batch ack (as deliver.max_batch_size)"},
	{NULL, 0, NULL, NULL}
};

/* Set one setting from its text; where says where it came from, for errors. */
static int
config_set(const char *key, const char *val, const char *where)
{
	const config_key *k;

	for (k = config_keys; k->key; k++)
	{
		char	   *end;
		double		d;

		if (strcmp(k->key, key) != 0)
			continue;
		switch (k->type)
		{
			case C_STR:
				*(char **) k->ptr = strdup(val);
				return 0;
			case C_INT:
			case C_LONG:
				errno = 0;
				d = (double) strtol(val, &end, 10);
				if (errno || *end || !*val || d < 0)
					break;
				if (k->type == C_INT)
					*(int *) k->ptr = (int) d;
				else
					*(long *) k->ptr = (long) d;
				return 0;
			case C_MS:
			case C_MS_INT:
				d = strtod(val, &end);
				if (*end || !*val || d < 0 || d > 86400)
					break;
				if (k->type == C_MS_INT)
					*(int *) k->ptr = (int) (d * 1000);
				else
					*(long *) k->ptr = (long) (d * 1000);
				return 0;
			case C_BOOL:
				if (strcasecmp(val, "on") == 0 || strcasecmp(val, "true") == 0 || strcmp(val, "1") == 0)
					*(bool *) k->ptr = true;
				else if (strcasecmp(val, "off") == 0 || strcasecmp(val, "false") == 0 ||
						 strcmp(val, "0") == 0)
					*(bool *) k->ptr = false;
				else
					break;
				return 0;
		}
		fprintf(stderr, "deliverd: %s: bad value for %s: %s\n", where, key, val);
		return -1;
	}
	fprintf(stderr, "deliverd: %s: unknown setting %s\n", where, key);
	return -1;
}

/* s without the blanks around it (cut in place) */
static char *
trim(char *s)
{
	char	   *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
		*--e = '\0';
	return s;
}

/* key = value lines; # comments; values may be quoted with '' or "" */
int
config_file(const char *path)
{
	FILE	   *f = fopen(path, "r");
	char		line[4096];
	int			lineno = 0;

	if (!f)
	{
		fprintf(stderr, "deliverd: cannot open %s: %s\n", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f))
	{
		char	   *eq,
				   *k,
				   *v,
					where[600];
		size_t		n;

		lineno++;
		k = trim(line);
		if (!*k || *k == '#')
			continue;
		eq = strchr(k, '=');
		if (!eq)
		{
			fprintf(stderr, "deliverd: %s:%d: expected key = value\n", path, lineno);
			fclose(f);
			return -1;
		}
		*eq = '\0';
		k = trim(k);
		v = trim(eq + 1);
		n = strlen(v);
		if (n >= 2 && (v[0] == '\'' || v[0] == '"') && v[n - 1] == v[0])
		{
			v[n - 1] = '\0';
			v++;
		}
		snprintf(where, sizeof(where), "%s:%d", path, lineno);
		if (config_set(k, v, where) != 0)
		{
			fclose(f);
			return -1;
		}
	}
	fclose(f);
	return 0;
}

/* DELIVERD_<KEY> environment variables override the file */
int
config_env(void)
{
	const config_key *k;

	for (k = config_keys; k->key; k++)
	{
		char		name[64];
		const char *v;
		int			i;

		snprintf(name, sizeof(name), "DELIVERD_%s", k->key);
		for (i = 9; name[i]; i++)
			name[i] = (char) (name[i] >= 'a' && name[i] <= 'z' ? name[i] - 32 : name[i]);
		v = getenv(name);
		if (v && config_set(k->key, v, name) != 0)
			return -1;
	}
	return 0;
}

/*
 * The settings together, once read: the numbers that must be positive, the
 * credential settings (checked and loaded by auth_init), metrics_role.
 */
int
config_check(void)
{
	if (cfg.pool_size < 1 || cfg.port < 1 || cfg.port > 65535 || cfg.max_connections < 1)
	{
		fprintf(stderr, "deliverd: pool_size, port and max_connections must be positive\n");
		return -1;
	}
	if (auth_init(cfg.jwt_secret, cfg.token_file, cfg.anon_role) != 0)
		return -1;
	if (cfg.router && !*cfg.router)
		cfg.router = NULL;
	if (cfg.router && (cfg.statement_timeout_ms < 100 || cfg.request_timeout_ms < cfg.statement_timeout_ms ||
					   cfg.connect_timeout_ms < 100 || cfg.map_refresh_ms < 100 || cfg.poll_slice_ms < 10 ||
					   cfg.max_batch < 1))
	{
		fprintf(stderr, "deliverd: statement_timeout, connect_timeout and map_refresh must be at least "
				"0.1 s, poll_slice 0.01 s, max_batch 1, and request_timeout at least statement_timeout\n");
		return -1;
	}
	if (cfg.shard_pool_size == 0)
		cfg.shard_pool_size = cfg.pool_size;
	/* metrics_token none (or empty): /metrics is open */
	if (cfg.metrics_token && (!*cfg.metrics_token || strcasecmp(cfg.metrics_token, "none") == 0))
		cfg.metrics_token = NULL;
	if (cfg.metrics_token && strlen(cfg.metrics_token) < 16)
	{
		fprintf(stderr, "deliverd: metrics_token must have 16 characters or more (none: /metrics is open)\n");
		return -1;
	}
	/* metrics_role none (or empty): the login role */
	if (cfg.metrics_role && (!*cfg.metrics_role || strcasecmp(cfg.metrics_role, "none") == 0))
		cfg.metrics_role = NULL;
	if (cfg.metrics_role &&
		(strlen(cfg.metrics_role) > ROLE_MAX_LEN || auth_role_reserved(cfg.metrics_role)))
	{
		fprintf(stderr, "deliverd: metrics_role %s is reserved or longer than %d bytes "
				"(none means the login role)\n", cfg.metrics_role, ROLE_MAX_LEN);
		return -1;
	}
	return 0;
}

void
config_print_keys(FILE *f)
{
	const config_key *k;

	for (k = config_keys; k->key; k++)
		fprintf(f, "  %-17s %s\n", k->key, k->help);
}
