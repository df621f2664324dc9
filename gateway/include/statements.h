/*
 * deliverd: the SQL of every route, prepared once per pooled connection
 * (statements.c).
 */
#ifndef DELIVERD_STATEMENTS_H
#define DELIVERD_STATEMENTS_H

#include "pool.h"

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
	S_PING,
	S__COUNT
};

extern const stmt_def statements[S__COUNT];

#endif
