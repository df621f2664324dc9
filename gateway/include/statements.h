/*
 * deliverd: the SQL of every route, prepared once per pooled connection
 * (statements.c).
 */
#ifndef DELIVERD_STATEMENTS_H
#define DELIVERD_STATEMENTS_H

#include "pool.h"
#include "router.h"

/*
 * What the gateway passes for an argument a request leaves out, where the
 * deliver function refuses NULL.  These mirror the defaults of
 * deliver.receive (max_messages DEFAULT 1, consumer_group DEFAULT
 * 'default'), deliver.dead_letters (max_messages DEFAULT 100) and
 * deliver.peek (max_messages DEFAULT 10, consumer_group DEFAULT 'default'),
 * and must change with them.  They are no limits: the database checks every range.
 */
#define RECEIVE_DEFAULT_MAX			1
#define RECEIVE_DEFAULT_GROUP		"default"
#define DEAD_LETTERS_DEFAULT_MAX	100
#define PEEK_DEFAULT_MAX			10
#define PEEK_DEFAULT_GROUP			"default"

enum
{
	S_LIST_QUEUES,
	S_GET_QUEUE,
	S_CREATE_QUEUE,
	S_DROP_QUEUE,
	S_LIST_GROUPS,
	S_CREATE_GROUP,
	S_DROP_GROUP,
	S_SEND,
	S_SEND_BATCH,
	S_RECEIVE,
	S_RECEIVE_ROWS,
	S_ACK,
	S_ACK_BATCH,
	S_NACK,
	S_EXTEND,
	S_DEAD_LETTERS,
	S_REDRIVE,
	S_QUEUE_METRICS,
	S_ALL_METRICS,
	S_PEEK,
	S_DELETE_DEAD_LETTERS,
	S_ALL_QUEUE_METRICS,
	S_ALERTS,
	S_WORKERS,
	S_PUSH_SUBSCRIPTIONS,
	S_PAUSE_GROUP,
	S_RESUME_GROUP,
	S_SET_GROUP_RATE,
	S_SET_FIFO_KEY_LIMIT,
	S_PING,
	S_PUBLISH,					/* topic routing */
	S_LIST_BINDINGS,
	S_BIND,
	S_UNBIND,
	S_TEST_ROUTING,
	S_DELETE_MESSAGE,
	S_RESET_GROUP,
	S_REPLAY_ARCHIVE,
	S_ALTER_QUEUE,
	S__COUNT
};

extern const stmt_def statements[S__COUNT];

/* the text of S_RECEIVE's and S_RECEIVE_ROWS's parameters, kept by the caller */
typedef struct
{
	char		max[24];
	char		vt[40];
	char		wait[40];
	const char *p[5];			/* queue, max, visibility timeout, wait, group */
} receive_args;

/* Fill a's five parameters for a receive of queue with rp (its wait_ms as it is). */
void		receive_args_fill(receive_args *a, const char *queue, const receive_params *rp);

#endif
