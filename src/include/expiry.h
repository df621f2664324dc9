/*
 * expiry.h
 *		Message expiry: a message's deadline (expiry.c).
 *
 * A message's deadline is the earlier of the sender's expires_at and its
 * enqueued_at plus the queue's message_ttl.  A receive meets an expired
 * message instead of handing it out, and finishes it for the group: to
 * the dead letters with reason 'expired', or dropped (on_expire).
 */
#ifndef DELIVER_EXPIRY_H
#define DELIVER_EXPIRY_H

#include "datatype/timestamp.h"

#include "deliver.h"

extern bool message_expired_slow(const QueueInfo *q, TimestampTz enqueued_at,
								 TimestampTz expires_at, TimestampTz now);

/*
 * Has the message expired by now?  A queue without a ttl and a message
 * without expires_at cost one test.
 */
static inline bool
message_expired(const QueueInfo *q, TimestampTz enqueued_at, TimestampTz expires_at,
				TimestampTz now)
{
	if (likely(q->message_ttl_us == 0 && expires_at == DT_NOEND))
		return false;
	return message_expired_slow(q, enqueued_at, expires_at, now);
}

#endif							/* DELIVER_EXPIRY_H */
