/*
 * receive.c
 *		deliver.receive: hand out messages to a consumer group, and wait
 *		for them (long poll).
 *
 * Order of service: messages due for redelivery first (nacked, expired,
 * rolled back), then new messages from the group's cursor (cursor.c, which
 * only passes rows whose transactions are visible in its window's upper
 * snapshot).  Messages out of attempts met on the way move to the dead
 * letters (deadletter.c).  With a wait, a receive that found nothing
 * sleeps on the queue's condition variable, which the commit of a sender
 * broadcasts.
 *
 * Queues with priorities, and FIFO queues whose keys may have more than
 * one message out, read ahead and choose (readahead.c); FIFO queues hold
 * messages back behind busy keys and pass over the rest of a long run
 * (passover.c); the lease slots of what a receive takes are take.c's.
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "pgstat.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "args.h"
#include "catalog.h"
#include "checkpoint.h"
#include "cursor.h"
#include "deadletter.h"
#include "delayed.h"
#include "deliver.h"
#include "expiry.h"
#include "fifo.h"
#include "flow.h"
#include "hooks.h"
#include "lease.h"
#include "overflow.h"
#include "passover.h"
#include "readahead.h"
#include "registry.h"
#include "scan.h"
#include "segment.h"
#include "settings.h"
#include "shmem.h"
#include "snap.h"
#include "take.h"
#include "worker.h"
#include "xact.h"

PG_FUNCTION_INFO_V1(deliver_receive);
/*
 * Most messages out of attempts one receive moves to the dead letters (the
 * room of its dead[] array): at least this many, or max_messages when more.
 */
#define RECEIVE_DEAD_BATCH	100

/*
 * Under the group lock: take up to max messages.  Redeliveries first, then
 * the cursor.  Fills out[] (room for max) and dead[] (messages out of
 * attempts or expired, room for max_dead).  With drop (a send over a
 * queue's max_depth with overflow drop_oldest), every message taken goes
 * to dead[] with reason overflow, up to max_dead of them, redeliveries
 * waiting for their backoff too, and out[] is not used.
 */
static int
take_messages(ScanCtx *c, int max, int64 vt_ms, Delivery *out, Delivery *dead, int max_dead,
			  int *ndead, bool *out_of_slots, bool drop)
{
	GroupEntry *gs = c->gs;
	QueueInfo  *q = c->q;
	TimestampTz now = GetCurrentTimestamp();
	int			n = 0;
	int			windows = 0;
	bool		leases = q->guarantee != G_AT_MOST_ONCE;
	MessageRow *rows = NULL;
	int			budget = PASS_OVER_MAX;
	bool		stop = false;

	*ndead = 0;
	*out_of_slots = false;
	if (drop)
		max = 0;				/* (nothing goes to out[]) */
	else
		gs->last_receive = now;

	if (leases)
	{
		int32		idx;
		int32		next;

		group_expire_leases(gs, q, now);
		if (unlikely(gs->npassed > 0) && !drop)
			reread_passed(c);
		/* (read ahead: to choose by priority, or to serve FIFO keys in turn) */
		if (queue_reads_ahead(q) && !drop)
			return take_read_ahead(c, max, vt_ms, out, dead, max_dead, ndead, out_of_slots, now);
		for (idx = gs->ready_list.head; idx >= 0 && (drop ? *ndead < max_dead : n < max); idx = next)
		{
			LeaseSlot  *s = &deliver_slots[idx];

			next = s->next;
			if ((s->visible_at > now && !drop) || s->finish_pending)
				continue;		/* (finish_pending: a delete_message not ended yet) */
			if (unlikely(drop) || message_expired(q, s->enqueued_at, s->expires_at, now))
			{
				/* never handed out again: to the dead letters (or dropped) */
				if (*ndead >= max_dead)
					continue;
				slist_remove(&gs->ready_list, idx);
				s->reason = drop ? REASON_OVERFLOW : REASON_TTL;
				dead_letter_claim(gs, idx, now, vt_ms, &dead[(*ndead)++]);
				continue;
			}
			if (s->attempt >= q->max_attempts)
			{
				/* dead[] is full: the rest wait for the next receive or sweep */
				if (*ndead >= max_dead)
					continue;
				slist_remove(&gs->ready_list, idx);
				dead_letter_claim(gs, idx, now, vt_ms, &dead[(*ndead)++]);
				continue;
			}
			if (q->fifo && s->has_key && !ready_key_may_go(q, gs, idx))
				continue;		/* (its key at a limit lowered since) */
			lease_ready(gs, idx, &out[n++], now, vt_ms);
		}
	}

	while ((drop ? *ndead < max_dead : n < max) && !*out_of_slots && !stop)
	{
		int			got;
		int			i;
		bool		exhausted;

		if (drop ? held_back_full(gs) : !may_read_on(gs))
			break;

		if (!gs->in_window)
		{
			if (windows++ >= 2)
				break;
			open_window(c, now);
		}
		/* each segment may return up to max rows before they are merged */
		if (rows == NULL)
			rows = MemoryContextAlloc(c->cxt, sizeof(MessageRow) * (drop ? max_dead : max) * q->nsegments);
		/* an expired row takes room in dead[] instead of out[] */
		if (*ndead >= max_dead)
			break;
		got = take_window(c, rows, drop ? max_dead - *ndead : Min(max - n, max_dead - *ndead),
						  &exhausted);
		for (i = 0; i < got; i++)
		{
			MessageRow *r = &rows[i];
			Delivery   *o;
			bool		expired = drop || message_expired(q, r->enqueued_at, r->expires_at, now);
			char		reason = drop ? REASON_OVERFLOW : REASON_TTL;

			if (leases)
			{
				int32		idx;
				LeaseSlot  *s;

				if (q->fifo && !drop)
				{
					int			p = pass_over(c, r, &budget);

					if (p == PASS_OVER)
						continue;
					if (p == PASS_STOP)
					{
						stop = true;
						exhausted = false;
						break;
					}
				}
				idx = slot_alloc(q->queue_idx);
				if (idx < 0)
				{
					*out_of_slots = true;
					exhausted = false;
					break;
				}
				s = slot_for_row(c, idx, r);
				if (TransactionIdIsValid(r->pending_xid))
				{
					hold_pending_finish(c, idx, r, now, vt_ms);
					continue;
				}
				if (unlikely(expired))
				{
					/* expired (or dropped) before its first delivery */
					s->reason = reason;
					dead_letter_claim(gs, idx, now, vt_ms, &dead[(*ndead)++]);
					dead[*ndead - 1].row = *r;
					dead[*ndead - 1].fetched = true;
					continue;
				}
				if (q->fifo && s->has_key && !fifo_key_take(idx, q->fifo_key_limit))
				{
					s->state = SLOT_BLOCKED;
					slist_push(&gs->blocked, idx);
					continue;
				}
				o = &out[n++];
				memset(o, 0, sizeof(Delivery));
				o->row = *r;
				o->fetched = true;
				lease_message(gs, idx, o, now, vt_ms);
			}
			else
			{
				window_advance(gs, r);
				if (unlikely(expired))
				{
					/* at-most-once: finished by the move's done row */
					o = &dead[(*ndead)++];
					memset(o, 0, sizeof(Delivery));
					o->row = *r;
					o->fetched = true;
					o->slot = -1;
					o->dead_reason = reason;
					continue;
				}
				o = &out[n++];
				memset(o, 0, sizeof(Delivery));
				o->row = *r;
				o->fetched = true;
				o->slot = -1;
				o->attempt = 1;
				gs->delivered_total++;
			}
		}
		if (exhausted)
			close_window(c);
		else if (got == 0)
			break;
	}
	return n;
}

/*
 * A send over the max_depth of a queue with overflow drop_oldest: move up
 * to count of the group's oldest unfinished messages (redeliveries first,
 * then the cursor's, in commit order) to the dead letters, with reason
 * overflow, in this transaction (a rollback gives them back).  Messages in
 * flight and FIFO-held ones are not taken.  Returns how many it moved.
 */
int
overflow_drop_oldest(QueueInfo *q, int32 group_id, int count)
{
	ScanCtx		c;
	Delivery   *dead = palloc(sizeof(Delivery) * count);
	int			ndead = 0;
	bool		out_of_slots;

	memset(&c, 0, sizeof(c));
	c.q = q;
	c.group_id = group_id;
	c.cxt = CurrentMemoryContext;
	scan_open(&c);
	c.gs = group_lock(q, group_id, &c.gidx);
	c.snap = RegisterSnapshot(GetLatestSnapshot());
	(void) take_messages(&c, 0, q->visibility_ms, NULL, dead, count, &ndead, &out_of_slots, true);
	LWLockRelease(&c.gs->lock);
	if (ndead > 0)
		dead_letter_move(&c, dead, ndead);
	UnregisterSnapshot(c.snap);
	scan_close(&c);
	pfree(dead);
	return ndead;
}

/*
 * take_messages for a group under flow control (GroupEntry.flow not
 * FLOW_OFF): nothing while paused, no more than the whole tokens of its
 * rate; -1 (nothing done) when its settings must be read first
 * (flow_reload).
 */
static int
take_messages_flow(ScanCtx *c, int max, int64 vt_ms, Delivery *out, Delivery *dead, int max_dead,
				   int *ndead, bool *out_of_slots)
{
	GroupEntry *gs = c->gs;
	int			n;

	*ndead = 0;
	*out_of_slots = false;
	if (gs->flow == FLOW_UNLOADED)
		return -1;
	max = flow_limit(gs, GetCurrentTimestamp(), max);
	if (max == 0)
		return 0;
	n = take_messages(c, max, vt_ms, out, dead, max_dead, ndead, out_of_slots, false);
	flow_taken(gs, n);
	return n;
}

/* a poll's earliest look at a queue whose delayed messages the worker moves */
#define DUE_RECHECK_MS	250

/*
 * How long to sleep in a long poll before something may be due.
 */
static long
next_wakeup_ms(QueueInfo *q, GroupEntry *gs, long remaining)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz t = now + (int64) remaining * 1000;
	int32		idx;
	/* without a worker here, this poll cannot make delayed messages visible */
	TimestampTz due = deliver_worker_serves_database() ?
		deliver_queues[q->queue_idx].delayed_due : 0;
	TimestampTz token = 0;		/* flow control: when the group may take again */

	LWLockAcquire(&gs->lock, LW_SHARED);
	/* paused, or no token: nothing is handed out before resume or the next token */
	if (unlikely(gs->flow == FLOW_ON))
		token = flow_next_token(gs, now);
	if (token != 0)
		t = Min(t, token);
	else
	{
		for (idx = gs->ready_list.head; idx >= 0; idx = deliver_slots[idx].next)
			t = Min(t, deliver_slots[idx].visible_at);
		if (gs->next_expiry < t)
			t = gs->next_expiry;
	}
	LWLockRelease(&gs->lock);

	/*
	 * The worker moves a delayed message when it comes due, and its commit
	 * wakes this poll: the due time is only a safety net, never nearer than
	 * DUE_RECHECK_MS.  (A due time already past, or unknown, while the
	 * worker is busy, stopped or restarting, would otherwise wake the poll
	 * every millisecond for nothing.)
	 */
	if (due > 0)
		t = Min(t, Max(due, now + (int64) DUE_RECHECK_MS * 1000));
	if (t <= now)
		return 1;
	return (long) ((t - now + 999) / 1000);
}

/*
 * Without a maintenance worker in the database, a receive moves the delayed
 * messages that came due itself, in a subtransaction: when it moved none,
 * the subtransaction is rolled back, so the tables it looked at are not
 * locked while the long poll waits (drop_queue and purge_queue need them).
 * True when it moved some: they show when this transaction commits.
 */
static bool
move_due_here(QueueInfo *q)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	int64		moved;

	if (!delayed_came_due(q))
		return false;			/* (the common case: no subtransaction) */
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	moved = move_due_delayed(q);
	if (moved > 0)
		ReleaseCurrentSubTransaction();
	else
		RollbackAndReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return moved > 0;
}

/*
 * An at-most-once receive removes what it returns when its transaction
 * commits; a transaction that fails after the client saw the messages would
 * bring them back after a restart.  So such a receive must be a
 * transaction of its own, committed as soon as it is done: not in a
 * transaction block (explicit, or the implicit one of several statements
 * sent as one query string), not after other statements of a pipeline,
 * not inside a function, DO block or procedure.  And it commits at once,
 * before the next statement of a pipeline runs (as CREATE DATABASE does).
 */
static void
at_most_once_own_transaction(QueueInfo *q)
{
	const char *where = NULL;

	if (IsTransactionBlock())
		where = "inside a transaction block";
	else if (IsSubTransaction())
		where = "inside a subtransaction";
	else if (MyXactFlags & XACT_FLAGS_PIPELINING)
		where = "after other statements of a pipeline";
	else if (!statement_is_top_level())
		where = "from a function, DO block or procedure";
	if (where)
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("receive from at_most_once queue \"%s\" cannot run %s", q->name, where),
				 errdetail("At-most-once removes a message when the receive commits, so the receive "
						   "must be a transaction of its own."),
				 errhint("Call deliver.receive as a statement of its own, in autocommit mode.")));
	MyXactFlags |= XACT_FLAGS_NEEDIMMEDIATECOMMIT;
}

/*
 * deliver.receive(queue_name, max_messages, visibility_timeout, wait,
 * consumer_group) returns setof (message_id, delivery_id, payload, headers,
 * ordering_key, attempt, enqueued_at, lease_expires_at)
 */
Datum
deliver_receive(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	QueueInfo  *q;
	const GroupInfo *g;
	int			max;
	int64		vt_ms;
	int64		wait_ms;
	ScanCtx		c;
	Delivery   *out;
	Delivery   *dead;
	int			n = 0;
	int			ndead = 0;
	int			max_dead;
	int			i;
	bool		out_of_slots = false;
	TimestampTz deadline;
	bool		sleeping = false;
	bool		moved_due = false;

	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	q = queue_lookup(PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0));
	max = arg_max_messages(fcinfo, 1);
	vt_ms = arg_interval_ms(fcinfo, 2, q->visibility_ms, 1, DELIVER_MAX_VISIBILITY_MS,
							"visibility_timeout", "1 millisecond and " DELIVER_MAX_VISIBILITY_TEXT);
	wait_ms = arg_interval_ms(fcinfo, 3, 0, 0, DELIVER_MAX_WAIT_MS, "wait",
							  "0 and " DELIVER_MAX_WAIT_TEXT);
	g = queue_group(q, PG_ARGISNULL(4) ? NULL : PG_GETARG_TEXT_PP(4));
	queue_check_privilege(q, ACL_SELECT, "receive from");
	if (q->guarantee == G_AT_MOST_ONCE)
		at_most_once_own_transaction(q);

	memset(&c, 0, sizeof(c));
	c.q = q;
	c.group_id = g->group_id;
	c.cxt = CurrentMemoryContext;
	out = palloc(sizeof(Delivery) * max);
	max_dead = Max(max, RECEIVE_DEAD_BATCH);
	dead = palloc(sizeof(Delivery) * max_dead);
	deadline = GetCurrentTimestamp() + wait_ms * 1000;

	for (;;)
	{
		/* a wake-up from here on means look again (queue_wake) */
		uint64		wakes = pg_atomic_read_u64(&deliver_queues[q->queue_idx].wakes);

		scan_open(&c);

		/*
		 * Delayed messages are moved by the maintenance worker, whose commit
		 * wakes long polls.  Without a worker in this database, a receive
		 * moves them itself (after locking the segments: the order of
		 * locks drop_queue follows); they become visible when its
		 * transaction commits.  So it does not wait after moving: it would
		 * sleep with what it moved unseen, holding the tables' locks.
		 */
		if (!moved_due && !deliver_worker_serves_database() && move_due_here(q))
			wait_ms = 0;
		moved_due = true;

		/*
		 * The scan snapshot is taken under the group's lock, so it is never
		 * older than the window another backend may have just opened.
		 */
		for (;;)
		{
			uint32		flow_gen;

			c.gs = group_lock(q, g->group_id, &c.gidx);
			c.snap = RegisterSnapshot(GetLatestSnapshot());
			/* the one test flow control costs a group without it */
			if (likely(c.gs->flow == FLOW_OFF))
			{
				n = take_messages(&c, max, vt_ms, out, dead, max_dead, &ndead, &out_of_slots, false);
				break;
			}
			n = take_messages_flow(&c, max, vt_ms, out, dead, max_dead, &ndead, &out_of_slots);
			if (n >= 0)
				break;
			/* the group's flow control settings changed: read them, then again */
			flow_gen = c.gs->flow_gen;
			LWLockRelease(&c.gs->lock);
			UnregisterSnapshot(c.snap);
			c.snap = NULL;
			flow_reload(c.gs, q->queue_idx, g->group_id, flow_gen);
		}
		LWLockRelease(&c.gs->lock);

		if (n > 0 || ndead > 0 || wait_ms == 0 || out_of_slots)
			break;
		{
			long		remaining = (long) ((deadline - GetCurrentTimestamp()) / 1000);

			if (remaining <= 0)
				break;
			UnregisterSnapshot(c.snap);
			c.snap = NULL;
			/* no table lock is held while waiting (maintenance truncates) */
			scan_close(&c);

			/*
			 * On the wait list before the count is read again: a wake-up
			 * after this finds us there, one before it changed the count.
			 * (The latch alone cannot say: a lock wait during the scan may
			 * have spent it.)
			 */
			ConditionVariablePrepareToSleep(&deliver_queues[q->queue_idx].cv);
			sleeping = true;
			if (pg_atomic_read_u64(&deliver_queues[q->queue_idx].wakes) != wakes)
				continue;
			(void) ConditionVariableTimedSleep(&deliver_queues[q->queue_idx].cv,
											   next_wakeup_ms(q, c.gs, remaining),
											   PG_WAIT_EXTENSION);

			/*
			 * The catalog changed meanwhile (the queue or the group dropped,
			 * the queue altered, a grant revoked): look them up again.  A
			 * queue or group that is gone ends the wait with its error.
			 */
			if (pg_atomic_read_u32(&deliver_shared->catalog_gen) != q->gen)
			{
				ConditionVariableCancelSleep();
				sleeping = false;
				q = queue_lookup(PG_GETARG_TEXT_PP(0));
				g = queue_group(q, PG_GETARG_TEXT_PP(4));
				queue_check_privilege(q, ACL_SELECT, "receive from");
				c.q = q;
				c.group_id = g->group_id;
			}
		}
	}
	if (sleeping)
		ConditionVariableCancelSleep();
	if (out_of_slots && n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("too many messages in flight"),
				 errhint("Ack or nack leased messages, or raise deliver.max_in_flight (now %d).",
						 deliver_max_leases)));

	if (ndead > 0)
		dead_letter_move(&c, dead, ndead);

	/* redeliveries need their rows; at-most-once needs its finish record */
	for (i = 0; i < n; i++)
	{
		Delivery   *o = &out[i];
		Datum		values[8];
		bool		nulls[8] = {false};

		if (!o->fetched && !fetch_row(&c, &o->row))
		{
			lease_forget_vanished(c.gs, o->slot, o->delivery_id);
			continue;
		}
		values[0] = Int64GetDatum(o->row.id);
		values[1] = Int64GetDatum((int64) o->delivery_id);
		nulls[1] = (o->slot < 0);
		values[2] = o->row.payload;
		values[3] = o->row.headers;
		nulls[3] = o->row.headers_null;
		values[4] = o->row.key;
		nulls[4] = o->row.key_null;
		values[5] = Int32GetDatum(o->attempt);
		values[6] = TimestampTzGetDatum(o->row.enqueued_at);
		values[7] = TimestampTzGetDatum(o->lease_expires);
		nulls[7] = (o->slot < 0);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	if (q->guarantee == G_AT_MOST_ONCE && n > 0)
	{
		int64	   *ids = palloc(sizeof(int64) * n);
		DSnap	   *done = palloc(deliver_snap_size);

		for (i = 0; i < n; i++)
			ids[i] = out[i].row.id;
		LWLockAcquire(&c.gs->lock, LW_SHARED);
		checkpoint_restart_point(c.gs, c.gidx, done);
		LWLockRelease(&c.gs->lock);
		done_write(q, g->group_id, DONE_CONSUMED, ids, n, done);
	}

	if (c.snap)
		UnregisterSnapshot(c.snap);
	scan_close(&c);
	SPI_finish();
	return (Datum) 0;
}
