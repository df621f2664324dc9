/*
 * deliverd: an HTTP/JSON gateway to deliver.
 *
 * libmicrohttpd serves HTTP/1.1 (keep-alive) with one thread per connection:
 * a handler may block in libpq (a long poll, an SSE stream) without holding
 * up anyone else, and max_connections bounds the threads.  Every /v1 route
 * runs one prepared statement through the pool (pool.c) as the caller's
 * role (auth.c); the SQL lives in statements.c.
 *
 * This file starts it (settings, credentials, pool, listening socket),
 * waits for SIGTERM or SIGINT on the main thread, and shuts down: the
 * requests themselves are served by http.c on libmicrohttpd's threads.
 */
#include "auth.h"
#include "cluster.h"
#include "config.h"
#include "conns.h"
#include "http.h"
#include "main.h"
#include "pool.h"
#include "statements.h"
#include "ui.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static atomic_int shutdown_requested;

/* true once a shutdown began (read by every request thread) */
bool
shutting_down(void)
{
	return atomic_load(&shutdown_requested) != 0;
}

static void
usage(void)
{
	fprintf(stderr, "usage: deliverd [-c config-file]\n"
			"settings (file: key = value; environment: DELIVERD_KEY):\n");
	config_print_keys(stderr);
}

/*
 * Settings from the command line (-c FILE), then the environment, checked;
 * credentials, the access log.  Returns -1 when all is well, else the exit
 * status.
 */
static int
startup(int argc, char **argv)
{
	int			i;

	for (i = 1; i < argc; i++)
	{
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
		{
			if (config_file(argv[++i]) != 0)
				return 2;
		}
		else
		{
			usage();
			return strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0 ? 0 : 2;
		}
	}
	if (config_env() != 0 || config_check() != 0)
		return 2;
	if (!auth_configured())
		fprintf(stderr, "deliverd: no jwt_secret, token_file or anon_role: every /v1 request gets 401\n");
	if (http_open_access_log(cfg.access_log) != 0)
		return 2;
	if (ui_init(cfg.ui_dir) != 0)
		return 2;
	return -1;
}

/*
 * Graceful shutdown: stop accepting, end long polls and streams (their
 * receive is cancelled, which frees its leases), let the other requests
 * finish within shutdown_grace, then close.
 */
static void
shutdown_gracefully(struct MHD_Daemon *d)
{
	struct timespec t0;
	MHD_socket	fd;

	fprintf(stderr, "deliverd: shutting down\n");
	atomic_store(&shutdown_requested, 1);
	fd = MHD_quiesce_daemon(d);
	if (fd != MHD_INVALID_SOCKET)
		close(fd);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (http_inflight() > 0 && elapsed(&t0) < cfg.shutdown_grace)
	{
		pool_cancel_long_polls();
		usleep(50 * 1000);
	}
	if (http_inflight() > 0)
		fprintf(stderr, "deliverd: %d requests still running after %d s\n",
				http_inflight(), cfg.shutdown_grace);
	MHD_stop_daemon(d);
	conns_stop();
	if (cluster_mode())
		cluster_shutdown();
	else
		pool_close();
	fprintf(stderr, "deliverd: stopped\n");
}

int
main(int argc, char **argv)
{
	struct MHD_Daemon *d;
	struct sockaddr_in addr;
	sigset_t	sigs;
	int			sig;
	int			rc;

	if ((rc = startup(argc, argv)) >= 0)
		return rc;
	if (cluster_mode())
	{
		/* a cluster: the partition map from the router, a pool per shard */
		route_set_cluster(true);
		if (cluster_init() != 0)
			return 1;
	}
	else if (pool_init(cfg.conninfo, cfg.pool_size, cfg.acquire_timeout_ms, statements, S__COUNT) != 0)
		return 1;

	memset(&addr, 0, sizeof(addr));
	addr.sin_family = AF_INET;
	addr.sin_port = htons((uint16_t) cfg.port);
	if (inet_pton(AF_INET, cfg.listen, &addr.sin_addr) != 1)
	{
		fprintf(stderr, "deliverd: listen must be an IPv4 address: %s\n", cfg.listen);
		return 2;
	}

	/* signals are taken by the main thread only */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
						 MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG,
						 (uint16_t) cfg.port, NULL, NULL, http_handle, NULL,
						 MHD_OPTION_EXTERNAL_LOGGER, http_log, NULL,
						 MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &addr,
						 MHD_OPTION_CONNECTION_LIMIT, (unsigned) cfg.max_connections,
						 MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned) cfg.max_connections_per_address,
						 MHD_OPTION_NOTIFY_CONNECTION, conns_notify, NULL,
						 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned) cfg.idle_timeout,
						 MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) 64 * 1024,
						 MHD_OPTION_THREAD_STACK_SIZE, (size_t) cfg.threads_stack_kb * 1024,
						 MHD_OPTION_NOTIFY_COMPLETED, http_completed, NULL,
						 MHD_OPTION_LISTENING_ADDRESS_REUSE, 1,
						 MHD_OPTION_UNESCAPE_CALLBACK, http_unescape, NULL,
						 MHD_OPTION_END);
	if (!d)
	{
		fprintf(stderr, "deliverd: cannot listen on %s:%d\n", cfg.listen, cfg.port);
		return 1;
	}
	if (conns_start() != 0)
	{
		fprintf(stderr, "deliverd: cannot start a thread\n");
		MHD_stop_daemon(d);
		return 1;
	}
	if (cluster_mode())
		fprintf(stderr, "deliverd: listening on %s:%d (cluster mode: router \"%s\", %d connections per shard)\n",
				cfg.listen, cfg.port, cfg.router, cfg.shard_pool_size);
	else
		fprintf(stderr, "deliverd: listening on %s:%d (pool %d, database \"%s\")\n", cfg.listen,
				cfg.port, cfg.pool_size, cfg.conninfo);

	sigdelset(&sigs, SIGPIPE);
	do
	{
		if (sigwait(&sigs, &sig) != 0)
			sig = SIGTERM;
	} while (sig != SIGTERM && sig != SIGINT);
	shutdown_gracefully(d);
	return 0;
}
