/*
 * deliverd: request routing and query parameter parsing.  Pure functions
 * (no I/O), so the fuzz target (fuzz/fuzz_router.c) can drive them directly.
 */
#include "router.h"
#include "globalid.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const route_names[R__COUNT] = {
	[R_NOT_FOUND] = "not_found",
	[R_HEALTHZ] = "healthz",
	[R_READYZ] = "readyz",
	[R_METRICS] = "metrics",
	[R_OPENAPI] = "openapi",
	[R_UI] = "ui",
	[R_QUEUES_LIST] = "queues_list",
	[R_QUEUE_CREATE] = "queue_create",
	[R_QUEUE_GET] = "queue_get",
	[R_QUEUE_DROP] = "queue_drop",
	[R_GROUPS_LIST] = "groups_list",
	[R_GROUP_CREATE] = "group_create",
	[R_GROUP_DROP] = "group_drop",
	[R_SEND] = "send",
	[R_SEND_BATCH] = "send_batch",
	[R_RECEIVE] = "receive",
	[R_ACK_BATCH] = "ack_batch",
	[R_ACK] = "ack",
	[R_NACK] = "nack",
	[R_EXTEND] = "extend",
	[R_DEAD_LETTERS] = "dead_letters",
	[R_REDRIVE] = "redrive",
	[R_QUEUE_METRICS] = "queue_metrics",
	[R_STREAM] = "stream",
	[R_PEEK] = "peek",
	[R_DEAD_LETTERS_DELETE] = "dead_letters_delete",
	[R_ALL_QUEUE_METRICS] = "all_queue_metrics",
	[R_ALERTS] = "alerts",
	[R_WORKERS] = "workers",
	[R_PUSH_SUBSCRIPTIONS] = "push_subscriptions",
	[R_WHOAMI] = "whoami",
	[R_GROUP_PAUSE] = "group_pause",
	[R_GROUP_RESUME] = "group_resume",
	[R_GROUP_RATE] = "group_rate",
	[R_FIFO_KEY_LIMIT] = "fifo_key_limit",
	[R_PUBLISH] = "publish",
	[R_BINDINGS_LIST] = "bindings_list",
	[R_BINDING_CREATE] = "binding_create",
	[R_BINDING_DELETE] = "binding_delete",
	[R_ROUTING] = "routing",
	[R_MESSAGE_DELETE] = "message_delete",
	[R_GROUP_RESET] = "group_reset",
	[R_GROUP_REPLAY] = "group_replay",
	[R_QUEUE_ALTER] = "queue_alter",
};

static bool cluster_ids;

void
route_set_cluster(bool on)
{
	cluster_ids = on;
}

bool
route_needs_auth(route_id id)
{
	return id >= R_QUEUES_LIST && id < R__COUNT;
}

/*
 * The routes that only read.  Receive and the stream lease (and the stream
 * acks), so they are not among them.
 */
bool
route_is_read_only(route_id id)
{
	switch (id)
	{
		case R_QUEUES_LIST:
		case R_QUEUE_GET:
		case R_GROUPS_LIST:
		case R_DEAD_LETTERS:
		case R_QUEUE_METRICS:
		case R_PEEK:
		case R_ALL_QUEUE_METRICS:
		case R_ALERTS:
		case R_WORKERS:
		case R_PUSH_SUBSCRIPTIONS:
		case R_WHOAMI:
		case R_BINDINGS_LIST:
		case R_ROUTING:
			return true;
		default:
			return id < R_QUEUES_LIST;
	}
}

bool
valid_ui_file(const char *s)
{
	size_t		i;

	if (!s || !isalnum((unsigned char) s[0]))
		return false;
	for (i = 0; s[i]; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (i >= UI_FILE_MAX_LEN || !(isalnum(c) || c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

/*
 * Queue and group names: the gateway only checks that a name fits (1-63
 * bytes, the longest name deliver has).  Which characters a name may have is
 * deliver's rule: a name it does not allow names no queue (404) or is
 * refused by create (400, 42602), in the database's words.
 */
bool
valid_name(const char *s)
{
	size_t		n = s ? strlen(s) : 0;

	return n > 0 && n <= NAME_MAX_LEN;
}

/*
 * Split path into at most 8 segments (each cut to SEG_LEN - 1 bytes, its
 * full length in lens); returns the count, -1 when malformed.
 */
#define MAX_SEGS 8
#define SEG_LEN 128
static int
split_path(const char *path, char segs[MAX_SEGS][SEG_LEN], size_t lens[MAX_SEGS])
{
	int			n = 0;
	const char *p = path;

	if (*p != '/')
		return -1;
	while (*p)
	{
		const char *start;
		size_t		len;

		while (*p == '/')
			p++;
		if (!*p)
			break;				/* trailing slash */
		start = p;
		while (*p && *p != '/')
			p++;
		len = (size_t) (p - start);
		if (n >= MAX_SEGS)
			return -1;
		lens[n] = len;
		if (len >= SEG_LEN)
			len = SEG_LEN - 1;
		memcpy(segs[n], start, len);
		segs[n][len] = '\0';
		n++;
	}
	return n;
}

/* method is want */
static bool
is_method(const char *m, const char *want)
{
	return strcmp(m, want) == 0;
}

/* Pick the route for the method among alternatives on one path. */
static int
pick(route_match *m, const char *method, const char *get, route_id rget,
	 const char *other, route_id rother)
{
	if (get && is_method(method, get))
		m->id = rget;
	else if (other && is_method(method, other))
		m->id = rother;
	/* HEAD as GET, but for the stream: its first receive would lease messages nobody gets */
	else if (get && strcmp(get, "GET") == 0 && rget != R_STREAM && is_method(method, "HEAD"))
		m->id = rget;
	else
		return m->status = 405;
	return m->status = 0;
}

/*
 * The routes of the paths that differ in one segment: for each, the route
 * of a method and of a second method, if the path has one.
 */
typedef struct
{
	const char *segment;
	const char *method;
	route_id	route;
	const char *other_method;
	route_id	other_route;
} path_routes;

/* /SEGMENT */
static const path_routes top_routes[] = {
	{"healthz", "GET", R_HEALTHZ, NULL, 0},
	{"readyz", "GET", R_READYZ, NULL, 0},
	{"metrics", "GET", R_METRICS, NULL, 0},
	{"openapi.json", "GET", R_OPENAPI, NULL, 0},
	{NULL, NULL, 0, NULL, 0}
};

/* /v1/SEGMENT but queues */
static const path_routes v1_routes[] = {
	{"metrics", "GET", R_ALL_QUEUE_METRICS, NULL, 0},
	{"alerts", "GET", R_ALERTS, NULL, 0},
	{"workers", "GET", R_WORKERS, NULL, 0},
	{"push-subscriptions", "GET", R_PUSH_SUBSCRIPTIONS, NULL, 0},
	{"whoami", "GET", R_WHOAMI, NULL, 0},
	{"publish", "POST", R_PUBLISH, NULL, 0},
	{"bindings", "GET", R_BINDINGS_LIST, "POST", R_BINDING_CREATE},
	{"routing", "GET", R_ROUTING, NULL, 0},
	{NULL, NULL, 0, NULL, 0}
};

/* /v1/queues/{queue}/SEGMENT */
static const path_routes queue_routes[] = {
	{"groups", "GET", R_GROUPS_LIST, "POST", R_GROUP_CREATE},
	{"messages", "POST", R_SEND, NULL, 0},
	{"receive", "POST", R_RECEIVE, NULL, 0},
	{"ack", "POST", R_ACK_BATCH, NULL, 0},
	{"dead-letters", "GET", R_DEAD_LETTERS, "DELETE", R_DEAD_LETTERS_DELETE},
	{"peek", "GET", R_PEEK, NULL, 0},
	{"redrive", "POST", R_REDRIVE, NULL, 0},
	{"metrics", "GET", R_QUEUE_METRICS, NULL, 0},
	{"stream", "GET", R_STREAM, NULL, 0},
	{"fifo-key-limit", "PUT", R_FIFO_KEY_LIMIT, NULL, 0},
	{NULL, NULL, 0, NULL, 0}
};

/* /v1/queues/{queue}/deliveries/{delivery_id}/SEGMENT */
static const path_routes delivery_routes[] = {
	{"ack", "POST", R_ACK, NULL, 0},
	{"nack", "POST", R_NACK, NULL, 0},
	{"extend", "POST", R_EXTEND, NULL, 0},
	{NULL, NULL, 0, NULL, 0}
};

/* /v1/queues/{queue}/groups/{group}/SEGMENT: flow control */
static const path_routes group_routes[] = {
	{"pause", "POST", R_GROUP_PAUSE, NULL, 0},
	{"resume", "POST", R_GROUP_RESUME, NULL, 0},
	{"rate", "PUT", R_GROUP_RATE, NULL, 0},
	{"reset", "POST", R_GROUP_RESET, NULL, 0},
	{"replay", "POST", R_GROUP_REPLAY, NULL, 0},
	{NULL, NULL, 0, NULL, 0}
};

/* the entry of table for segment, NULL when it has none */
static const path_routes *
find_segment(const path_routes *table, const char *segment)
{
	for (; table->segment; table++)
		if (strcmp(table->segment, segment) == 0)
			return table;
	return NULL;
}

/* Pick the route of the method among those of one path (404 when none). */
static int
pick_in(route_match *m, const char *method, const path_routes *p)
{
	if (!p)
		return m->status;
	return pick(m, method, p->method, p->route, p->other_method, p->other_route);
}

/* Copy a name from the path into dst; 400 when it is no valid name. */
static int
set_name(route_match *m, char *dst, const char *src, size_t len)
{
	if (len > NAME_MAX_LEN || !valid_name(src))
		return m->status = 400;
	strcpy(dst, src);
	return 0;
}

/* A 64-bit decimal integer (the range of bigint), normalised into out. */
static bool
parse_id(const char *s, char *out, size_t cap)
{
	long long	v;
	char	   *end;

	if (!(isdigit((unsigned char) s[0]) || (s[0] == '-' && isdigit((unsigned char) s[1]))))
		return false;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || *end)
		return false;
	snprintf(out, cap, "%lld", v);
	return true;
}

/*
 * The route of method and path: /healthz, /readyz, /metrics, /openapi.json
 * and /v1/queues[/{queue}[/...]].  A name or id that is no valid one is a
 * 400 as soon as its segment is read.
 */
int
route_request(const char *method, const char *path, route_match *m)
{
	char		segs[MAX_SEGS][SEG_LEN];
	size_t		lens[MAX_SEGS];
	int			n;

	memset(m, 0, sizeof(*m));
	m->id = R_NOT_FOUND;
	m->status = 404;
	if (!method || !path)
		return m->status;
	n = split_path(path, segs, lens);
	if (n < 1)
		return m->status;

	/* the console: /ui (its page) and /ui/NAME (its files) */
	if (strcmp(segs[0], "ui") == 0 && n <= 2)
	{
		if (n == 2 && (lens[1] > UI_FILE_MAX_LEN || !valid_ui_file(segs[1])))
			return m->status;
		if (n == 2)
			strcpy(m->file, segs[1]);
		return pick(m, method, "GET", R_UI, NULL, 0);
	}
	if (n == 1)
		return pick_in(m, method, find_segment(top_routes, segs[0]));
	if (strcmp(segs[0], "v1") != 0)
		return m->status;
	/* /v1/bindings takes a third method: DELETE (GET and POST in v1_routes) */
	if (n == 2 && strcmp(segs[1], "bindings") == 0 && is_method(method, "DELETE"))
	{
		m->id = R_BINDING_DELETE;
		return m->status = 0;
	}
	if (n == 2 && strcmp(segs[1], "queues") != 0)
		return pick_in(m, method, find_segment(v1_routes, segs[1]));
	if (strcmp(segs[1], "queues") != 0)
		return m->status;
	if (n == 2)
		return pick(m, method, "GET", R_QUEUES_LIST, "POST", R_QUEUE_CREATE);
	if (set_name(m, m->queue, segs[2], lens[2]))
		return m->status;
	if (n == 3)
	{
		if (is_method(method, "PATCH"))
		{
			m->id = R_QUEUE_ALTER;
			return m->status = 0;
		}
		return pick(m, method, "GET", R_QUEUE_GET, "DELETE", R_QUEUE_DROP);
	}
	if (n == 4)
		return pick_in(m, method, find_segment(queue_routes, segs[3]));
	if (n == 5)
	{
		if (strcmp(segs[3], "groups") == 0)
		{
			if (set_name(m, m->group, segs[4], lens[4]))
				return m->status;
			return pick(m, method, "DELETE", R_GROUP_DROP, NULL, 0);
		}
		if (strcmp(segs[3], "messages") == 0 && strcmp(segs[4], "batch") == 0)
			return pick(m, method, "POST", R_SEND_BATCH, NULL, 0);
		/* /v1/queues/{queue}/messages/{message_id}: a bigint (cluster mode: partition:epoch:id) */
		if (strcmp(segs[3], "messages") == 0)
		{
			int64_t		local;

			if (lens[4] >= sizeof(m->delivery_id))
				return m->status = 400;
			if (cluster_ids ? !parse_global_id(segs[4], &m->id_partition, &m->id_epoch, &local,
											   m->delivery_id, sizeof(m->delivery_id))
				: !parse_id(segs[4], m->delivery_id, sizeof(m->delivery_id)))
				return m->status = 400;
			return pick(m, method, "DELETE", R_MESSAGE_DELETE, NULL, 0);
		}
		return m->status;
	}
	if (n == 6 && strcmp(segs[3], "groups") == 0)
	{
		const path_routes *action = find_segment(group_routes, segs[5]);

		if (!action)
			return m->status;
		if (set_name(m, m->group, segs[4], lens[4]))
			return m->status;
		return pick_in(m, method, action);
	}
	if (n == 6 && strcmp(segs[3], "deliveries") == 0)
	{
		const path_routes *action = find_segment(delivery_routes, segs[5]);

		if (!action)
			return m->status;
		/* a delivery id: any bigint (which ones exist is deliver's answer) */
		if (lens[4] >= sizeof(m->delivery_id))
			return m->status = 400;
		if (cluster_ids)
		{
			int64_t		local;

			if (!parse_global_id(segs[4], &m->id_partition, &m->id_epoch, &local,
								 m->delivery_id, sizeof(m->delivery_id)))
				return m->status = 400;
		}
		else if (!parse_id(segs[4], m->delivery_id, sizeof(m->delivery_id)))
			return m->status = 400;
		return pick_in(m, method, action);
	}
	return m->status;
}

bool
parse_int_range(const char *s, long lo, long hi, long *out)
{
	char	   *end;
	long		v;

	if (!s || !*s || isspace((unsigned char) *s))
		return false;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

bool
parse_int(const char *s, long *out)
{
	return parse_int_range(s, LONG_MIN, LONG_MAX, out);
}

/*
 * Seconds as a decimal with an optional sign ("5", "0.25", "-1"), stored in
 * ms (digits past the third decimal are dropped).  Only the syntax is
 * checked, and that the value fits: its range is the database's answer.
 */
bool
parse_seconds(const char *s, long *out_ms)
{
	long		whole = 0;
	long		frac = 0;
	int			digits = 0;
	int			fdigits = 0;
	bool		neg = false;
	const char *p = s;

	if (!s || !*s)
		return false;
	if (*p == '-' || *p == '+')
		neg = *p++ == '-';
	for (; *p >= '0' && *p <= '9'; p++)
	{
		whole = whole * 10 + (*p - '0');
		if (++digits > 12)
			return false;
	}
	if (*p == '.')
	{
		p++;
		for (; *p >= '0' && *p <= '9'; p++)
		{
			if (fdigits < 3)
			{
				frac = frac * 10 + (*p - '0');
				fdigits++;
			}
			else if (++fdigits > 15)
				return false;
		}
		if (fdigits == 0)
			return false;
	}
	if (*p || digits == 0)
		return false;
	while (fdigits < 3)
	{
		frac *= 10;
		fdigits++;
	}
	*out_ms = (whole * 1000 + frac) * (neg ? -1 : 1);
	return true;
}

/*
 * The gateway checks what it needs to build the call: integers and seconds
 * parse, a group name fits; and wait is from 0 to max_wait, the gateway's
 * own limit (a long poll holds a pooled connection, and in cluster mode the
 * wait is part of the request's deadline).  Everything else (max from
 * 1 to deliver.max_batch_size, the visibility timeout's range, whether the
 * group exists) is deliver's answer, mapped from its SQLSTATE.
 */
const char *
parse_receive_params(param_getter get, void *ctx, long max_wait_ms,
					 int default_max, receive_params *p)
{
	const char *v;

	memset(p, 0, sizeof(*p));
	p->max = default_max;
	if ((v = get(ctx, "max")) != NULL && !parse_int(v, &p->max))
		return "max must be an integer";
	if ((v = get(ctx, "visibility_timeout")) != NULL)
	{
		if (!parse_seconds(v, &p->vt_ms))
			return "visibility_timeout must be a number of seconds";
		p->has_vt = true;
	}
	if ((v = get(ctx, "wait")) != NULL)
	{
		if (!parse_seconds(v, &p->wait_ms))
			return "wait must be a number of seconds";
		if (p->wait_ms < 0 || p->wait_ms > max_wait_ms)
			return "wait must be from 0 to the gateway's max_wait seconds";
	}
	if ((v = get(ctx, "group")) != NULL)
	{
		if (!valid_name(v))
			return "group must be " NAME_RULE;
		strcpy(p->group, v);
		p->has_group = true;
	}
	return NULL;
}

/*
 * The query arguments of a listing (dead letters, peek): group, a name
 * (NULL when missing), and max, an integer (dflt when missing), written
 * into max.  Returns NULL when fine, else a message for a 400 answer.
 */
const char *
parse_group_and_max(param_getter get, void *ctx, long dflt, const char **group, char *max, size_t cap)
{
	const char *mx = get(ctx, "max");
	long		n = dflt;

	*group = get(ctx, "group");
	if (*group && !valid_name(*group))
		return "group must be " NAME_RULE;
	if (mx && !parse_int(mx, &n))
		return "max must be an integer";
	snprintf(max, cap, "%ld", n);
	return NULL;
}
