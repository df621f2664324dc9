/*
 * maintain.c
 *		A queue's storage maintenance: reclaiming finished segments,
 *		rotating the active one, expiring idempotency keys, old dead letters
 *		and the archive.  deliver.maintain() and the maintenance worker call
 *		maintain_queue().
 *
 * Segments go round: active (takes new rows) -> closing (switched away
 * from; transactions that took the old segment may still write to it) ->
 * closed (closed_xmax: every writer's xid is below it; closed_lsn: every
 * such commit lies before it in the WAL) -> empty (truncated with its done
 * table once every message in it is finished for every group, every push
 * slot confirmed past closed_lsn) -> active again.
 *
 * Every statement runs as the queue's owner with a pinned search_path
 * (spi.c); the table names come from queue ids (tables.c), never from
 * user input.
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/resowner.h"
#include "utils/xid8.h"

#include "catalog.h"
#include "deliver.h"
#include "maintain.h"
#include "segment.h"
#include "settings.h"
#include "snap.h"
#include "spi.h"
#include "tables.h"
#include "xact.h"

PG_FUNCTION_INFO_V1(deliver_maintain);

static void maintain_segments(QueueInfo *q, MaintainResult *r);

/* a closed segment: its number, closed_xmax and closed_lsn */
typedef struct ClosedSegment
{
	int			seg;
	uint64		xmax;
	XLogRecPtr	lsn;
	bool		lsn_null;
} ClosedSegment;

/*
 * Run a statement of the queue's maintenance as its owner under key (the
 * statement's prepared plan); its result.
 */
static int
run_key(QueueInfo *q, const char *key, const char *what, const char *sql, int nargs, Oid *types,
		Datum *args, const char *nulls, int expect)
{
	int			rc;

	rc = spi_run(q->owner, key, sql, nargs, types, args, nulls, false, 0);
	if (rc != expect)
		elog(ERROR, "deliver: maintenance of queue \"%s\" (%s) failed: %s",
			 q->name, what, SPI_result_code_string(rc));
	return rc;
}

/* run_key for a statement that names one of the queue's tables */
static int
run(QueueInfo *q, const char *what, const char *sql, int nargs, Oid *types, Datum *args,
	const char *nulls, int expect)
{
	char		key[STATEMENT_KEY_LEN];

	snprintf(key, sizeof(key), "maint:%s:%d", what, q->queue_id);
	return run_key(q, key, what, sql, nargs, types, args, nulls, expect);
}

/*
 * run_key for a statement that names no queue's table (the queue comes as
 * a parameter): one plan serves every queue.
 */
static int
run_any(QueueInfo *q, const char *what, const char *sql, int nargs, Oid *types, Datum *args,
		const char *nulls, int expect)
{
	char		key[STATEMENT_KEY_LEN];

	snprintf(key, sizeof(key), "maint:%s", what);
	return run_key(q, key, what, sql, nargs, types, args, nulls, expect);
}

/*
 * Is every push slot (plugin deliver) of this database confirmed past lsn?
 * (A segment is truncated only then: a slot still decoding it needs its
 * rows.)
 */
static bool
push_slots_past(QueueInfo *q, XLogRecPtr lsn, bool lsn_null)
{
	Oid			types[1] = {PG_LSNOID};
	Datum		args[1] = {LSNGetDatum(lsn)};
	bool		isnull;

	run_any(q, "slots",
		"SELECT NOT EXISTS (SELECT 1 FROM pg_replication_slots r "
		" WHERE r.plugin = 'deliver' AND r.database = current_database() "
		"   AND ($1 IS NULL OR r.confirmed_flush_lsn IS NULL OR r.confirmed_flush_lsn < $1))",
		1, types, args, lsn_null ? "n" : " ", SPI_OK_SELECT);
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * Does one of the queue's push subscriptions still need the queue's stored
 * messages?  After a failover (logical slots are not replicated) a
 * subscription may have no slot yet, or a slot restored on the promoted
 * standby that has not confirmed past its new start: its consumer has a
 * backlog to read (deliver.push_backlog), so no segment is truncated.
 */
static bool
push_backlog_held(QueueInfo *q)
{
	Oid			types[1] = {INT4OID};
	Datum		args[1] = {Int32GetDatum(q->queue_id)};
	bool		isnull;

	run_any(q, "push-held",
		"SELECT EXISTS (SELECT 1 FROM deliver.push_subscription p "
		"  LEFT JOIN pg_replication_slots r ON r.slot_name = p.subscription_name "
		"       AND r.plugin = 'deliver' AND r.database = current_database() "
		" WHERE p.queue_id = $1 "
		"   AND (r.slot_name IS NULL OR r.confirmed_flush_lsn <= p.restored_lsn))",
		1, types, args, NULL, SPI_OK_SELECT);
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * Truncate a closed segment with its done table (archiving its messages
 * first when the queue keeps an archive), in a subtransaction under
 * deliver.maintenance_lock_timeout: a segment someone still reads is left
 * for the next run.  True if it was truncated.
 */
static bool
reclaim_segment(QueueInfo *q, const ClosedSegment *cs, bool archive, int64 *archived)
{
	int			seg = cs->seg;
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	char		sql[512];
	char		rel[NAMEDATALEN];
	char		done[NAMEDATALEN];
	char		archive_rel[NAMEDATALEN];
	Oid			types[2] = {INT4OID, INT4OID};
	Datum		args[2] = {Int32GetDatum(q->queue_id), Int32GetDatum(seg)};
	volatile bool ok = true;

	queue_relname(rel, QUEUE_SEGMENT, q->queue_id, seg);
	queue_relname(done, QUEUE_DONE, q->queue_id, seg);
	queue_relname(archive_rel, QUEUE_ARCHIVE, q->queue_id, 0);

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		int			level = NewGUCNestLevel();
		char		timeout[32];

		snprintf(timeout, sizeof(timeout), "%d", deliver_maintenance_lock_timeout_ms);
		(void) set_config_option("lock_timeout", timeout, PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		/*
		 * Lock first (done table first: the lock order of receive, no
		 * deadlock), then look at the push slots again: a push subscription
		 * being restored (restore_push_subscription) holds the segments while
		 * it creates its slot, and once it committed its new start the
		 * segment is its backlog.  What was seen before the lock is not
		 * enough: the slot exists before that start is committed.
		 */
		snprintf(sql, sizeof(sql), "LOCK TABLE deliver.%s, deliver.%s IN ACCESS EXCLUSIVE MODE", done, rel);
		run(q, psprintf("lock%d", seg), sql, 0, NULL, NULL, NULL, SPI_OK_UTILITY);
		if (push_backlog_held(q) || !push_slots_past(q, cs->lsn, cs->lsn_null))
			ok = false;
		else if (archive)
		{
			/* every message of the segment is finished: keep a copy */
			snprintf(sql, sizeof(sql),
					 "INSERT INTO deliver.%s (message_id, enqueued_at, ordering_key, headers, payload) "
					 "SELECT message_id, enqueued_at, ordering_key, headers, payload FROM deliver.%s "
					 "ON CONFLICT (message_id) DO NOTHING", archive_rel, rel);
			run(q, psprintf("archive%d", seg), sql, 0, NULL, NULL, NULL, SPI_OK_INSERT);
			*archived += (int64) SPI_processed;
		}
		if (ok)
		{
			snprintf(sql, sizeof(sql), "TRUNCATE deliver.%s, deliver.%s", done, rel);
			run(q, psprintf("truncate%d", seg), sql, 0, NULL, NULL, NULL, SPI_OK_UTILITY);
			run_any(q, "empty",
				"UPDATE deliver.segment x SET state = 'empty', closed_xmax = NULL, closed_lsn = NULL, "
				"changed_at = now() WHERE x.queue_id = $1 AND x.seg = $2",
				2, types, args, NULL, SPI_OK_UPDATE);
		}
		if (ok)
		{
			AtEOXact_GUC(true, level);
			ReleaseCurrentSubTransaction();
		}
		else
			RollbackAndReleaseCurrentSubTransaction();	/* kept: its locks go */
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		if (edata->sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE)
			ReThrowError(edata);
		FreeErrorData(edata);
		ok = false;				/* busy: next time */
	}
	PG_END_TRY();
	return ok;
}

/* Delete the rows of one of the queue's tables that expired; how many. */
static int64
delete_expired(QueueInfo *q, const char *what, QueueRel kind, const char *condition,
			   int nargs, Oid *types, Datum *args)
{
	char		sql[512];
	char		rel[NAMEDATALEN];

	snprintf(sql, sizeof(sql), "DELETE FROM deliver.%s WHERE %s",
			 queue_relname(rel, kind, q->queue_id, 0), condition);
	run(q, what, sql, nargs, types, args, NULL, SPI_OK_DELETE);
	return (int64) SPI_processed;
}

/*
 * Is the active segment worth switching away from: does it hold a row (a
 * message, committed or not), or more than a page of finish records?  A
 * queue nobody sends to keeps its active segment then: rotating it would
 * only truncate empty tables again and again, each TRUNCATE giving seven
 * relations (the segment, its index, the done table, their TOAST tables
 * and TOAST indexes) a new relfilenode and a new pg_class row version,
 * which nothing can vacuum away while a transaction holds xmin back.
 * Switching later is always safe: a segment is only reclaimed after it
 * was switched away from.  (Checkpoint rows of the groups land in the
 * done table while older segments wait to be reclaimed: one page allows
 * for them.)  *big says whether its rows, inline and TOASTed, reach
 * deliver.rotation_min_size.
 */
static bool
active_segment_used(QueueInfo *q, bool *big)
{
	int			seg = queue_current_segment(q);
	Relation	rel;
	BlockNumber blocks;
	BlockNumber toast = 0;

	rel = table_open(q->seg_rel[seg], AccessShareLock);
	blocks = RelationGetNumberOfBlocks(rel);
	if (OidIsValid(rel->rd_rel->reltoastrelid))
	{
		Relation	t = table_open(rel->rd_rel->reltoastrelid, AccessShareLock);

		toast = RelationGetNumberOfBlocks(t);
		table_close(t, AccessShareLock);
	}
	table_close(rel, AccessShareLock);
	/* its rows, inline and TOASTed, against deliver.rotation_min_size */
	*big = ((uint64) blocks + toast) * (BLCKSZ / 1024) >= (uint64) deliver_rotation_min_size_kb;
	if (blocks > 0)
		return true;
	rel = table_open(q->done_rel[seg], AccessShareLock);
	blocks = RelationGetNumberOfBlocks(rel);
	table_close(rel, AccessShareLock);
	return blocks > 1;
}

/*
 * Can maintain_segments have anything to do: a segment switched away from
 * (closing or closed: to close, to reclaim), or an active one old enough
 * to rotate that holds something (active_segment_used)?  Read without the
 * queue's lock, so that a run over many quiet queues takes no row lock
 * and writes nothing; what changes meanwhile is seen by the next run.
 */
static bool
segments_need_work(QueueInfo *q)
{
	Oid			types[1] = {INT4OID};
	Datum		args[1] = {Int32GetDatum(q->queue_id)};
	bool		isnull;
	bool		switched;
	bool		old_enough;
	bool		too_old;
	bool		big;

	run_any(q, "states",
			"SELECT coalesce(bool_or(x.state IN ('closing', 'closed')), true), "
			"       coalesce(bool_or(x.state = 'active' AND x.changed_at <= "
			"           now() - current_setting('deliver.rotation_interval')::interval), false), "
			"       coalesce(bool_or(x.state = 'active' AND x.changed_at <= "
			"           now() - current_setting('deliver.rotation_max_interval')::interval), false) "
			"  FROM deliver.segment x WHERE x.queue_id = $1",
			1, types, args, NULL, SPI_OK_SELECT);
	switched = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	old_enough = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	too_old = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	if (switched)
		return true;			/* (also: no rows, a queue being dropped: the lock says) */
	return old_enough && active_segment_used(q, &big) && (big || too_old);
}

/* Is a table of the queue (InvalidOid: none) empty on disk, TOAST aside? */
static bool
table_empty(Oid relid)
{
	Relation	rel;
	BlockNumber blocks;

	if (!OidIsValid(relid))
		return false;			/* (the DELETE says what is wrong) */
	rel = table_open(relid, AccessShareLock);
	blocks = RelationGetNumberOfBlocks(rel);
	table_close(rel, AccessShareLock);
	return blocks == 0;
}

/*
 * Maintain one queue in this transaction (the caller is connected to SPI):
 * close and reclaim segments, rotate, and with expiries, delete expired
 * idempotency keys, dead letters and archived messages.  A quiet queue
 * costs a look at its segments' states (and with expiries at the size of
 * three tables).
 */
void
maintain_queue(QueueInfo *q, bool expiries, MaintainResult *r)
{
	char		archive[NAMEDATALEN];

	memset(r, 0, sizeof(*r));
	if (segments_need_work(q))
		maintain_segments(q, r);
	if (!expiries)
		return;

	/* (an empty table has nothing to expire: no statement) */
	if (!table_empty(q->dedup_rel))
		r->expired_keys = delete_expired(q, "keys", QUEUE_DEDUP, "expires_at < now()", 0, NULL, NULL);
	if (deliver_dead_letter_retention_s > 0 && !table_empty(q->dead_rel))
		r->expired_dead_letters =
			delete_expired(q, "dead", QUEUE_DEAD,
						   "dead_at < now() - current_setting('deliver.dead_letter_retention')::interval",
						   0, NULL, NULL);
	/* the archive keeps what was archived within its retention (also after
	 * the archive is turned off) */
	queue_relname(archive, QUEUE_ARCHIVE, q->queue_id, 0);
	if (!table_empty(get_relname_relid(archive, get_namespace_oid(DELIVER_SCHEMA, false))))
	{
		Oid			types[1] = {INT4OID};
		Datum		args[1] = {Int32GetDatum(q->queue_id)};

		r->expired_archive = delete_expired(q, "archive", QUEUE_ARCHIVE,
											"archived_at < now() - coalesce((SELECT archive_retention "
											"FROM deliver.queue WHERE queue_id = $1), '0')",
											1, types, args);
	}
}

/*
 * The segments' part of maintain_queue: close and reclaim segments,
 * rotate.  One maintainer per queue at a time (its catalog row is locked).
 */
static void
maintain_segments(QueueInfo *q, MaintainResult *r)
{
	Oid			types[2] = {INT4OID, XID8OID};
	Datum		args[2];
	bool		isnull;
	bool		archive;
	ClosedSegment *closed;
	bool		big;
	uint64	   *xmax;
	bool	   *ok;
	int			nclosed;
	int			i;

	args[0] = Int32GetDatum(q->queue_id);

	run_any(q, "lock", "SELECT archive_retention IS NOT NULL FROM deliver.queue WHERE queue_id = $1 FOR UPDATE",
		1, types, args, NULL, SPI_OK_SELECT);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("queue \"%s\" does not exist", q->name),
				 errdetail("It was dropped.")));
	archive = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

	/*
	 * Segments switched away from by an earlier (committed) run: every
	 * transaction that wrote to them has an xid below the next one now.
	 */
	args[1] = FullTransactionIdGetDatum(FullTransactionIdFromU64(dsnap_next_txid()));
	run_any(q, "close",
		"UPDATE deliver.segment x SET state = 'closed', closed_xmax = $2, changed_at = now() "
		"WHERE x.queue_id = $1 AND x.state = 'closing'",
		2, types, args, NULL, SPI_OK_UPDATE);

	/*
	 * Once no transaction below closed_xmax runs, every commit that wrote
	 * to the segment lies before the current WAL insert position.
	 */
	run_any(q, "lsn",
		"UPDATE deliver.segment x SET closed_lsn = pg_current_wal_insert_lsn() "
		"WHERE x.queue_id = $1 AND x.state = 'closed' AND x.closed_lsn IS NULL "
		"AND pg_snapshot_xmin(pg_current_snapshot()) >= x.closed_xmax",
		1, types, args, NULL, SPI_OK_UPDATE);

	/*
	 * A closed segment that holds only finished messages for every group is
	 * truncated with its done table (each group's restart point was just
	 * written anew: checkpoint_groups), once every push slot of this
	 * database confirmed past it, and while no push subscription of the
	 * queue waits for its backlog after a failover (push_backlog_held).
	 */
	run_any(q, "closed",
		"SELECT seg, closed_xmax, closed_lsn FROM deliver.segment "
		"WHERE queue_id = $1 AND state = 'closed' ORDER BY seg",
		1, types, args, NULL, SPI_OK_SELECT);
	nclosed = (int) SPI_processed;
	closed = palloc(sizeof(ClosedSegment) * Max(nclosed, 1));
	xmax = palloc(sizeof(uint64) * Max(nclosed, 1));
	ok = palloc(sizeof(bool) * Max(nclosed, 1));
	for (i = 0; i < nclosed; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	d = SPI_tuptable->tupdesc;
		Datum		x;

		closed[i].seg = DatumGetInt32(SPI_getbinval(t, d, 1, &isnull));
		x = SPI_getbinval(t, d, 2, &isnull);
		ok[i] = !isnull;
		xmax[i] = isnull ? 0 : U64FromFullTransactionId(DatumGetFullTransactionId(x));
		closed[i].lsn = DatumGetLSN(SPI_getbinval(t, d, 3, &closed[i].lsn_null));
	}
	if (nclosed > 0)
	{
		checkpoint_groups(q, xmax, ok, nclosed);
		if (push_backlog_held(q))
			nclosed = 0;
	}
	for (i = 0; i < nclosed; i++)
	{
		if (ok[i] && push_slots_past(q, closed[i].lsn, closed[i].lsn_null) &&
			reclaim_segment(q, &closed[i], archive, &r->archived))
			r->truncated++;
	}

	/*
	 * Switch to the next segment when the active one holds something
	 * (active_segment_used), the next one is empty, and the active one is
	 * older than rotation_interval and holds rotation_min_size, or older
	 * than rotation_max_interval.  A quiet queue thus truncates a segment
	 * now and then, not every rotation_interval: each truncation gives
	 * seven relations a new relfilenode and pg_class row, and every backend
	 * processes its invalidations.
	 */
	if (active_segment_used(q, &big))
	{
		Oid			rtypes[2] = {INT4OID, BOOLOID};
		Datum		rargs[2] = {Int32GetDatum(q->queue_id), BoolGetDatum(big)};

		run_any(q, "rotate",
			"WITH a AS (SELECT x.seg FROM deliver.segment x "
			"            WHERE x.queue_id = $1 AND x.state = 'active' "
			"              AND x.changed_at <= now() - current_setting('deliver.rotation_interval')::interval "
			"              AND ($2 OR x.changed_at <= now() - current_setting('deliver.rotation_max_interval')::interval)), "
			"     n AS (SELECT x.seg FROM deliver.segment x, a, deliver.queue q "
			"            WHERE q.queue_id = $1 AND x.queue_id = $1 AND x.seg = (a.seg + 1) % q.segments "
			"              AND x.state = 'empty') "
			"UPDATE deliver.segment x SET state = CASE WHEN x.seg = n.seg THEN 'active' ELSE 'closing' END, "
			"       changed_at = now() "
			"  FROM a, n WHERE x.queue_id = $1 AND x.seg IN (a.seg, n.seg) "
			"RETURNING x.seg, x.state",
			2, rtypes, rargs, NULL, SPI_OK_UPDATE_RETURNING);
		for (i = 0; i < (int) SPI_processed; i++)
		{
			HeapTuple	t = SPI_tuptable->vals[i];
			char	   *state = SPI_getvalue(t, SPI_tuptable->tupdesc, 2);

			if (state != NULL && strcmp(state, "active") == 0)
			{
				xact_note_segment_switch(q->queue_idx,
										 DatumGetInt32(SPI_getbinval(t, SPI_tuptable->tupdesc, 1, &isnull)));
				r->rotated = true;
			}
		}
	}
}

/*
 * deliver.maintain(queue_name DEFAULT NULL) returns one row per queue
 * maintained: maintain_queue() on that queue, or on every queue.
 */
Datum
deliver_maintain(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			types[1] = {TEXTOID};
	Datum		args[1];
	int32	   *ids;
	int			n;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	if (!PG_ARGISNULL(0))
		(void) queue_lookup(PG_GETARG_TEXT_PP(0));	/* its error when there is none */
	args[0] = PG_ARGISNULL(0) ? (Datum) 0 : PointerGetDatum(PG_GETARG_TEXT_PP(0));
	if (spi_run(catalog_owner(), "maint:queues",
				"SELECT queue_id FROM deliver.queue WHERE $1 IS NULL OR queue_name = $1 ORDER BY queue_id",
				1, types, args, PG_ARGISNULL(0) ? "n" : " ", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "deliver: could not list the queues");
	n = (int) SPI_processed;
	ids = palloc(sizeof(int32) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		bool		isnull;

		ids[i] = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
	}
	for (i = 0; i < n; i++)
	{
		QueueInfo  *q = queue_lookup_by_id(ids[i]);
		MaintainResult r;
		Datum		values[7];
		bool		nulls[7] = {false};

		maintain_queue(q, true, &r);
		values[0] = CStringGetTextDatum(q->name);
		values[1] = Int32GetDatum(r.truncated);
		values[2] = BoolGetDatum(r.rotated);
		values[3] = Int64GetDatum(r.expired_keys);
		values[4] = Int64GetDatum(r.expired_dead_letters);
		values[5] = Int64GetDatum(r.archived);
		values[6] = Int64GetDatum(r.expired_archive);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	SPI_finish();
	return (Datum) 0;
}
