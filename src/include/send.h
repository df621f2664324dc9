/*
 * send.h
 *		Sending one message to a queue from other modules (send.c).
 */
#ifndef DELIVER_SEND_H
#define DELIVER_SEND_H

#include "deliver.h"

/*
 * One message as deliver.send takes it: payload (not NULL), headers,
 * ordering key and idempotency key (each may be NULL), delay in ms.
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
} SendOne;

extern void send_check_one(QueueInfo *q, const SendOne *m);
extern int64 send_one(QueueInfo *q, const SendOne *m);

#endif							/* DELIVER_SEND_H */
