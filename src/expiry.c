/*
 * expiry.c
 *		Message expiry: when a message's deadline has passed.
 *
 * The deadline is least(expires_at, enqueued_at + message_ttl).  Receive
 * (receive.c) and peek (peek.c, scan.c) test it; expired messages leave
 * their group through the dead-letter move (deadletter.c), with reason
 * 'expired', or are only finished when the queue drops them.
 */
#include "postgres.h"

#include "common/int.h"

#include "expiry.h"

/*
 * message_expired for a queue with a ttl or a message with expires_at.
 */
bool
message_expired_slow(const QueueInfo *q, TimestampTz enqueued_at, TimestampTz expires_at,
					 TimestampTz now)
{
	TimestampTz deadline = expires_at;

	if (q->message_ttl_us > 0)
	{
		TimestampTz by_ttl;

		/* (an enqueued_at near the end of time: no ttl deadline) */
		if (!pg_add_s64_overflow(enqueued_at, q->message_ttl_us, &by_ttl) && by_ttl < deadline)
			deadline = by_ttl;
	}
	return deadline <= now;
}
