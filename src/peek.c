/*
 * peek.c
 *		deliver.peek: the next messages a receive of a consumer group
 *		would hand out, read without leasing them.
 *
 * First the messages due for redelivery (the group's ready list in shared
 * memory, those whose backoff has passed and that have attempts left; of a
 * queue that reads ahead, also those read ahead, in the order a receive
 * would choose them: read_ahead_order), then the messages its cursor has
 * not reached yet: the rest of its open window after its position, then
 * what committed since.  As metrics does, the unread messages are read on
 * copies of the cursor's state after the group's lock is released, so
 * nothing of the group changes: no lease, no cursor move, no finish
 * record.  (Like metrics, it first settles the
 * leases that ran out, which a receive or the worker would do as well.)
 */
#include "postgres.h"

#include "executor/spi.h"
#include "funcapi.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "args.h"
#include "catalog.h"
#include "deliver.h"
#include "expiry.h"
#include "lease.h"
#include "readahead.h"
#include "registry.h"
#include "scan.h"
#include "settings.h"
#include "shmem.h"
#include "snap.h"

PG_FUNCTION_INFO_V1(deliver_peek);

/* a row to show and the attempt a receive would make of it */
typedef struct PeekRow
{
	MessageRow	row;
	int			attempt;
} PeekRow;

/* a message waiting in a ready slot, as a receive would hand it out */
static void
peek_slot(PeekRow *p, const LeaseSlot *s)
{
	memset(p, 0, sizeof(PeekRow));
	p->row.txid = s->txid;
	p->row.id = s->message_id;
	p->row.seg = s->seg;
	p->attempt = s->attempt + 1;
}

/*
 * deliver.peek(queue_name, max_messages, consumer_group) returns setof
 * (message_id, payload, headers, ordering_key, attempt, enqueued_at,
 * redelivery)
 */
Datum
deliver_peek(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	QueueInfo  *q;
	const GroupInfo *g;
	int			max;
	ScanCtx		c;
	GroupEntry	copy;
	GroupEntry *gs;
	DSnap	   *lo = palloc(deliver_snap_size);
	DSnap	   *hi = palloc(deliver_snap_size);
	DSnap	   *now_snap = palloc(deliver_snap_size);
	PeekRow    *out;
	MessageRow *rows;
	int			n = 0;
	int			nready = 0;
	int			i;
	int32		idx;
	bool		ex;
	TimestampTz now;

	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	/* the group's state lives in the primary's shared memory: not on a standby */
	q = queue_lookup(PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0));
	/* the right first: a role without it learns nothing of the groups */
	queue_check_privilege(q, ACL_SELECT, "peek at");
	max = arg_max_messages(fcinfo, 1);
	g = queue_group(q, PG_ARGISNULL(2) ? NULL : PG_GETARG_TEXT_PP(2));

	out = palloc(sizeof(PeekRow) * max);
	memset(&c, 0, sizeof(c));
	c.q = q;
	c.group_id = g->group_id;
	c.cxt = CurrentMemoryContext;
	scan_open(&c);
	gs = group_lock(q, g->group_id, &c.gidx);
	now = GetCurrentTimestamp();
	group_expire_leases(gs, q, now);
	if (queue_reads_ahead(q))
	{
		/* what the group read ahead and the redeliveries, as a receive would choose */
		int32	   *order = palloc(sizeof(int32) * max);
		int			k = read_ahead_order(q, gs, now, order, max);

		for (i = 0; i < k; i++)
			peek_slot(&out[nready++], &deliver_slots[order[i]]);
		pfree(order);
	}
	else
	{
		/* the redeliveries a receive would take first, in its order */
		for (idx = gs->ready_list.head; idx >= 0 && nready < max; idx = deliver_slots[idx].next)
		{
			LeaseSlot  *s = &deliver_slots[idx];

			if (s->visible_at > now || s->finish_pending || s->attempt >= q->max_attempts ||
				message_expired(q, s->enqueued_at, s->expires_at, now))
				continue;
			peek_slot(&out[nready++], s);
		}
	}
	copy = *gs;
	dsnap_copy(lo, group_snap(c.gidx, SNAP_LO));
	dsnap_copy(hi, group_snap(c.gidx, SNAP_HI));
	LWLockRelease(&gs->lock);

	c.gs = &copy;
	c.snap = RegisterSnapshot(GetLatestSnapshot());
	/* a receive would not hand out expired messages: not shown */
	c.skip_expired = true;
	c.now = now;
	/* (a row that vanished, as a receive may find, is not shown) */
	for (i = 0; i < nready; i++)
		if (fetch_row(&c, &out[i].row))
			out[n++] = out[i];
	nready = n;

	/* then the rest of the open window, then everything committed since */
	rows = palloc(sizeof(MessageRow) * max * q->nsegments);
	dsnap_latest(now_snap);
	if (n < max && copy.in_window)
	{
		int			got;

		c.count_after = true;
		c.after_cts = copy.pos_cts;
		c.after_txid = copy.pos_txid;
		c.after_id = copy.pos_id;
		copy.pos_txid = 0;
		copy.pos_id = 0;
		got = scan_window(&c, lo, hi, rows, max - n, &ex);
		c.count_after = false;
		for (i = 0; i < got; i++, n++)
		{
			out[n].row = rows[i];
			out[n].attempt = 1;
		}
	}
	if (n < max)
	{
		int			got;

		copy.pos_txid = 0;
		copy.pos_id = 0;
		got = scan_window(&c, copy.in_window ? hi : lo, now_snap, rows, max - n, &ex);
		for (i = 0; i < got; i++, n++)
		{
			out[n].row = rows[i];
			out[n].attempt = 1;
		}
	}

	for (i = 0; i < n; i++)
	{
		Datum		values[7];
		bool		nulls[7] = {false};
		MessageRow *r = &out[i].row;

		values[0] = Int64GetDatum(r->id);
		values[1] = r->payload;
		values[2] = r->headers;
		nulls[2] = r->headers_null;
		values[3] = r->key;
		nulls[3] = r->key_null;
		values[4] = Int32GetDatum(out[i].attempt);
		values[5] = TimestampTzGetDatum(r->enqueued_at);
		/* (a message read ahead waits for its first delivery) */
		values[6] = BoolGetDatum(i < nready && out[i].attempt > 1);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	UnregisterSnapshot(c.snap);
	scan_close(&c);
	SPI_finish();
	return (Datum) 0;
}
