/*
 * deadletter.c
 *		Dead letters: claiming the messages out of attempts, moving them
 *		to the queue's dead-letter table, reading them.
 *
 * A message that used up its attempts is claimed under its group's lock
 * when a receive or a sweep (sweep.c) finds it ready, and written to
 * deliver.q<id>_dead with the reason and last error in that transaction;
 * it is finished when the transaction commits.  Redrive is in send.c (it
 * sends them again); delete_dead_letters drops chosen ones for good.
 */
#include "postgres.h"

#include "executor/spi.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "args.h"
#include "catalog.h"
#include "checkpoint.h"
#include "deadletter.h"
#include "deliver.h"
#include "lease.h"
#include "scan.h"
#include "segment.h"
#include "shmem.h"
#include "snap.h"
#include "spi.h"
#include "tables.h"
#include "xact.h"

PG_FUNCTION_INFO_V1(deliver_dead_letters);
PG_FUNCTION_INFO_V1(deliver_delete_dead_letters);

/*
 * Under the group lock: a message taken off the ready list is out of
 * attempts; it moves to the dead letters in this transaction (finished
 * when it commits, leased until then so nobody else takes it).
 */
void
dead_letter_claim(GroupEntry *gs, int32 idx, TimestampTz now, int64 vt_ms, Delivery *o)
{
	LeaseSlot  *s = &deliver_slots[idx];

	memset(o, 0, sizeof(Delivery));
	s->state = SLOT_LEASED;
	s->delivery_id = lease_new_delivery_id(idx);	/* a token of the move's own */
	s->finish_pending = true;
	s->finish_kind = DONE_DEAD;
	s->finish_xid = GetTopTransactionId();
	s->lease_expires = now + vt_ms * 1000;
	slist_push(&gs->leased, idx);
	o->slot = idx;
	o->delivery_id = s->delivery_id;
	o->attempt = s->attempt;
	o->dead_reason = s->reason;
	strlcpy(o->last_error, s->last_error, DELIVER_ERROR_LEN);
	o->row.txid = s->txid;
	o->row.id = s->message_id;
	o->row.seg = s->seg;
	xact_note_finish(idx, s->delivery_id);
}

/*
 * The reason a dead letter gives: why its message was last made ready
 * again before it ran out of attempts, or why it left early (rejected by
 * a nack, expired, dropped by a depth limit).
 */
static const char *
reason_text(int reason)
{
	switch (reason)
	{
		case REASON_EXPIRED:
			return "lease expired";
		case REASON_NACKED:
			return "nacked";
		case REASON_ABORTED:
			return "receiving transaction rolled back";
		case REASON_REJECTED:
			return "rejected";
		case REASON_TTL:
			return "expired";
		case REASON_OVERFLOW:
			return "overflow";
	}
	return "max attempts";
}

/*
 * Move messages that used up their attempts, expired, were nacked to the
 * dead letters or dropped by a depth limit, to the dead letters (expired
 * ones of a queue with on_expire 'drop' are only
 * finished); they finish when this transaction commits.  dead[i].slot is
 * -1 for an expired message of an at-most-once queue (no lease).
 */
void
dead_letter_move(ScanCtx *c, Delivery *dead, int ndead)
{
	int64	   *ids = palloc(sizeof(int64) * ndead);
	int			nids = 0;
	int			i;
	char		key[STATEMENT_KEY_LEN];
	char		sql[512];
	char		rel[NAMEDATALEN];
	Oid			types[9] = {INT4OID, INT8OID, TIMESTAMPTZOID, TEXTOID, JSONBOID, JSONBOID,
	INT4OID, TEXTOID, TEXTOID};
	DSnap	   *done = palloc(deliver_snap_size);

	snprintf(key, sizeof(key), "dead:%d", c->q->queue_id);
	snprintf(sql, sizeof(sql),
			 "INSERT INTO deliver.%s (group_id, message_id, enqueued_at, ordering_key, "
			 "headers, payload, attempts, reason, last_error) "
			 "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
			 queue_relname(rel, QUEUE_DEAD, c->q->queue_id, 0));
	for (i = 0; i < ndead; i++)
	{
		Delivery   *o = &dead[i];
		Datum		args[9];
		char		nulls[9] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
		int			rc;

		/* (a row read by the cursor just now is fetched already) */
		if (!o->fetched && !fetch_row(c, &o->row))
		{
			lease_forget_vanished(c->gs, o->slot, o->delivery_id);
			continue;
		}
		/* an expired message of a queue that drops them: only finished */
		if (o->dead_reason == REASON_TTL && c->q->expire_drop)
		{
			ids[nids++] = o->row.id;
			continue;
		}
		args[0] = Int32GetDatum(c->group_id);
		args[1] = Int64GetDatum(o->row.id);
		args[2] = TimestampTzGetDatum(o->row.enqueued_at);
		args[3] = o->row.key;
		nulls[3] = o->row.key_null ? 'n' : ' ';
		args[4] = o->row.headers;
		nulls[4] = o->row.headers_null ? 'n' : ' ';
		args[5] = o->row.payload;
		args[6] = Int32GetDatum(o->attempt);
		args[7] = CStringGetTextDatum(reason_text(o->dead_reason));
		args[8] = CStringGetTextDatum(o->last_error);
		nulls[8] = o->last_error[0] ? ' ' : 'n';
		rc = spi_run(c->q->owner, key, sql, 9, types, args, nulls, false, 0);
		if (rc != SPI_OK_INSERT)
			elog(ERROR, "deliver: could not write dead letter: %s", SPI_result_code_string(rc));
		ids[nids++] = o->row.id;
	}
	if (nids == 0)
		return;
	LWLockAcquire(&c->gs->lock, LW_SHARED);
	checkpoint_restart_point(c->gs, c->gidx, done);
	LWLockRelease(&c->gs->lock);
	done_write(c->q, c->group_id, DONE_DEAD, ids, nids, done);
}

/*
 * deliver.dead_letters(queue_name, consumer_group, max_messages) returns
 * setof (message_id, group_name, payload, headers, ordering_key, attempts,
 * reason, last_error, enqueued_at, dead_at): the oldest first; the dead
 * letters of one group, or (NULL) of every group.
 */
Datum
deliver_dead_letters(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	QueueInfo  *q;
	int32		max;
	char		key[STATEMENT_KEY_LEN];
	char		sql[512];
	char		rel[NAMEDATALEN];
	Oid			types[2] = {INT4OID, INT4OID};
	Datum		args[2];
	char		nulls[2] = {' ', ' '};

	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	q = queue_lookup_readonly(PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0));
	max = arg_int_at_least(fcinfo, 2, 1, "max_messages");
	queue_check_privilege(q, ACL_SELECT, "read dead letters of");
	if (PG_ARGISNULL(1))
		nulls[0] = 'n';
	else
		args[0] = Int32GetDatum(queue_group(q, PG_GETARG_TEXT_PP(1))->group_id);
	args[1] = Int32GetDatum(max);
	snprintf(key, sizeof(key), "deadlist:%d", q->queue_id);
	snprintf(sql, sizeof(sql),
			 "SELECT d.message_id, g.group_name, d.payload, d.headers, d.ordering_key, "
			 "d.attempts, d.reason, d.last_error, d.enqueued_at, d.dead_at "
			 "FROM deliver.%s d JOIN deliver.consumer_group g USING (group_id) "
			 "WHERE $1 IS NULL OR d.group_id = $1 "
			 "ORDER BY d.dead_at, d.message_id LIMIT $2",
			 queue_relname(rel, QUEUE_DEAD, q->queue_id, 0));
	spi_return_query(rsinfo, q->owner, key, sql, 2, types, args, nulls, "dead letters");
	SPI_finish();
	return (Datum) 0;
}

/*
 * deliver.delete_dead_letters(queue_name, message_ids, consumer_group)
 * returns bigint: deletes the dead letters of those messages (of one
 * consumer group, or of every group when it is NULL) for good, and returns
 * how many.  message_ids must be given: purge_queue empties a queue.
 */
Datum
deliver_delete_dead_letters(PG_FUNCTION_ARGS)
{
	QueueInfo  *q;
	Oid			types[2] = {INT8ARRAYOID, TEXTOID};
	Datum		args[2];
	char		nulls[2] = {' ', ' '};
	char		sql[512];
	char		rel[NAMEDATALEN];
	char		key[STATEMENT_KEY_LEN];
	uint64		n;

	SPI_connect();
	q = queue_lookup(PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0));
	/* the right first: a role without it learns nothing of the groups */
	queue_check_privilege(q, ACL_SELECT, "delete dead letters of");
	arg_not_null(fcinfo, 1, "message_ids");
	if (!PG_ARGISNULL(2))
		(void) queue_group(q, PG_GETARG_TEXT_PP(2));	/* its error when there is none */
	args[0] = PG_GETARG_DATUM(1);
	args[1] = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
	nulls[1] = PG_ARGISNULL(2) ? 'n' : ' ';
	snprintf(key, sizeof(key), "deaddelete:%d", q->queue_id);
	snprintf(sql, sizeof(sql),
			 "DELETE FROM deliver.%s d USING deliver.consumer_group g "
			 "WHERE g.group_id = d.group_id AND d.message_id = ANY ($1) "
			 "AND ($2 IS NULL OR g.group_name = $2)",
			 queue_relname(rel, QUEUE_DEAD, q->queue_id, 0));
	if (spi_run(q->owner, key, sql, 2, types, args, nulls, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "deliver: could not delete dead letters of queue \"%s\"", q->name);
	n = SPI_processed;
	SPI_finish();
	PG_RETURN_INT64((int64) n);
}
