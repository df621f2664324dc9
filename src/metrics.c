/*
 * metrics.c
 *		What the state of the queues looks like: the live state of their
 *		consumer groups, deliver.metrics(), deliver.lease_slots(),
 *		deliver.worker_status().
 *
 * Like every function of deliver's, these check the caller's right on the
 * queue and then read its tables as their owner (spi_run).
 */
#include "postgres.h"

#include "catalog/pg_authid.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "catalog.h"
#include "deliver.h"
#include "lease.h"
#include "metrics.h"
#include "registry.h"
#include "scan.h"
#include "settings.h"
#include "shmem.h"
#include "snap.h"
#include "spi.h"
#include "tables.h"
#include "worker.h"

PG_FUNCTION_INFO_V1(deliver_group_state);
PG_FUNCTION_INFO_V1(deliver_metrics);
PG_FUNCTION_INFO_V1(deliver_lease_slots);
PG_FUNCTION_INFO_V1(deliver_worker_status);

/* the live state of a consumer group, from its shared entry and a count */
typedef struct GroupLive
{
	int64		backlog;		/* not reached by the cursor yet */
	int64		in_flight;
	int64		ready;			/* waiting for redelivery */
	int64		blocked;		/* FIFO: behind an earlier message of its key */
	TimestampTz oldest;			/* enqueued_at of the oldest unfinished, or 0 */
	int64		sent_total;
	int64		acked_total;
	int64		dead_total;
} GroupLive;

/*
 * A consumer group's live state (metrics).  backlog counts the messages its
 * cursor has not reached yet: a scan of them, made on copies of the
 * cursor's state after the group's lock is released, so that receives and
 * acks of the group go on meanwhile (metrics is not meant for a hot loop).
 */
static void
group_live_state(QueueInfo *q, int32 group_id, GroupLive *out, int64 stop)
{
	ScanCtx		c;
	GroupEntry	copy;
	GroupEntry *gs;
	DSnap	   *lo = palloc(deliver_snap_size);
	DSnap	   *hi = palloc(deliver_snap_size);
	DSnap	   *now_snap = palloc(deliver_snap_size);
	SlotList   *lists[3];
	int32		idx;
	int			l;
	bool		ex;

	memset(out, 0, sizeof(*out));
	{
		/*
		 * Read before the count: a send counted here committed before it,
		 * so the count sees its messages (the max_depth estimate relies on
		 * that: see group_depth_fits).
		 */
		QueueEntry *qs = &deliver_queues[q->queue_idx];

		SpinLockAcquire(&qs->mutex);
		out->sent_total = qs->sent_total;
		SpinLockRelease(&qs->mutex);
	}
	memset(&c, 0, sizeof(c));
	c.q = q;
	c.group_id = group_id;
	c.cxt = CurrentMemoryContext;
	c.count_only = true;
	scan_open(&c);
	gs = group_lock(q, group_id, &c.gidx);
	if (stop > 0)
		c.count_stop = Max(stop - (gs->ready_list.count + gs->blocked.count + gs->passed), 1);
	/* leases that ran out, finishes of ended transactions: settle them */
	group_expire_leases(gs, q, GetCurrentTimestamp());
	copy = *gs;
	dsnap_copy(lo, group_snap(c.gidx, SNAP_LO));
	dsnap_copy(hi, group_snap(c.gidx, SNAP_HI));
	lists[0] = &gs->leased;
	lists[1] = &gs->ready_list;
	lists[2] = &gs->blocked;
	for (l = 0; l < (int) lengthof(lists); l++)
		for (idx = lists[l]->head; idx >= 0; idx = deliver_slots[idx].next)
			if (out->oldest == 0 || deliver_slots[idx].enqueued_at < out->oldest)
				out->oldest = deliver_slots[idx].enqueued_at;
	out->in_flight = gs->leased.count;
	out->ready = gs->ready_list.count;
	/* (rows of FIFO keys passed over wait behind their key too) */
	out->blocked = gs->blocked.count + gs->passed;
	out->acked_total = gs->acked_total;
	out->dead_total = gs->dead_total;

	/*
	 * The snapshot of the count is taken before the lock is released: a
	 * finish the count does not see is then one of a message it counts
	 * (in a list of the group) or one not counted in acked_total and
	 * dead_total yet (they move under this lock), as the max_depth
	 * estimate needs.
	 */
	dsnap_latest(now_snap);
	c.snap = RegisterSnapshot(GetLatestSnapshot());
	LWLockRelease(&gs->lock);

	/* the rest of the open window, then everything committed since */
	c.gs = &copy;
	if (copy.in_window)
	{
		c.count_after = true;
		c.after_cts = copy.pos_cts;
		c.after_txid = copy.pos_txid;
		c.after_id = copy.pos_id;
		copy.pos_txid = 0;
		copy.pos_id = 0;
		(void) scan_window(&c, lo, hi, NULL, INT_MAX, &ex);
		c.count_after = false;
	}
	copy.pos_txid = 0;
	copy.pos_id = 0;
	(void) scan_window(&c, copy.in_window ? hi : lo, now_snap, NULL, INT_MAX, &ex);
	UnregisterSnapshot(c.snap);
	scan_close(&c);
	out->backlog = c.counted;
	if (c.oldest != 0 && (out->oldest == 0 || c.oldest < out->oldest))
		out->oldest = c.oldest;

	/*
	 * A complete count: keep it for max_depth's estimate, unless the group
	 * recovered meanwhile (its counters and cursor were made again).
	 */
	if (c.count_stop == 0 || c.counted < c.count_stop)
	{
		LWLockAcquire(&gs->lock, LW_EXCLUSIVE);
		if (gs->group_id == group_id && gs->queue_idx == q->queue_idx &&
			gs->recovered && gs->boot_gen == copy.boot_gen)
		{
			gs->depth_unfinished = out->backlog + out->in_flight + out->ready + out->blocked;
			gs->depth_sent = out->sent_total;
			gs->depth_finished = out->acked_total + out->dead_total;
			gs->depth_boot_gen = copy.boot_gen;
			gs->depth_valid = true;
		}
		LWLockRelease(&gs->lock);
	}
}

/*
 * max_depth without a count: whether n more messages surely fit under
 * limit in the group, from its last exact count (group_live_state) and
 * what was sent and finished since.  The estimate is an upper bound of the
 * group's depth:
 *
 *	unfinished then + sent since - finished since
 *
 * where unfinished counts the messages in flight too (their acks lower the
 * estimate), sent since counts the queue's committed sends (sent_total
 * moves at commit, after the messages are visible; sends to another group
 * only raise the estimate) and finished since counts committed acks and
 * dead-letter moves (acked_total and dead_total move at commit, under the
 * group's lock).  Finishes those counters miss (at-most-once receives,
 * deletes of messages not reached yet) only keep the estimate high until
 * the next count.  False (count, please) when there is no valid count.
 */
bool
group_depth_fits(QueueInfo *q, int32 group_id, int64 n, int64 limit)
{
	QueueEntry *qs = &deliver_queues[q->queue_idx];
	int32		gidx = group_entry_find(group_id, q->queue_idx);
	GroupEntry *gs;
	int64		sent = 0;
	bool		fits = false;

	if (gidx < 0)
		return false;
	gs = &deliver_groups[gidx];
	LWLockAcquire(&gs->lock, LW_SHARED);
	if (gs->group_id != group_id || gs->queue_idx != q->queue_idx)
		group_entry_forget(group_id, q->queue_idx);	/* it went to another group */
	else if (gs->recovered && gs->depth_valid && gs->boot_gen == gs->depth_boot_gen)
	{
		int64		finished = gs->acked_total + gs->dead_total;

		/* (read after the finishes: a message finished is counted sent) */
		SpinLockAcquire(&qs->mutex);
		sent = qs->sent_total;
		SpinLockRelease(&qs->mutex);
		if (sent >= gs->depth_sent && finished >= gs->depth_finished)
			fits = gs->depth_unfinished + (sent - gs->depth_sent) -
				(finished - gs->depth_finished) + n <= limit;
	}
	LWLockRelease(&gs->lock);
	return fits;
}

/*
 * The depth of one consumer group as metrics shows it (messages not
 * finished and not in flight: the backlog, ready and FIFO-held), committed
 * messages only; counting stops once it reaches stop (then it returns at
 * least stop), so a full group costs a scan of about stop rows.
 */
int64
group_depth(QueueInfo *q, int32 group_id, int64 stop)
{
	GroupLive	st;

	group_live_state(q, group_id, &st, stop);
	return st.backlog + st.ready + st.blocked;
}

/*
 * deliver._group_state(group_id): the group's live state (group_live_state).
 */
Datum
deliver_group_state(PG_FUNCTION_ARGS)
{
	int32		group_id = PG_GETARG_INT32(0);
	TupleDesc	tupdesc;
	Datum		values[8];
	bool		nulls[8] = {false};
	QueueInfo  *q;
	bool		isnull;
	int			rc;
	Oid			argtypes[1] = {INT4OID};
	Datum		args[1];
	GroupLive	st;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	deliver_check_primary();
	SPI_connect();
	args[0] = Int32GetDatum(group_id);
	rc = spi_run(catalog_owner(), "group_queue",
				 "SELECT queue_id FROM deliver.consumer_group WHERE group_id = $1",
				 1, argtypes, args, NULL, true, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("consumer group %d does not exist", group_id)));
	q = queue_lookup_by_id(DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
														SPI_tuptable->tupdesc, 1, &isnull)));
	queue_check_metrics_privilege(q);
	group_live_state(q, group_id, &st, 0);
	SPI_finish();

	values[0] = Int64GetDatum(st.backlog);
	values[1] = Int64GetDatum(st.in_flight);
	values[2] = Int64GetDatum(st.ready);
	values[3] = Int64GetDatum(st.blocked);
	values[4] = TimestampTzGetDatum(st.oldest);
	nulls[4] = (st.oldest == 0);
	values[5] = Int64GetDatum(st.sent_total);
	values[6] = Int64GetDatum(st.acked_total);
	values[7] = Int64GetDatum(st.dead_total);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * The number of rows of a table of the queue, counted as its owner.
 */
static int64
queue_count(QueueInfo *q, const char *what, QueueRel rel)
{
	char		key[STATEMENT_KEY_LEN];
	char		sql[256];
	char		relname[NAMEDATALEN];
	bool		isnull;
	Datum		d;

	snprintf(key, sizeof(key), "%s:%d", what, q->queue_id);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM deliver.%s",
			 queue_relname(relname, rel, q->queue_id, 0));
	if (spi_run(q->owner, key, sql, 0, NULL, NULL, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "deliver: could not count %s", what);
	if (SPI_processed == 0)
		return 0;
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : DatumGetInt64(d);
}

/*
 * The metrics rows of one queue: one per consumer group.
 */
static void
queue_metrics_rows(ReturnSetInfo *rsinfo, QueueInfo *q, const WorkerStatus *w)
{
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	int64		delayed = queue_count(q, "delayed", QUEUE_DELAYED);
	int			i;

	for (i = 0; i < q->ngroups; i++)
	{
		GroupLive	st;
		Datum		values[13];
		bool		nulls[13] = {false};
		char		key[STATEMENT_KEY_LEN];
		char		sql[256];
		char		rel[NAMEDATALEN];
		Oid			types[1] = {INT4OID};
		Datum		args[1];
		bool		isnull;

		group_live_state(q, q->groups[i].group_id, &st, 0);
		snprintf(key, sizeof(key), "deadcount:%d", q->queue_id);
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM deliver.%s WHERE group_id = $1",
				 queue_relname(rel, QUEUE_DEAD, q->queue_id, 0));
		args[0] = Int32GetDatum(q->groups[i].group_id);
		if (spi_run(q->owner, key, sql, 1, types, args, NULL, true, 1) != SPI_OK_SELECT ||
			SPI_processed != 1)
			elog(ERROR, "deliver: could not count dead letters");

		values[0] = CStringGetTextDatum(q->name);
		values[1] = CStringGetTextDatum(q->groups[i].name);
		values[2] = Int64GetDatum(st.backlog + st.ready + st.blocked);
		values[3] = Int64GetDatum(st.in_flight);
		values[4] = Int64GetDatum(delayed);
		values[5] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (st.oldest != 0)
			values[6] = IntervalPGetDatum(DatumGetIntervalP(
						DirectFunctionCall2(timestamp_mi, TimestampTzGetDatum(now),
											TimestampTzGetDatum(st.oldest))));
		nulls[6] = (st.oldest == 0);
		values[7] = Int64GetDatum(st.sent_total);
		values[8] = Int64GetDatum(st.acked_total);
		values[9] = Int64GetDatum(st.dead_total);
		nulls[10] = nulls[11] = nulls[12] = true;
		if (w != NULL && w->last_run_at != 0)
		{
			values[10] = TimestampTzGetDatum(w->last_run_at);
			values[11] = DirectFunctionCall2(timestamp_mi,
											 TimestampTzGetDatum(GetCurrentTimestamp()),
											 TimestampTzGetDatum(w->last_run_at));
			nulls[10] = nulls[11] = false;
		}
		if (w != NULL)
		{
			values[12] = Int64GetDatum(w->errors);
			nulls[12] = false;
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
}

/*
 * The status of the maintenance worker of the current database, when
 * deliver.database lists it.
 */
static bool
worker_status_here(WorkerStatus *out)
{
	char	   *name = get_database_name(MyDatabaseId);
	List	   *names = deliver_worker_databases();
	ListCell   *lc;

	foreach(lc, names)
	{
		int			i = foreach_current_index(lc);

		if (i >= DELIVER_MAX_WORKERS || name == NULL || strcmp(name, lfirst(lc)) != 0)
			continue;
		SpinLockAcquire(&deliver_shared->worker_mutex);
		*out = deliver_shared->workers[i];
		SpinLockRelease(&deliver_shared->worker_mutex);
		return true;
	}
	return false;
}

/*
 * deliver.metrics(queue_name DEFAULT NULL) returns setof (queue_name,
 * consumer_group, depth, in_flight, delayed, dead_letters, oldest_age,
 * sent_total, acked_total, dead_total, worker_last_run, worker_lag,
 * worker_errors): one row per consumer group, of one queue or (NULL) of
 * every queue the caller may read metrics of (receive rights, or
 * membership of pg_monitor).
 */
Datum
deliver_metrics(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	WorkerStatus w;
	bool		have_worker;

	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	have_worker = worker_status_here(&w);
	if (!PG_ARGISNULL(0))
	{
		QueueInfo  *q = queue_lookup(PG_GETARG_TEXT_PP(0));

		queue_check_metrics_privilege(q);
		queue_metrics_rows(rsinfo, q, have_worker ? &w : NULL);
	}
	else
	{
		bool		monitor = has_privs_of_role(GetUserId(), ROLE_PG_MONITOR);
		List	   *names = NIL;
		ListCell   *lc;
		uint64		r;

		if (spi_run(catalog_owner(), "queue_names",
					"SELECT queue_name FROM deliver.queue ORDER BY queue_name",
					0, NULL, NULL, NULL, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "deliver: could not list queues");
		for (r = 0; r < SPI_processed; r++)
			names = lappend(names, SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1));
		foreach(lc, names)
		{
			QueueInfo  *q = queue_lookup(cstring_to_text(lfirst(lc)));

			if (monitor || queue_has_privilege(q, GetUserId(), ACL_SELECT))
				queue_metrics_rows(rsinfo, q, have_worker ? &w : NULL);
		}
	}
	SPI_finish();
	return (Datum) 0;
}

/*
 * deliver.lease_slots() returns (total, free, reserved, reserve_per_queue,
 * max_per_queue, queues): how the lease slots of the whole server are
 * used and shared (see lease_reserve in lease.c).
 */
Datum
deliver_lease_slots(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[6];
	bool		nulls[6] = {false};
	int			i;
	int32		queues = 0;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	deliver_check_primary();
	LWLockAcquire(deliver_shared->slot_lock, LW_SHARED);
	values[0] = Int32GetDatum(deliver_max_leases);
	values[1] = Int32GetDatum((int32) deliver_shared->free_list.count);
	values[2] = Int64GetDatum(deliver_shared->reserved);
	LWLockRelease(deliver_shared->slot_lock);
	values[3] = Int32GetDatum(lease_reserve());
	values[4] = Int32GetDatum(lease_queue_cap());
	for (i = 0; i < deliver_max_queues; i++)
		if (deliver_queues[i].used)
			queues++;
	values[5] = Int32GetDatum(queues);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * deliver.worker_status() returns setof (database, pid, started_at,
 * last_run_at, last_run_duration, runs, errors, expired_total, dead_total,
 * released_total, last_error, last_error_at): one row per database in deliver.database (only
 * the current one unless the caller may read all statistics).
 */
Datum
deliver_worker_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	List	   *names;
	ListCell   *lc;
	bool		all;
	char	   *here;

	deliver_check_primary();
	InitMaterializedSRF(fcinfo, 0);
	if (rsinfo->setDesc->natts != 12)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("deliver: the extension's SQL objects are not those of library version %s",
						DELIVER_VERSION),
				 errhint("Run ALTER EXTENSION deliver UPDATE.")));
	names = deliver_worker_databases();
	/* the workers of other databases only for those who may see all activity */
	all = has_privs_of_role(GetUserId(), ROLE_PG_READ_ALL_STATS);
	here = get_database_name(MyDatabaseId);
	foreach(lc, names)
	{
		WorkerStatus st;
		Datum		values[12];
		bool		nulls[12] = {false};
		int			i = foreach_current_index(lc);

		if (i >= DELIVER_MAX_WORKERS)
			break;
		if (!all && (here == NULL || strcmp(here, lfirst(lc)) != 0))
			continue;
		SpinLockAcquire(&deliver_shared->worker_mutex);
		st = deliver_shared->workers[i];
		SpinLockRelease(&deliver_shared->worker_mutex);

		values[0] = CStringGetTextDatum((char *) lfirst(lc));
		values[1] = Int32GetDatum(st.pid);
		nulls[1] = (st.pid == 0);
		values[2] = TimestampTzGetDatum(st.started_at);
		nulls[2] = (st.started_at == 0);
		values[3] = TimestampTzGetDatum(st.last_run_at);
		nulls[3] = (st.last_run_at == 0);
		{
			Interval   *iv = palloc0(sizeof(Interval));

			iv->time = st.last_run_us;
			values[4] = IntervalPGetDatum(iv);
			nulls[4] = (st.runs == 0);
		}
		values[5] = Int64GetDatum(st.runs);
		values[6] = Int64GetDatum(st.errors);
		values[7] = Int64GetDatum(st.expired_total);
		values[8] = Int64GetDatum(st.dead_total);
		values[9] = Int64GetDatum(st.released_total);
		values[10] = CStringGetTextDatum(st.last_error);
		nulls[10] = (st.last_error[0] == '\0');
		values[11] = TimestampTzGetDatum(st.last_error_at);
		nulls[11] = (st.last_error_at == 0);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
