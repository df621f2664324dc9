/*
 * sweep.c
 *		The maintenance of a queue's leases (sweep_queue, deliver._sweep).
 *
 * For each consumer group: leases that ran out become ready again after
 * their backoff, messages out of attempts move to the dead letters, and a
 * group nobody received from for deliver.idle_release gives its lease
 * slots back.  The maintenance worker (worker.c) calls it every run.
 */
#include "postgres.h"

#include "executor/spi.h"
#include "funcapi.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "catalog.h"
#include "deadletter.h"
#include "deliver.h"
#include "expiry.h"
#include "lease.h"
#include "registry.h"
#include "scan.h"
#include "settings.h"
#include "shmem.h"
#include "sweep.h"

PG_FUNCTION_INFO_V1(deliver_sweep);

/*
 * The maintenance of a queue's leases, in this transaction: for each
 * consumer group, leases that ran out become ready again after their
 * backoff, up to max_dead ready messages out of attempts move to the dead
 * letters, and a group idle for deliver.idle_release gives its slots back.
 * Long polls are woken when messages are ready now.  The caller is
 * connected to SPI.
 */
void
sweep_queue(QueueInfo *q, int max_dead, SweepCounts *out)
{
	int			max = Min(max_dead, deliver_max_batch);
	Delivery   *dead;
	int			i;

	memset(out, 0, sizeof(*out));
	/*
	 * A queue none of whose groups holds a lease slot (leased, waiting for
	 * redelivery or held behind a FIFO key) has nothing to sweep: read
	 * without slot_lock, what changes meanwhile is seen by the next sweep.
	 */
	if (deliver_queues[q->queue_idx].slots_held == 0)
		return;
	dead = palloc(sizeof(Delivery) * max);
	for (i = 0; i < q->ngroups && q->guarantee != G_AT_MOST_ONCE; i++)
	{
		ScanCtx		c;
		GroupEntry *gs;
		TimestampTz now = GetCurrentTimestamp();
		int64		before;
		int32		idx;
		int32		next;
		int			ndead = 0;

		/* (most groups of a quiet database: nothing to look at) */
		if (!group_may_be_busy(q, q->groups[i].group_id))
			continue;
		memset(&c, 0, sizeof(c));
		c.q = q;
		c.group_id = q->groups[i].group_id;
		c.cxt = CurrentMemoryContext;
		scan_open(&c);
		gs = c.gs = group_lock(q, c.group_id, &c.gidx);
		c.snap = RegisterSnapshot(GetLatestSnapshot());
		before = gs->ready_list.count;
		group_expire_leases(gs, q, now);
		out->expired += gs->ready_list.count - before;
		for (idx = gs->ready_list.head; idx >= 0; idx = next)
		{
			LeaseSlot  *s = &deliver_slots[idx];

			next = s->next;
			if (s->visible_at > now || s->finish_pending)
				continue;		/* (a delete_message not ended yet) */
			if (ndead < max && message_expired(q, s->enqueued_at, s->expires_at, now))
			{
				/* a redelivery that expired meanwhile */
				slist_remove(&gs->ready_list, idx);
				s->reason = REASON_TTL;
				dead_letter_claim(gs, idx, now, q->visibility_ms, &dead[ndead++]);
			}
			else if (s->attempt >= q->max_attempts && ndead < max)
			{
				slist_remove(&gs->ready_list, idx);
				dead_letter_claim(gs, idx, now, q->visibility_ms, &dead[ndead++]);
			}
			else
				out->ready++;
		}

		/*
		 * Nobody received from the group for deliver.idle_release and it
		 * holds no lease: it gives its lease slots back.  Its messages are
		 * delivered again from its durable state when it recovers (as
		 * after a restart: their attempts count from 1 again).
		 */
		if (ndead == 0 && deliver_idle_release_ms > 0 && gs->leased.count == 0 &&
			gs->ready_list.count + gs->blocked.count > 0 &&
			now - gs->last_receive >= (int64) deliver_idle_release_ms * 1000)
		{
			out->released += gs->ready_list.count + gs->blocked.count;
			group_release_slots(gs);
			gs->recovered = false;
		}
		LWLockRelease(&gs->lock);
		if (ndead > 0)
			dead_letter_move(&c, dead, ndead);
		out->dead_lettered += ndead;
		UnregisterSnapshot(c.snap);
		scan_close(&c);
	}
	if (out->expired > 0 || out->ready > 0)
		queue_wake(q->queue_idx);
	pfree(dead);
}

/*
 * deliver._sweep(queue_name, max_dead) returns (expired, ready,
 * dead_lettered, released): sweep_queue() on the queue (the maintenance
 * worker calls it directly every run; without a worker, receive does the
 * same for its own group).
 */
Datum
deliver_sweep(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[4];
	bool		nulls[4] = {false};
	QueueInfo  *q;
	SweepCounts n;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (PG_ARGISNULL(1) || PG_GETARG_INT32(1) < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_dead must be positive")));
	SPI_connect();
	q = queue_lookup(PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0));
	sweep_queue(q, PG_GETARG_INT32(1), &n);
	SPI_finish();

	values[0] = Int64GetDatum(n.expired);
	values[1] = Int64GetDatum(n.ready);
	values[2] = Int64GetDatum(n.dead_lettered);
	values[3] = Int64GetDatum(n.released);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
