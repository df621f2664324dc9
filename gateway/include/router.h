/*
 * deliverd: the routes (method and path to route), and the parsing of path
 * names and query parameters (router.c).  No I/O, so the fuzz target can
 * drive it.
 */
#ifndef DELIVERD_ROUTER_H
#define DELIVERD_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum
{
	R_NOT_FOUND = 0,
	R_HEALTHZ,
	R_READYZ,
	R_METRICS,
	R_OPENAPI,
	R_UI,						/* the console's files: no token (they hold no data) */
	R_QUEUES_LIST,
	R_QUEUE_CREATE,
	R_QUEUE_GET,
	R_QUEUE_DROP,
	R_GROUPS_LIST,
	R_GROUP_CREATE,
	R_GROUP_DROP,
	R_SEND,
	R_SEND_BATCH,
	R_RECEIVE,
	R_ACK_BATCH,
	R_ACK,
	R_NACK,
	R_EXTEND,
	R_DEAD_LETTERS,
	R_REDRIVE,
	R_QUEUE_METRICS,
	R_STREAM,
	R_PEEK,
	R_DEAD_LETTERS_DELETE,
	R_ALL_QUEUE_METRICS,
	R_ALERTS,
	R_WORKERS,
	R_PUSH_SUBSCRIPTIONS,
	R_WHOAMI,
	R_GROUP_PAUSE,
	R_GROUP_RESUME,
	R_GROUP_RATE,
	R_FIFO_KEY_LIMIT,
	R_PUBLISH,					/* topic routing */
	R_BINDINGS_LIST,
	R_BINDING_CREATE,
	R_BINDING_DELETE,
	R_ROUTING,
	R_MESSAGE_DELETE,			/* DELETE /v1/queues/{queue}/messages/{id}: id in delivery_id */
	R_GROUP_RESET,
	R_GROUP_REPLAY,				/* POST /v1/queues/{queue}/groups/{group}/replay */				/* POST /v1/queues/{queue}/groups/{group}/reset */
	R_QUEUE_ALTER,				/* PATCH /v1/queues/{queue} */
	R__COUNT
} route_id;

/*
 * The longest queue or group name (NAMEDATALEN - 1): the one name rule the
 * gateway keeps, for the names it takes from a URL; which characters a name
 * may have is deliver's rule.
 */
#define NAME_MAX_LEN 63
#define NAME_STRINGIFY(x) #x
#define NAME_XSTRINGIFY(x) NAME_STRINGIFY(x)
#define NAME_MAX_LEN_STR NAME_XSTRINGIFY(NAME_MAX_LEN)	/* "63", for messages */
/* the longest ordering or idempotency key deliver takes (DELIVER_MAX_KEY_BYTES) */
#define KEY_MAX_LEN 512
#define KEY_MAX_LEN_STR NAME_XSTRINGIFY(KEY_MAX_LEN)
#define NAME_RULE "a name of 1 to " NAME_MAX_LEN_STR " bytes"

/*
 * A file of the console (/ui/NAME): a letter or digit, then letters,
 * digits, ".", "_" and "-", at most UI_FILE_MAX_LEN bytes; so no "/", no
 * leading ".", nothing to climb out of its folder with.
 */
#define UI_FILE_MAX_LEN 63
bool		valid_ui_file(const char *s);

typedef struct
{
	route_id	id;
	int			status;			/* 0: matched; 404 or 405 otherwise; 400: name too long, id not an integer */
	char		queue[NAME_MAX_LEN + 1];
	char		group[NAME_MAX_LEN + 1];
	char		delivery_id[40];	/* a bigint, in decimal; in cluster mode partition:epoch:id;
								 * R_MESSAGE_DELETE: the message id (a bigint; in
								 * cluster mode partition:epoch:id) */
	int			id_partition;	/* cluster mode: the delivery id's partition and epoch */
	int			id_epoch;
	char		file[UI_FILE_MAX_LEN + 1];	/* R_UI: a file of the console, "" for its page */
} route_match;

extern const char *const route_names[R__COUNT];

/*
 * Cluster mode: delivery ids in paths are partition:epoch:id (a plain
 * integer is then a 400, as such an id is in single-node mode).
 */
void		route_set_cluster(bool on);

/* Match method and (decoded) path; fills m, returns m->status. */
int			route_request(const char *method, const char *path, route_match *m);

/* true for the routes that run SQL as the caller's role */
bool		route_needs_auth(route_id id);
/* true for the routes a read-only token may use: they change nothing */
bool		route_is_read_only(route_id id);

/*
 * Query parameters of receive and stream: parsed, not range-checked (the
 * database checks ranges), except wait <= max_wait_ms.
 */
typedef struct
{
	long		max;
	bool		has_vt;
	long		vt_ms;			/* visibility timeout */
	long		wait_ms;		/* long-poll wait, <= max_wait_ms */
	char		group[NAME_MAX_LEN + 1];
	bool		has_group;
} receive_params;

typedef const char *(*param_getter) (void *ctx, const char *key);

/* Returns NULL when fine, else a message for a 400 answer. */
const char *parse_receive_params(param_getter get, void *ctx, long max_wait_ms,
								 int default_max, receive_params *p);
/* The query arguments group and max (dflt when missing, written into max). */
const char *parse_group_and_max(param_getter get, void *ctx, long dflt, const char **group,
								char *max, size_t cap);
bool		valid_name(const char *s);	/* 1 to NAME_MAX_LEN bytes */
bool		parse_int_range(const char *s, long lo, long hi, long *out);
bool		parse_int(const char *s, long *out);
bool		parse_seconds(const char *s, long *out_ms);

#endif
