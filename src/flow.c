/*
 * flow.c
 *		Flow control of consumer groups: a paused group hands out nothing,
 *		a rate-limited one at most what its token bucket holds.
 *
 * The settings live in deliver.consumer_group (sql/flow.sql); the group's
 * shared entry keeps a copy and the token bucket, under the group's lock.
 * A change marks the entry FLOW_UNLOADED when it commits (CATALOG_FLOW,
 * xact.c; which also wakes the queue's long polls), and the next receive
 * reads the row again, in the latest snapshot (flow_reload): not through
 * the queue cache, which a long poll reads in its statement's snapshot.  A
 * receive of a group with neither setting tests one byte
 * (GroupEntry.flow == FLOW_OFF).
 *
 * The bucket holds at most burst tokens and gains rate tokens a second; a
 * receive takes one per message it hands out (redeliveries too).  It
 * starts full: when the entry is built (after a restart too) and when the
 * rate or burst changes.
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "catalog.h"
#include "flow.h"
#include "registry.h"
#include "settings.h"
#include "shmem.h"
#include "spi.h"

/* A new group entry: its settings are read by its first receive. */
void
flow_entry_init(GroupEntry *gs)
{
	gs->flow = FLOW_UNLOADED;
	gs->paused = false;
	gs->rate = 0;
	gs->burst = 0;
	gs->tokens = 0;
	gs->refill_at = 0;
}

/*
 * Read the group's settings from deliver.consumer_group in the latest
 * snapshot (not under the group's lock), then store them in its entry
 * unless it changed again meanwhile (its flow_gen moved from the one the
 * caller saw under the lock) or was given to another group: then the
 * caller's next look finds it FLOW_UNLOADED still and calls again.
 */
void
flow_reload(GroupEntry *gs, int32 queue_idx, int32 group_id, uint32 flow_gen)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1];
	bool		paused = false;
	double		rate = 0;
	double		burst = 0;
	int			rc;

	values[0] = Int32GetDatum(group_id);
	PushActiveSnapshot(GetLatestSnapshot());
	rc = spi_run(catalog_owner(), "flow_of_group",
				 "SELECT paused, coalesce(rate_per_second, 0), coalesce(rate_burst, 0) "
				 "FROM deliver.consumer_group WHERE group_id = $1",
				 1, argtypes, values, NULL, true, 1);
	PopActiveSnapshot();
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "deliver: consumer group lookup failed");
	/* (no row: the group was dropped, and its entry is forgotten at commit) */
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	td = SPI_tuptable->tupdesc;
		bool		isnull;

		paused = DatumGetBool(SPI_getbinval(tup, td, 1, &isnull));
		rate = DatumGetFloat8(SPI_getbinval(tup, td, 2, &isnull));
		burst = (double) DatumGetInt32(SPI_getbinval(tup, td, 3, &isnull));
	}

	LWLockAcquire(&gs->lock, LW_EXCLUSIVE);
	if (gs->group_id == group_id && gs->queue_idx == queue_idx &&
		gs->flow == FLOW_UNLOADED && gs->flow_gen == flow_gen)
	{
		if (rate != gs->rate || burst != gs->burst)
		{
			gs->tokens = burst;	/* a new limit starts with a full bucket */
			gs->refill_at = GetCurrentTimestamp();
		}
		gs->paused = paused;
		gs->rate = rate;
		gs->burst = burst;
		gs->flow = (paused || rate > 0) ? FLOW_ON : FLOW_OFF;
	}
	LWLockRelease(&gs->lock);
}

/* a wait for the next token longer than this is no wait (flow_next_token) */
#define FLOW_NEVER_US	(100.0 * 365.25 * 86400.0 * 1000000.0)

/* Top the bucket up for the time since it was last. */
static void
flow_refill(GroupEntry *gs, TimestampTz now)
{
	if (now > gs->refill_at)
	{
		gs->tokens += (double) (now - gs->refill_at) / 1000000.0 * gs->rate;
		if (gs->tokens > gs->burst)
			gs->tokens = gs->burst;
		gs->refill_at = now;
	}
}

/*
 * Under the group's lock, at the start of a receive of a group whose flow
 * is FLOW_ON: how many of max messages it may hand out (0 when paused
 * or the bucket holds no whole token).
 */
int
flow_limit(GroupEntry *gs, TimestampTz now, int max)
{
	if (gs->paused)
		return 0;
	if (gs->rate > 0)
	{
		double		whole;

		flow_refill(gs, now);
		whole = floor(gs->tokens);
		if (whole < (double) max)
			max = (int) whole;
	}
	return max;
}

/* Under the group's lock: a receive handed out n messages. */
void
flow_taken(GroupEntry *gs, int n)
{
	if (gs->rate > 0 && n > 0)
	{
		gs->tokens -= n;
		if (gs->tokens < 0)
			gs->tokens = 0;
	}
}

/*
 * Under the group's lock (shared is enough), for a long poll of a group
 * with flow FLOW_ON: DT_NOEND while paused, when the next token comes
 * while the bucket holds no whole one, else 0 (flow control does not hold
 * the poll back).
 */
TimestampTz
flow_next_token(GroupEntry *gs, TimestampTz now)
{
	double		tokens = gs->tokens;
	double		us;

	if (gs->paused)
		return DT_NOEND;
	if (gs->rate <= 0)
		return 0;
	if (now > gs->refill_at)
		tokens += (double) (now - gs->refill_at) / 1000000.0 * gs->rate;
	if (tokens >= 1.0)
		return 0;

	/*
	 * A rate as low as set_consumer_group_rate allows (any per_second above
	 * 0) puts the next token past the end of time: no token before the
	 * poll's end (the conversion to int64 would overflow, and a time in the
	 * past would make the poll wake every millisecond).  Beyond a
	 * hundred years is as good as never: a poll waits far less.
	 */
	us = ceil((1.0 - tokens) / gs->rate * 1000000.0);
	if (!(us < FLOW_NEVER_US))
		return DT_NOEND;
	return now + (int64) us;
}

/*
 * At the commit of a change of the group's flow control: its next receive
 * reads the settings again.
 */
void
flow_changed(int32 queue_idx, int32 group_id)
{
	for (;;)
	{
		int32		gidx = group_entry_find(group_id, queue_idx);
		GroupEntry *gs;
		bool		found;

		if (gidx < 0)
			return;				/* (no entry: it reads them when it gets one) */
		gs = &deliver_groups[gidx];
		LWLockAcquire(&gs->lock, LW_EXCLUSIVE);
		found = gs->group_id == group_id && gs->queue_idx == queue_idx;
		if (found)
		{
			gs->flow = FLOW_UNLOADED;
			gs->flow_gen++;
		}
		LWLockRelease(&gs->lock);
		if (found)
			return;
		group_entry_forget(group_id, queue_idx);	/* reused since: look again */
	}
}
