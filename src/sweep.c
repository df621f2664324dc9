/*
 * sweep.c
 *		deliver._sweep: the maintenance of a queue's leases.
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
#include "lease.h"
#include "registry.h"
#include "scan.h"
#include "settings.h"
#include "shmem.h"

PG_FUNCTION_INFO_V1(deliver_sweep);

/*
 * deliver._sweep(queue_name, max_dead) returns (expired, ready,
 * dead_lettered): for each consumer group, leases that ran out become
 * ready again after their backoff, and up to max_dead ready messages out
 * of attempts move to the dead letters (in this transaction).  Long polls
 * are woken when messages are ready now.  The maintenance worker calls it
 * every run; without a worker, receive does the same for its own group.
 */
Datum
deliver_sweep(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[4];
	bool		nulls[4] = {false};
	QueueInfo  *q;
	int			max;
	int64		expired = 0;
	int64		ready = 0;
	int64		ndead_total = 0;
	int64		released = 0;
	int			i;
	Delivery   *dead;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (PG_ARGISNULL(1) || PG_GETARG_INT32(1) < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_dead must be positive")));
	max = Min(PG_GETARG_INT32(1), deliver_max_batch);
	SPI_connect();
	q = queue_lookup(PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0));
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

		memset(&c, 0, sizeof(c));
		c.q = q;
		c.group_id = q->groups[i].group_id;
		c.cxt = CurrentMemoryContext;
		scan_open(&c);
		gs = c.gs = group_lock(q, c.group_id, &c.gidx);
		c.snap = RegisterSnapshot(GetLatestSnapshot());
		before = gs->ready_list.count;
		group_expire_leases(gs, q, now);
		expired += gs->ready_list.count - before;
		for (idx = gs->ready_list.head; idx >= 0; idx = next)
		{
			LeaseSlot  *s = &deliver_slots[idx];

			next = s->next;
			if (s->visible_at > now)
				continue;
			if (s->attempt >= q->max_attempts && ndead < max)
			{
				slist_remove(&gs->ready_list, idx);
				dead_letter_claim(gs, idx, now, q->visibility_ms, &dead[ndead++]);
			}
			else
				ready++;
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
			released += gs->ready_list.count + gs->blocked.count;
			group_release_slots(gs);
			gs->recovered = false;
		}
		LWLockRelease(&gs->lock);
		if (ndead > 0)
			dead_letter_move(&c, dead, ndead);
		ndead_total += ndead;
		UnregisterSnapshot(c.snap);
		scan_close(&c);
	}
	if (expired > 0 || ready > 0)
		queue_wake(q->queue_idx);
	SPI_finish();

	values[0] = Int64GetDatum(expired);
	values[1] = Int64GetDatum(ready);
	values[2] = Int64GetDatum(ndead_total);
	values[3] = Int64GetDatum(released);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
