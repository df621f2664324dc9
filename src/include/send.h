/*
 * send.h
 *		Sending to a queue from other modules (send.c): one message, or
 *		rows read back from a queue's tables (redrive, replay).
 */
#ifndef DELIVER_SEND_H
#define DELIVER_SEND_H

#include "executor/spi.h"
#include "fmgr.h"
#include "utils/timestamp.h"

#include "deliver.h"

/*
 * One message as deliver.send takes it: payload (not NULL), headers,
 * ordering key and idempotency key (each may be NULL), delay in ms,
 * expires_at (DT_NOEND: none; see arg_expires_at), priority (0-9).
 */
typedef struct SendOne
{
	Datum		payload;
	Datum		headers;
	bool		headers_null;
	Datum		ordering_key;
	bool		ordering_key_null;
	Datum		idempotency_key;
	bool		idempotency_key_null;
	int64		delay_ms;
	TimestampTz expires_at;
	int			priority;
} SendOne;

extern TimestampTz arg_expires_at(FunctionCallInfo fcinfo, int argno);
extern int	arg_priority(FunctionCallInfo fcinfo, int argno);
extern void send_check_one(QueueInfo *q, const SendOne *m);
extern int64 send_one(QueueInfo *q, const SendOne *m);
extern void send_rows(QueueInfo *q, SPITupleTable *rows, uint64 start, int m, int first_col,
					  bool keep_enqueued_at, int32 target_group);

#endif							/* DELIVER_SEND_H */
