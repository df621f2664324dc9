/*
 * deliverd: connections that take too long to send a request, or to read
 * its answer, are cut (see conns.h).
 *
 * A connection is cut with shutdown(2) on its socket: its own thread then
 * reads the end of the stream and closes it the usual way.  The socket is
 * only touched while the connection is in the list, under the lock, and
 * libmicrohttpd reports a connection closed before it closes its socket,
 * so a number is never shut down once it may name another connection.
 */
#include "config.h"
#include "conns.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

typedef struct watch
{
	struct watch *prev;
	struct watch *next;
	int			fd;
	conn_phase	phase;
	struct timespec since;		/* when the phase began (CLOCK_MONOTONIC) */
	bool		cut;
} watch;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static watch head = {&head, &head, -1, CONN_ANSWERING, {0, 0}, false};
static pthread_t reaper;
static bool reaper_running;
static bool stopping;
static atomic_long cut_count;

static double
seconds_since(const struct timespec *t, const struct timespec *now)
{
	return (double) (now->tv_sec - t->tv_sec) + (now->tv_nsec - t->tv_nsec) / 1e9;
}

void
conns_notify(void *cls, struct MHD_Connection *c, void **socket_context,
			 enum MHD_ConnectionNotificationCode code)
{
	watch	   *w;

	(void) cls;
	if (code == MHD_CONNECTION_NOTIFY_STARTED)
	{
		const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);

		*socket_context = NULL;
		if (!ci || !(w = calloc(1, sizeof(watch))))
			return;				/* not watched: libmicrohttpd's timeout still applies */
		w->fd = ci->connect_fd;
		w->phase = CONN_HEADERS;
		clock_gettime(CLOCK_MONOTONIC, &w->since);
		pthread_mutex_lock(&lock);
		w->next = &head;
		w->prev = head.prev;
		head.prev->next = w;
		head.prev = w;
		pthread_mutex_unlock(&lock);
		*socket_context = w;
	}
	else if (code == MHD_CONNECTION_NOTIFY_CLOSED && (w = *socket_context) != NULL)
	{
		pthread_mutex_lock(&lock);
		w->prev->next = w->next;
		w->next->prev = w->prev;
		pthread_mutex_unlock(&lock);
		free(w);
		*socket_context = NULL;
	}
}

void
conns_phase(struct MHD_Connection *c, conn_phase phase)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	watch	   *w = ci ? ci->socket_context : NULL;

	if (!w)
		return;
	pthread_mutex_lock(&lock);
	w->phase = phase;
	clock_gettime(CLOCK_MONOTONIC, &w->since);
	pthread_mutex_unlock(&lock);
}

/* Every half second: cut what took longer than idle_timeout. */
static void *
reap(void *arg)
{
	(void) arg;
	pthread_mutex_lock(&lock);
	while (!stopping)
	{
		struct timespec now;
		struct timespec until;
		watch	   *w;

		clock_gettime(CLOCK_MONOTONIC, &now);
		for (w = head.next; w != &head; w = w->next)
			if (w->phase != CONN_ANSWERING && !w->cut &&
				seconds_since(&w->since, &now) > cfg.idle_timeout)
			{
				shutdown(w->fd, SHUT_RDWR);
				w->cut = true;
				atomic_fetch_add(&cut_count, 1);
			}
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += 500 * 1000 * 1000;
		if (until.tv_nsec >= 1000 * 1000 * 1000)
		{
			until.tv_sec++;
			until.tv_nsec -= 1000 * 1000 * 1000;
		}
		pthread_cond_timedwait(&wake, &lock, &until);
	}
	pthread_mutex_unlock(&lock);
	return NULL;
}

int
conns_start(void)
{
	if (pthread_create(&reaper, NULL, reap, NULL) != 0)
		return -1;
	reaper_running = true;
	return 0;
}

void
conns_stop(void)
{
	if (!reaper_running)
		return;
	pthread_mutex_lock(&lock);
	stopping = true;
	pthread_cond_signal(&wake);
	pthread_mutex_unlock(&lock);
	pthread_join(reaper, NULL);
	reaper_running = false;
}

long
conns_cut_count(void)
{
	return atomic_load(&cut_count);
}
