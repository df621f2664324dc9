/*
 * deliverd: its settings (config.c).  They come from a file of key = value
 * lines (deliverd -c FILE), then DELIVERD_<KEY> environment variables.
 */
#ifndef DELIVERD_CONFIG_H
#define DELIVERD_CONFIG_H

#include <stdbool.h>
#include <stdio.h>

typedef struct
{
	char	   *listen;
	int			port;
	char	   *conninfo;
	int			pool_size;
	int			acquire_timeout_ms;
	int			max_connections;
	int			max_connections_per_address;	/* 0: no limit */
	long		max_body;
	int			idle_timeout;		/* seconds: a request's headers, its body, or idle */
	long		max_wait_ms;
	long		stream_wait_ms;
	int			max_streams;	/* event streams open at once */
	int			shutdown_grace;		/* seconds */
	char	   *jwt_secret;
	char	   *token_file;
	char	   *anon_role;
	char	   *metrics_role;
	char	   *metrics_token;	/* /metrics needs Authorization: Bearer <it>; NULL: open */
	char	   *access_log;
	int			threads_stack_kb;
	char	   *ui_dir;			/* the console's files (/ui); empty or off: none */
	bool		read_only;		/* every token read-only */
	/* cluster mode (router set): see cluster.c */
	char	   *router;
	char	   *shard_conninfo;
	int			shard_pool_size;	/* 0: pool_size */
	int			statement_timeout_ms;
	int			request_timeout_ms;
	int			connect_timeout_ms;
	int			map_refresh_ms;
	int			poll_slice_ms;
	int			max_batch;		/* most messages or ids a batch may have (deliver.max_batch_size) */
} config_t;

extern config_t cfg;

/* Read a settings file; 0, or -1 after saying why on stderr. */
int			config_file(const char *path);
/* Apply the DELIVERD_<KEY> environment variables; 0 or -1. */
int			config_env(void);
/* Check the settings once read (ranges, reserved roles); 0 or -1. */
int			config_check(void);
/* One line per setting, its name and what it is for. */
void		config_print_keys(FILE *f);

#endif
