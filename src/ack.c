/*
 * ack.c
 *		deliver.ack, ack_batch, nack, extend_lease.
 *
 * A delivery id is a fencing token: it names one lease slot and the
 * generation of that slot, so an id from an expired lease whose message was
 * delivered again no longer matches.  An ack is durable with its
 * transaction (one finish record per call and group); it finishes the
 * message when the transaction commits, and a rollback undoes it.
 */
#include "postgres.h"

#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "ackcommit.h"
#include "args.h"
#include "catalog.h"
#include "checkpoint.h"
#include "deadletter.h"
#include "deliver.h"
#include "lease.h"
#include "segment.h"
#include "settings.h"
#include "shmem.h"
#include "snap.h"
#include "xact.h"

PG_FUNCTION_INFO_V1(deliver_ack);
PG_FUNCTION_INFO_V1(deliver_ack_batch);
PG_FUNCTION_INFO_V1(deliver_nack);
PG_FUNCTION_INFO_V1(deliver_extend_lease);

/*
 * A delivery id is current from the receive that handed it out until the
 * message is acked (when that commits), nacked, or delivered again; the
 * receive's transaction rolling back ends it too.  A lease that ran out
 * does not end it by itself: until the message is delivered again, an ack
 * or nack of it is still taken (nobody else has the message).
 * extend_lease needs a lease that has not run out.
 */
#define NOT_CURRENT_DETAIL \
	"It was acked or nacked already, its receive was rolled back, or its lease ran out and the message was delivered again."

/*
 * Raise the error of a delivery id that is not current, with detail.
 */
static void
not_current(QueueInfo *q, int64 delivery_id, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("delivery %lld is not current on queue \"%s\"", (long long) delivery_id, q->name),
			 errdetail("%s", detail),
			 errhint("Receive the message again and use its new delivery_id.")));
}

/*
 * Find and lock the group holding a current delivery of this queue; raise
 * an error saying why when the id is not current.
 */
static GroupEntry *
lock_delivery(QueueInfo *q, int64 delivery_id, int32 *slot_out)
{
	int32		idx = lease_slot_of(delivery_id);
	GroupEntry *gs;
	LeaseSlot  *s;

	if (idx < 0)
		not_current(q, delivery_id, "No such delivery.");
	gs = lease_lock_group(idx, (uint64) delivery_id);
	if (gs == NULL)
		not_current(q, delivery_id, NOT_CURRENT_DETAIL);
	s = &deliver_slots[idx];
	if (s->state == SLOT_FREE || s->state == SLOT_BLOCKED)
	{
		LWLockRelease(&gs->lock);
		not_current(q, delivery_id, NOT_CURRENT_DETAIL);
	}
	if (gs->queue_idx != q->queue_idx)
	{
		LWLockRelease(&gs->lock);
		not_current(q, delivery_id, "It belongs to another queue.");
	}
	*slot_out = idx;
	return gs;
}

/*
 * Ack deliveries; returns how many were newly acked (an id acked already in
 * this transaction counts once).
 */
static int
ack_many(QueueInfo *q, int64 *ids, int n)
{
	TransactionId xid;
	int64	   *msg = palloc(sizeof(int64) * n);
	int32	   *gidx = palloc(sizeof(int32) * n);
	int64	   *same = palloc(sizeof(int64) * n);
	bool	   *written = palloc0(sizeof(bool) * n);
	int			nacked = 0;
	int			i;
	int			j;
	DSnap	   *done = palloc(deliver_snap_size);

	queue_check_privilege(q, ACL_SELECT, "ack messages of");
	if (q->ack_async)
		ack_commit_begin();
	xid = GetTopTransactionId();

	for (i = 0; i < n; i++)
	{
		int32		idx;
		GroupEntry *gs = lock_delivery(q, ids[i], &idx);
		LeaseSlot  *s = &deliver_slots[idx];

		if (s->finish_pending)
			(void) slot_resolve_finish(gs, idx);
		if (s->delivery_id != (uint64) ids[i])
		{
			LWLockRelease(&gs->lock);
			not_current(q, ids[i], "It was acked already.");
		}
		if (s->finish_pending)
		{
			bool		mine = TransactionIdEquals(s->finish_xid, xid);

			LWLockRelease(&gs->lock);
			if (mine)
				continue;
			if (q->guarantee == G_EXACTLY_ONCE)
				ereport(ERROR,
						(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
						 errmsg("delivery %lld is being acked by another transaction",
								(long long) ids[i])));
			continue;
		}
		if (s->state == SLOT_READY)
		{
			/* its lease ran out but nobody has it yet: take it back */
			slist_remove(&gs->ready_list, idx);
			s->state = SLOT_LEASED;
			slist_push(&gs->leased, idx);
		}
		s->finish_pending = true;
		s->finish_kind = DONE_ACK;
		s->finish_xid = xid;
		xact_note_finish(idx, s->delivery_id);
		msg[nacked] = s->message_id;
		gidx[nacked] = gs - deliver_groups;
		nacked++;
		LWLockRelease(&gs->lock);
	}

	/* one finish record per group (nearly always just one) */
	for (i = 0; i < nacked; i++)
	{
		GroupEntry *gs = &deliver_groups[gidx[i]];
		int			m = 0;
		int32		group_id;

		if (written[i])
			continue;
		for (j = i; j < nacked; j++)
			if (gidx[j] == gidx[i])
			{
				same[m++] = msg[j];
				written[j] = true;
			}
		LWLockAcquire(&gs->lock, LW_SHARED);
		checkpoint_restart_point(gs, gidx[i], done);
		group_id = gs->group_id;
		LWLockRelease(&gs->lock);
		done_write(q, group_id, DONE_ACK, same, m, done);
	}
	if (q->ack_async)
		ack_commit_end();
	return nacked;
}

/*
 * deliver.ack(queue_name, delivery_id) returns boolean: true when this call
 * acked the message, false when this transaction had acked it already.
 */
Datum
deliver_ack(PG_FUNCTION_ARGS)
{
	QueueInfo  *q;
	int64		id;
	int			n;

	SPI_connect();
	q = queue_lookup(PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0));
	arg_not_null(fcinfo, 1, "delivery_id");
	id = PG_GETARG_INT64(1);
	n = ack_many(q, &id, 1);
	SPI_finish();
	PG_RETURN_BOOL(n > 0);
}

/*
 * deliver.ack_batch(queue_name, delivery_ids[]) returns int: how many were
 * acked.  All or nothing: one id that is not current fails the call.
 */
Datum
deliver_ack_batch(PG_FUNCTION_ARGS)
{
	QueueInfo  *q;
	ArrayType  *a;
	Datum	   *values;
	bool	   *nulls;
	int			n;
	int64	   *ids;
	int			i;
	int			acked;

	SPI_connect();
	q = queue_lookup(PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0));
	arg_not_null(fcinfo, 1, "delivery_ids");
	a = PG_GETARG_ARRAYTYPE_P(1);
	if (ARR_NDIM(a) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("delivery_ids must be a one-dimensional array")));
	deconstruct_array(a, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &values, &nulls, &n);
	if (n > deliver_max_batch)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("batch of %d acks is larger than deliver.max_batch_size (%d)",
						n, deliver_max_batch)));
	ids = palloc(sizeof(int64) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("delivery_ids must not contain NULL")));
		ids[i] = DatumGetInt64(values[i]);
	}
	acked = n > 0 ? ack_many(q, ids, n) : 0;
	SPI_finish();
	PG_RETURN_INT32(acked);
}

/*
 * nack(dead_letter => true): the message goes to the group's dead letters
 * in this transaction, whatever attempts it has left (reason 'rejected',
 * last_error the nack's error).  Called with the group locked and the slot
 * off its list; releases the lock.  The delivery ends here; a rollback
 * makes the message ready again at once (settle_finish in xact.c), as a
 * plain nack leaves it.
 */
static void
nack_to_dead_letters(QueueInfo *q, GroupEntry *gs, int32 idx, const char *error)
{
	LeaseSlot  *s = &deliver_slots[idx];
	Delivery	o;
	ScanCtx		c;

	s->reason = REASON_REJECTED;
	memcpy(s->last_error, error, DELIVER_ERROR_LEN);
	dead_letter_claim(gs, idx, GetCurrentTimestamp(), q->visibility_ms, &o);
	LWLockRelease(&gs->lock);

	memset(&c, 0, sizeof(c));
	c.q = q;
	c.group_id = gs->group_id;
	c.gidx = gs - deliver_groups;
	c.cxt = CurrentMemoryContext;
	scan_open(&c);
	c.gs = gs;
	c.snap = RegisterSnapshot(GetLatestSnapshot());
	dead_letter_move(&c, &o, 1);
	UnregisterSnapshot(c.snap);
	scan_close(&c);
}

/*
 * deliver.nack(queue_name, delivery_id, error, retry_after, dead_letter)
 * returns boolean.  The message becomes visible again after retry_after
 * (default: the queue's backoff for its attempt).  Takes effect at once,
 * whatever becomes of the transaction.  With dead_letter it goes to the
 * dead letters instead (nack_to_dead_letters), with the transaction.
 */
Datum
deliver_nack(PG_FUNCTION_ARGS)
{
	QueueInfo  *q;
	int64		id;
	int32		idx;
	GroupEntry *gs;
	LeaseSlot  *s;
	int64		delay_ms = -1;
	TimestampTz now = GetCurrentTimestamp();
	int32		qidx;
	bool		to_dead;
	char		error[DELIVER_ERROR_LEN];

	SPI_connect();
	q = queue_lookup(PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0));
	arg_not_null(fcinfo, 1, "delivery_id");
	queue_check_privilege(q, ACL_SELECT, "nack messages of");
	id = PG_GETARG_INT64(1);
	delay_ms = arg_interval_ms(fcinfo, 3, -1, 0, DELIVER_MAX_VISIBILITY_MS, "retry_after",
							   "0 and " DELIVER_MAX_VISIBILITY_TEXT);
	to_dead = PG_NARGS() > 4 && !PG_ARGISNULL(4) && PG_GETARG_BOOL(4);
	if (to_dead && delay_ms >= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("retry_after cannot be given with dead_letter"),
				 errhint("A message nacked to the dead letters is not retried.")));
	error[0] = '\0';
	if (!PG_ARGISNULL(2))
		clip_copy(error, text_to_cstring(PG_GETARG_TEXT_PP(2)), DELIVER_ERROR_LEN);
	gs = lock_delivery(q, id, &idx);
	s = &deliver_slots[idx];
	if (s->finish_pending)
	{
		LWLockRelease(&gs->lock);
		not_current(q, id, "It is being acked.");
	}
	/* leased, or its lease ran out and it waits for redelivery */
	slist_remove(s->state == SLOT_LEASED ? &gs->leased : &gs->ready_list, idx);
	if (to_dead)
	{
		if (q->ack_async)
			ack_commit_begin();
		nack_to_dead_letters(q, gs, idx, error);
		if (q->ack_async)
			ack_commit_end();
		SPI_finish();
		PG_RETURN_BOOL(true);
	}
	s->state = SLOT_READY;
	s->reason = REASON_NACKED;
	s->visible_at = now + (delay_ms >= 0 ? delay_ms : backoff_ms(q, s->attempt)) * 1000;
	memcpy(s->last_error, error, DELIVER_ERROR_LEN);
	s->delivery_id = 0;			/* the delivery ends here: no ack or extend of it */
	slist_push(&gs->ready_list, idx);
	qidx = gs->queue_idx;
	LWLockRelease(&gs->lock);
	queue_wake(qidx);
	SPI_finish();
	PG_RETURN_BOOL(true);
}

/*
 * deliver.extend_lease(queue_name, delivery_id, visibility_timeout) returns
 * the new lease expiry (counted from now).
 */
Datum
deliver_extend_lease(PG_FUNCTION_ARGS)
{
	QueueInfo  *q;
	int64		id;
	int32		idx;
	GroupEntry *gs;
	LeaseSlot  *s;
	int64		vt_ms;
	TimestampTz expires;
	TimestampTz now;

	SPI_connect();
	q = queue_lookup(PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0));
	arg_not_null(fcinfo, 1, "delivery_id");
	arg_not_null(fcinfo, 2, "visibility_timeout");
	queue_check_privilege(q, ACL_SELECT, "extend leases of");
	id = PG_GETARG_INT64(1);
	vt_ms = arg_interval_ms(fcinfo, 2, 0, 1, DELIVER_MAX_VISIBILITY_MS, "visibility_timeout",
							"1 millisecond and " DELIVER_MAX_VISIBILITY_TEXT);
	gs = lock_delivery(q, id, &idx);
	s = &deliver_slots[idx];
	now = GetCurrentTimestamp();
	if (s->state != SLOT_LEASED || s->lease_expires <= now)
	{
		LWLockRelease(&gs->lock);
		not_current(q, id, "Its lease ran out: receive the message again (ack or nack it still can).");
	}
	expires = now + vt_ms * 1000;
	s->lease_expires = expires;
	if (expires < gs->next_expiry)
		gs->next_expiry = expires;	/* a shorter lease runs out sooner */
	LWLockRelease(&gs->lock);
	SPI_finish();
	PG_RETURN_TIMESTAMPTZ(expires);
}
