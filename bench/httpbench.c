/*
 * httpbench: send + receive + ack through deliverd (HTTP/JSON) or directly
 * through libpq (SQL), with the same threads and message flow, to measure
 * what the gateway costs.
 *
 *   httpbench --mode http --url 127.0.0.1:8433 --token T --queue q [options]
 *   httpbench --mode sql --conninfo '...' --queue q [options]
 *
 * Producers send batches of --batch messages (100-byte JSON payloads that
 * carry their send time), flat out or paced at --rate msgs/s in total;
 * consumers receive up to 100 with a 1 s long poll and ack them in one call.
 * Prints one line of key=value: messages acked per second, request latency
 * percentiles per operation, and send-to-ack latency percentiles.
 *
 * An HTTP consumer takes the two fields it needs from each receive's
 * answer (delivery_id, the payload's send time) by scanning for them, as
 * the SQL consumer reads two columns; --parse jansson builds the whole
 * answer as a jansson document instead (what the bench did before: on a
 * shared 2-core machine its CPU counted against the gateway).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static const char *mode = "http";
static char host[64] = "127.0.0.1";
static int	port = 8433;
static const char *token;
static const char *conninfo = "dbname=deliver";
static const char *queue = "bench";
static int	producers = 4, consumers = 4, batch = 1, duration = 15;
static double rate;				/* 0: flat out */
static int	parse_jansson;		/* --parse jansson: a whole jansson document per answer */
static atomic_int stop_producers, stop_consumers;
static atomic_long sent, acked, errors;

typedef struct
{
	uint32_t   *v;
	size_t		n,
				cap;
} lat_t;

static void
lat_add(lat_t *l, double us)
{
	if (l->n == l->cap)
	{
		l->cap = l->cap ? l->cap * 2 : 4096;
		l->v = realloc(l->v, l->cap * sizeof(uint32_t));
	}
	l->v[l->n++] = us < 0 ? 0 : us > 4e9 ? 4000000000u : (uint32_t) us;
}

static double
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double) ts.tv_sec * 1e6 + (double) ts.tv_nsec / 1e3;
}

/* ---- a minimal HTTP/1.1 keep-alive client ---- */
typedef struct
{
	int			fd;
	char	   *buf;
	size_t		len,
				cap;
} http_t;

static int
http_connect(http_t *h)
{
	struct sockaddr_in a;
	int			one = 1;

	h->fd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t) port);
	inet_pton(AF_INET, host, &a.sin_addr);
	if (connect(h->fd, (struct sockaddr *) &a, sizeof(a)) != 0)
	{
		close(h->fd);
		h->fd = -1;
		return -1;
	}
	setsockopt(h->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	h->len = 0;
	return 0;
}

/* one request; returns the status, the body in *body (NUL-terminated, in h->buf) */
static int
http_do(http_t *h, const char *method, const char *path, const char *body, char **out)
{
	char		req[1024];
	size_t		blen = body ? strlen(body) : 0;
	int			n,
				attempt;

	for (attempt = 0; attempt < 2; attempt++)
	{
		char	   *hdr_end = NULL;
		long		clen = -1;
		int			status = 0;

		if (h->fd < 0 && http_connect(h) != 0)
			return -1;
		n = snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: %s\r\n%s%s%s"
					 "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
					 method, path, host, token ? "Authorization: Bearer " : "", token ? token : "",
					 token ? "\r\n" : "", blen);
		/* header and body in one write, as a browser or curl sends them */
		{
			struct iovec iov[2] = {{req, (size_t) n}, {(void *) body, blen}};

			if (writev(h->fd, iov, blen ? 2 : 1) != (ssize_t) ((size_t) n + blen))
				goto retry;
		}
		h->len = 0;
		for (;;)
		{
			ssize_t		r;

			if (h->cap - h->len < 65536)
			{
				h->cap = h->cap ? h->cap * 2 : 131072;
				h->buf = realloc(h->buf, h->cap);
			}
			r = read(h->fd, h->buf + h->len, h->cap - h->len - 1);
			if (r <= 0)
				goto retry;
			h->len += (size_t) r;
			h->buf[h->len] = '\0';
			if (!hdr_end && (hdr_end = strstr(h->buf, "\r\n\r\n")))
			{
				char	   *cl = strcasestr(h->buf, "\r\nContent-Length:");

				status = atoi(h->buf + 9);
				clen = cl && cl < hdr_end ? atol(cl + 17) : 0;
			}
			if (hdr_end && h->len >= (size_t) (hdr_end + 4 - h->buf) + (size_t) clen)
			{
				*out = hdr_end + 4;
				return status;
			}
		}
retry:
		close(h->fd);
		h->fd = -1;
	}
	return -1;
}

/* ---- producers ---- */
typedef struct
{
	int			id;
	lat_t		send_lat,
				recv_lat,
				ack_lat,
				e2e;
} worker_t;

static void
payload(char *dst, size_t cap, double t)
{
	/* about 100 bytes */
	snprintf(dst, cap, "{\"t\":%.0f,\"pad\":\"%s\"}", t,
			 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
}

/* A worker's database connection (sql mode); exits when it fails. */
static PGconn *
sql_connect(void)
{
	PGconn	   *c = PQconnectdb(conninfo);

	if (PQstatus(c) != CONNECTION_OK)
	{
		fprintf(stderr, "httpbench: %s", PQerrorMessage(c));
		exit(1);
	}
	return c;
}

/* Closes what a worker opened: its database connection, its HTTP socket. */
static void
worker_close(http_t *h, PGconn *c)
{
	if (c)
		PQfinish(c);
	if (h->fd >= 0)
		close(h->fd);
	free(h->buf);
}

static void *
producer(void *arg)
{
	worker_t   *w = arg;
	http_t		h = {.fd = -1};
	PGconn	   *c = NULL;
	char	   *body = malloc((size_t) batch * 160 + 64);
	char		path[256];
	double		next = now_us();
	double		per = rate > 0 ? 1e6 * batch / (rate / producers) : 0;

	if (strcmp(mode, "sql") == 0)
		c = sql_connect();
	snprintf(path, sizeof(path), "/v1/queues/%s/messages%s", queue, batch > 1 ? "/batch" : "");
	while (!atomic_load(&stop_producers))
	{
		double		t0;
		size_t		off = 0;
		int			i,
					ok;

		if (per > 0)
		{
			double		now = now_us();

			if (now < next)
				usleep((useconds_t) (next - now));
			next += per;
		}
		t0 = now_us();
		if (batch == 1 && strcmp(mode, "http") == 0)
		{
			char		p[160];

			payload(p, sizeof(p), t0);
			off = (size_t) sprintf(body, "{\"payload\":%s}", p);
		}
		else
		{
			off += (size_t) sprintf(body + off, strcmp(mode, "http") == 0 ? "{\"messages\":[" : "[");
			for (i = 0; i < batch; i++)
			{
				char		p[160];

				payload(p, sizeof(p), t0);
				off += (size_t) sprintf(body + off, strcmp(mode, "http") == 0 ? "%s{\"payload\":%s}" : "%s%s",
										i ? "," : "", p);
			}
			sprintf(body + off, strcmp(mode, "http") == 0 ? "]}" : "]");
		}
		if (strcmp(mode, "http") == 0)
		{
			char	   *resp;

			ok = http_do(&h, "POST", path, body, &resp) == 201;
		}
		else
		{
			const char *params[2] = {queue, body};
			PGresult   *r;

			if (batch == 1)
			{
				char		p[160];

				payload(p, sizeof(p), t0);
				params[1] = p;
				r = PQexecParams(c, "SELECT deliver.send($1, $2::jsonb)", 2, NULL, params, NULL, NULL, 0);
			}
			else
				r = PQexecParams(c, "SELECT deliver.send_batch($1, ARRAY(SELECT jsonb_array_elements($2::jsonb)))",
								 2, NULL, params, NULL, NULL, 0);
			ok = PQresultStatus(r) == PGRES_TUPLES_OK;
			if (!ok)
				fprintf(stderr, "httpbench: send: %s", PQerrorMessage(c));
			PQclear(r);
		}
		lat_add(&w->send_lat, now_us() - t0);
		if (ok)
			atomic_fetch_add(&sent, batch);
		else
			atomic_fetch_add(&errors, 1);
	}
	free(body);
	worker_close(&h, c);
	return NULL;
}

/*
 * The two fields a consumer needs from a receive's answer, found without
 * building the whole document (as a SQL consumer reads two columns): each
 * message's "delivery_id" (a string of digits, appended to the ack body
 * at *off) and its payload's "t".  The messages this bench sends have no
 * ordering keys or headers, so these names occur nowhere else.  Returns
 * how many messages there were (at most 100).
 */
static int
scan_received(const char *resp, char *ackbody, size_t *off, double *ts)
{
	static const char key[] = "\"delivery_id\":\"";
	const char *p = resp;
	int			n = 0;

	while (n < 100 && (p = strstr(p, key)))
	{
		const char *id = p + sizeof(key) - 1;
		size_t		len = strspn(id, "0123456789");
		const char *t;

		if (len == 0 || len > 20 || id[len] != '"')
			break;
		*off += (size_t) sprintf(ackbody + *off, "%s\"%.*s\"", n ? "," : "", (int) len, id);
		t = strstr(id + len, "\"t\":");
		ts[n++] = t ? strtod(t + 4, NULL) : 0;
		p = id + len;
	}
	return n;
}

static void *
consumer(void *arg)
{
	worker_t   *w = arg;
	http_t		h = {.fd = -1};
	PGconn	   *c = NULL;
	char		rpath[256],
				apath[256];
	char	   *ackbody = malloc(100 * 26 + 64);
	int			empty = 0;

	if (strcmp(mode, "sql") == 0)
		c = sql_connect();
	snprintf(rpath, sizeof(rpath), "/v1/queues/%s/receive?max=100&wait=1", queue);
	snprintf(apath, sizeof(apath), "/v1/queues/%s/ack", queue);
	while (!atomic_load(&stop_consumers))
	{
		double		t0 = now_us(),
					t1;
		double		ts[100];
		int			n = 0,
					i;
		size_t		off;

		off = (size_t) sprintf(ackbody, strcmp(mode, "http") == 0 ? "{\"delivery_ids\":[" : "{");
		if (strcmp(mode, "http") == 0)
		{
			char	   *resp;
			json_t	   *arr;
			size_t		k;
			json_t	   *m;

			if (http_do(&h, "POST", rpath, NULL, &resp) != 200)
			{
				atomic_fetch_add(&errors, 1);
				continue;
			}
			if (parse_jansson)
			{
				arr = json_loads(resp, 0, NULL);
				json_array_foreach(arr, k, m)
				{
					const char *did = json_string_value(json_object_get(m, "delivery_id"));

					if (n >= 100 || !did || strlen(did) > 20)
						break;
					/* ids are strings over JSON, handed back as they came */
					off += (size_t) sprintf(ackbody + off, "%s\"%s\"", n ? "," : "", did);
					ts[n++] = json_number_value(json_object_get(json_object_get(m, "payload"), "t"));
				}
				json_decref(arr);
			}
			else
				n = scan_received(resp, ackbody, &off, ts);
			sprintf(ackbody + off, "]}");
		}
		else
		{
			const char *params[1] = {queue};
			PGresult   *r = PQexecParams(c, "SELECT delivery_id, (payload->>'t')::float8 FROM "
										 "deliver.receive($1, 100, wait => '1 s')", 1, NULL, params, NULL, NULL, 0);

			if (PQresultStatus(r) != PGRES_TUPLES_OK)
			{
				fprintf(stderr, "httpbench: receive: %s", PQerrorMessage(c));
				atomic_fetch_add(&errors, 1);
				PQclear(r);
				continue;
			}
			for (i = 0; i < PQntuples(r) && n < 100; i++)
			{
				off += (size_t) sprintf(ackbody + off, "%s%s", n ? "," : "", PQgetvalue(r, i, 0));
				ts[n++] = atof(PQgetvalue(r, i, 1));
			}
			PQclear(r);
			sprintf(ackbody + off, "}");
		}
		t1 = now_us();
		lat_add(&w->recv_lat, t1 - t0);
		if (n == 0)
		{
			if (atomic_load(&stop_producers) && ++empty >= 2)
				break;
			continue;
		}
		empty = 0;
		if (strcmp(mode, "http") == 0)
		{
			char	   *resp;

			if (http_do(&h, "POST", apath, ackbody, &resp) != 200)
			{
				atomic_fetch_add(&errors, 1);
				continue;
			}
		}
		else
		{
			const char *params[2] = {queue, ackbody};
			PGresult   *r = PQexecParams(c, "SELECT deliver.ack_batch($1, $2::bigint[])", 2, NULL,
										 params, NULL, NULL, 0);

			if (PQresultStatus(r) != PGRES_TUPLES_OK)
			{
				fprintf(stderr, "httpbench: ack: %s", PQerrorMessage(c));
				atomic_fetch_add(&errors, 1);
				PQclear(r);
				continue;
			}
			PQclear(r);
		}
		{
			double		t2 = now_us();

			lat_add(&w->ack_lat, t2 - t1);
			for (i = 0; i < n; i++)
				lat_add(&w->e2e, t2 - ts[i]);
		}
		atomic_fetch_add(&acked, n);
	}
	free(ackbody);
	worker_close(&h, c);
	return NULL;
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t	x = *(const uint32_t *) a,
				y = *(const uint32_t *) b;

	return x < y ? -1 : x > y;
}

/* merge one latency kind of all workers, print p50/p99 in ms */
static void
report(const char *name, worker_t *ws, int n, size_t offset)
{
	lat_t		all = {0};
	int			i;
	size_t		j;

	for (i = 0; i < n; i++)
	{
		lat_t	   *l = (lat_t *) ((char *) &ws[i] + offset);

		for (j = 0; j < l->n; j++)
			lat_add(&all, l->v[j]);
	}
	if (!all.n)
	{
		printf(" %s_p50_ms=- %s_p99_ms=-", name, name);
		return;
	}
	qsort(all.v, all.n, sizeof(uint32_t), cmp_u32);
	printf(" %s_p50_ms=%.2f %s_p99_ms=%.2f", name, all.v[all.n / 2] / 1000.0, name,
		   all.v[(size_t) ((double) all.n * 0.99)] / 1000.0);
	free(all.v);
}

int
main(int argc, char **argv)
{
	int			i;
	pthread_t  *pt,
			   *ct;
	worker_t   *pw,
			   *cw;
	double		t0,
				t1;

	for (i = 1; i + 1 < argc; i += 2)
	{
		const char *k = argv[i],
				   *v = argv[i + 1];

		if (!strcmp(k, "--mode"))
			mode = v;
		else if (!strcmp(k, "--url"))
		{
			const char *colon = strrchr(v, ':');

			snprintf(host, sizeof(host), "%.*s", (int) (colon ? colon - v : (long) strlen(v)), v);
			if (colon)
				port = atoi(colon + 1);
		}
		else if (!strcmp(k, "--token"))
			token = v;
		else if (!strcmp(k, "--conninfo"))
			conninfo = v;
		else if (!strcmp(k, "--queue"))
			queue = v;
		else if (!strcmp(k, "--producers"))
			producers = atoi(v);
		else if (!strcmp(k, "--consumers"))
			consumers = atoi(v);
		else if (!strcmp(k, "--batch"))
			batch = atoi(v);
		else if (!strcmp(k, "--duration"))
			duration = atoi(v);
		else if (!strcmp(k, "--rate"))
			rate = atof(v);
		else if (!strcmp(k, "--parse"))
			parse_jansson = !strcmp(v, "jansson");
		else
		{
			fprintf(stderr, "httpbench: unknown option %s\n", k);
			return 2;
		}
	}
	if (batch < 1 || batch > 100 || producers < 1 || consumers < 1)
	{
		fprintf(stderr, "httpbench: batch 1-100, producers and consumers >= 1\n");
		return 2;
	}
	pt = calloc((size_t) producers, sizeof(pthread_t));
	ct = calloc((size_t) consumers, sizeof(pthread_t));
	pw = calloc((size_t) producers, sizeof(worker_t));
	cw = calloc((size_t) consumers, sizeof(worker_t));
	t0 = now_us();
	for (i = 0; i < consumers; i++)
		pthread_create(&ct[i], NULL, consumer, &cw[i]);
	for (i = 0; i < producers; i++)
		pthread_create(&pt[i], NULL, producer, &pw[i]);
	sleep((unsigned) duration);
	atomic_store(&stop_producers, 1);
	for (i = 0; i < producers; i++)
		pthread_join(pt[i], NULL);
	/* consumers drain what was sent (at most 60 s more) */
	{
		double		limit = now_us() + 60e6;

		while (atomic_load(&acked) < atomic_load(&sent) && now_us() < limit)
			usleep(50000);
	}
	atomic_store(&stop_consumers, 1);
	for (i = 0; i < consumers; i++)
		pthread_join(ct[i], NULL);
	t1 = now_us();
	printf("mode=%s batch=%d producers=%d consumers=%d rate=%.0f duration=%d sent=%ld acked=%ld errors=%ld"
		   " acked_per_s=%.0f", mode, batch, producers, consumers, rate, duration,
		   atomic_load(&sent), atomic_load(&acked), atomic_load(&errors),
		   atomic_load(&acked) / ((t1 - t0) / 1e6));
	report("send", pw, producers, offsetof(worker_t, send_lat));
	report("receive", cw, consumers, offsetof(worker_t, recv_lat));
	report("ack", cw, consumers, offsetof(worker_t, ack_lat));
	report("e2e", cw, consumers, offsetof(worker_t, e2e));
	printf("\n");
	return 0;
}
