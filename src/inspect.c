/*
 * inspect.c
 *		deliver.delete_message: remove one message that is not finished yet.
 *
 * A message is finished per group the way an ack finishes it: a finish
 * record (kind DONE_DELETED) in the caller's transaction, so it stays
 * finished after a restart.  Where the message stands decides how the
 * group's live state learns of it:
 * - handed out (a lease slot of the group holds it: leased, waiting for
 *   redelivery or held behind its FIFO key): the slot is finished as an ack
 *   finishes it, when the transaction commits (settle_finish, xact.c); its
 *   delivery id stops being current then;
 * - passed by the cursor without a slot, or finished before a restart: it
 *   is finished already, nothing to do; but for a FIFO message passed over
 *   behind its busy key (passover.c) that no finish record names: the
 *   record makes the group skip it when it reads it again (group_reread
 *   reads the records again), or, should it be read again meanwhile, is
 *   taken as for a message ahead;
 * - not reached by the cursor yet: the cursor reads finish records only for
 *   rows below the group's horizon (scan_index, recovery_filter), so the
 *   horizon is raised past the message's transaction and the group's
 *   recovery generation bumped, which makes every backend read the group's
 *   finish records again (recovery.c) before it hands out such a row.  The
 *   finish record is written before that, so a receive meeting the row
 *   while this transaction runs holds it as pending, and skips it once this
 *   commits (a rollback makes it deliverable again).
 * A delayed message is simply deleted from the delayed table.  Every group
 * gets a finish record, also one that had finished the message: a
 * reset_consumer_group keeps them (deleted stays deleted).
 */
#include "postgres.h"

#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"
#include "utils/xid8.h"

#include "args.h"
#include "catalog.h"
#include "checkpoint.h"
#include "deliver.h"
#include "lease.h"
#include "recovery.h"
#include "registry.h"
#include "scan.h"
#include "segment.h"
#include "shmem.h"
#include "snap.h"
#include "spi.h"
#include "tables.h"
#include "xact.h"

PG_FUNCTION_INFO_V1(deliver_delete_message);

/* where a group stands with the message */
#define STAND_FINISHED	0		/* nothing to do */
#define STAND_SLOT		1		/* a slot held it: now finishing with us */
#define STAND_AHEAD		2		/* not reached by the cursor */
#define STAND_PASSED	3		/* FIFO: passed over, to be read again */

/*
 * The group's slot holding this message, or -1.  Under the group lock.
 */
static int32
find_slot(GroupEntry *gs, int64 message_id)
{
	SlotList   *lists[3] = {&gs->leased, &gs->ready_list, &gs->blocked};
	int			l;

	for (l = 0; l < (int) lengthof(lists); l++)
	{
		int32		idx;

		for (idx = lists[l]->head; idx >= 0; idx = deliver_slots[idx].next)
			if (deliver_slots[idx].message_id == message_id)
				return idx;
	}
	return -1;
}

/*
 * Under the group lock: has the cursor passed the row (txid, id)?
 */
static bool
cursor_passed(GroupEntry *gs, int gidx, uint64 txid, int64 id)
{
	TimestampTz cts;

	if (dsnap_visible(group_snap(gidx, SNAP_LO), txid))
		return true;
	if (!gs->in_window || !dsnap_visible(group_snap(gidx, SNAP_HI), txid))
		return false;
	cts = txid_commit_time(txid);
	if (cts != gs->pos_cts)
		return cts < gs->pos_cts;
	if (txid != gs->pos_txid)
		return txid < gs->pos_txid;
	return id <= gs->pos_id;
}

/*
 * Under the group lock: a slot holds the message; finish it with this
 * transaction, as an ack does.  Another transaction finishing it already
 * (an ack, a dead-letter move, a prepared transaction) is an error.
 */
static void
claim_slot(QueueInfo *q, GroupEntry *gs, int32 idx, int64 message_id)
{
	LeaseSlot  *s = &deliver_slots[idx];

	if (s->finish_pending)
		(void) slot_resolve_finish(gs, idx);
	if (deliver_slots[idx].message_id != message_id || s->state == SLOT_FREE)
		return;					/* finished meanwhile */
	if (s->finish_pending)
	{
		if (TransactionIdIsCurrentTransactionId(s->finish_xid))
			return;
		LWLockRelease(&gs->lock);
		ereport(ERROR,
				(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
				 errmsg("message %lld of queue \"%s\" is being finished by another transaction",
						(long long) message_id, q->name),
				 errhint("Try again once that transaction (an ack, a nack to the dead letters or a prepared transaction) has ended.")));
	}
	/*
	 * Waiting for redelivery or held behind its FIFO key: it stays on its
	 * list (receives and sweeps pass over a slot whose finish is pending)
	 * with a delivery id of its own, so that nothing else is finished in
	 * its place should the slot be given back meanwhile; a rollback leaves
	 * it where it was.
	 */
	if (s->state != SLOT_LEASED)
		s->delivery_id = lease_new_delivery_id(idx);
	s->finish_pending = true;
	s->finish_kind = DONE_DELETED;
	s->finish_xid = GetTopTransactionId();
	xact_note_finish(idx, s->delivery_id);
}

/*
 * Where the group stands with the row (txid, id); takes the slot when one
 * holds it.  With ahead_done (the finish record is written already) a
 * message still ahead of the cursor is hidden from it here.
 */
static int
group_stand(QueueInfo *q, int32 group_id, uint64 txid, int64 id, bool ahead_done)
{
	int			gidx;
	GroupEntry *gs = group_lock(q, group_id, &gidx);
	int32		idx = q->guarantee == G_AT_MOST_ONCE ? -1 : find_slot(gs, id);
	int			stand;

	if (idx >= 0)
	{
		claim_slot(q, gs, idx, id);
		stand = STAND_SLOT;
	}
	else if (cursor_passed(gs, gidx, txid, id))
	{
		/*
		 * passed over with its FIFO key (passover.c) when no finish record
		 * names it: the group reads its finish records again before it
		 * reads the row again (group_reread)
		 */
		if (gs->npassed > 0 && !ahead_done && !recovery_finished(q, gs->group_id, id))
			stand = STAND_PASSED;
		else
			stand = STAND_FINISHED;
	}
	else
	{
		TransactionId pending = InvalidTransactionId;

		if (txid < gs->horizon_txid && !ahead_done &&
			recovery_filter(q, gs, id, &pending) == 0)
			stand = STAND_FINISHED;	/* finished before the group recovered */
		else
		{
			stand = STAND_AHEAD;
			if (ahead_done)
			{
				/* the cursor reads the finish records again up to past it */
				if (gs->horizon_txid <= txid)
					gs->horizon_txid = txid + 1;
				gs->boot_gen++;
			}
		}
	}
	LWLockRelease(&gs->lock);
	return stand;
}

/*
 * The stored message: its transaction and target group (0: every group).
 * False when no segment holds it (committed and visible to us).
 */
static bool
find_message(QueueInfo *q, int64 id, uint64 *txid, int32 *target)
{
	int			seg;

	for (seg = 0; seg < q->nsegments; seg++)
	{
		char		key[STATEMENT_KEY_LEN];
		char		sql[256];
		char		rel[NAMEDATALEN];
		Oid			types[1] = {INT8OID};
		Datum		args[1];
		bool		isnull;
		Datum		d;

		args[0] = Int64GetDatum(id);
		snprintf(key, sizeof(key), "findmsg:%d:%d", q->queue_id, seg);
		snprintf(sql, sizeof(sql),
				 "SELECT txid, target_group FROM deliver.%s WHERE message_id OPERATOR(pg_catalog.=) $1",
				 queue_relname(rel, QUEUE_SEGMENT, q->queue_id, seg));
		if (spi_run(q->owner, key, sql, 1, types, args, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "deliver: could not look message %lld up", (long long) id);
		if (SPI_processed == 0)
			continue;
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		*txid = U64FromFullTransactionId(DatumGetFullTransactionId(d));
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
		*target = isnull ? 0 : DatumGetInt32(d);
		return true;
	}
	return false;
}

/* a delayed message: deleted from the delayed table; was there one? */
static bool
delete_delayed(QueueInfo *q, int64 id)
{
	char		key[STATEMENT_KEY_LEN];
	char		sql[256];
	char		rel[NAMEDATALEN];
	Oid			types[1] = {INT8OID};
	Datum		args[1];

	args[0] = Int64GetDatum(id);
	snprintf(key, sizeof(key), "deldelayed:%d", q->queue_id);
	snprintf(sql, sizeof(sql),
			 "DELETE FROM deliver.%s WHERE message_id OPERATOR(pg_catalog.=) $1",
			 queue_relname(rel, QUEUE_DELAYED, q->queue_id, 0));
	if (spi_run(q->owner, key, sql, 1, types, args, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "deliver: could not delete delayed message %lld", (long long) id);
	return SPI_processed > 0;
}

/*
 * deliver.delete_message(queue_name, message_id) returns boolean: the
 * message is never delivered again to any group that had not finished it;
 * false when no group had it unfinished (or there is no such message).
 */
Datum
deliver_delete_message(PG_FUNCTION_ARGS)
{
	QueueInfo  *q;
	int64		id;
	uint64		txid = 0;
	int32		target = 0;
	bool		deleted = false;
	ScanCtx		c;
	DSnap	   *done;
	int			i;

	SPI_connect();
	q = queue_lookup(PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0));
	/* the right first: a role without it learns nothing of the messages */
	queue_check_privilege(q, ACL_SELECT, "delete messages of");
	arg_not_null(fcinfo, 1, "message_id");
	id = PG_GETARG_INT64(1);

	if (delete_delayed(q, id))
	{
		SPI_finish();
		PG_RETURN_BOOL(true);
	}
	if (!find_message(q, id, &txid, &target))
	{
		SPI_finish();
		PG_RETURN_BOOL(false);
	}

	memset(&c, 0, sizeof(c));
	c.q = q;
	c.cxt = CurrentMemoryContext;
	scan_open(&c);				/* the done tables locked before any group lock */
	done = palloc(deliver_snap_size);
	for (i = 0; i < q->ngroups; i++)
	{
		int32		group_id = q->groups[i].group_id;
		int			stand;
		int			gidx;
		GroupEntry *gs;

		if (target != 0 && target != group_id)
			continue;				/* redriven to another group */
		if (dsnap_visible(q->groups[i].start, txid))
			stand = STAND_FINISHED; /* sent before the group began */
		else
			stand = group_stand(q, group_id, txid, id, false);
		if (stand != STAND_FINISHED)
			deleted = true;

		/*
		 * The finish record, with the group's restart point (as an ack);
		 * for a group that had finished the message too:
		 * reset_consumer_group keeps these records, so that a group moved
		 * back does not get a deleted message again.
		 */
		gs = group_lock(q, group_id, &gidx);
		checkpoint_restart_point(gs, gidx, done);
		LWLockRelease(&gs->lock);
		done_write(q, group_id, DONE_DELETED, &id, 1, done);

		/*
		 * Still ahead of the cursor: hide it now that the record is there
		 * (a receive may have handed it out meanwhile: then its slot is
		 * taken as above).
		 */
		if (stand == STAND_AHEAD || stand == STAND_PASSED)
			(void) group_stand(q, group_id, txid, id, true);
	}
	scan_close(&c);
	SPI_finish();
	PG_RETURN_BOOL(deleted);
}
