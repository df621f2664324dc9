/*
 * flow.c
 *		Flow control of consumer groups: a paused group hands out nothing,
 *		a rate-limited one at most what its token bucket holds.
 *
 * The settings live in deliver.consumer_group (sql/flow.sql) and are read
 * with the queue's catalog (GroupInfo); the group's shared entry keeps a
 * copy and the token bucket, under the group's lock.  A change marks the
 * entry FLOW_UNLOADED when it commits (CATALOG_FLOW, xact.c), and the next
 * receive copies the settings again from its catalog cache, which the
 * commit made stale.  A receive of a group with neither setting tests one
 * byte (GroupEntry.flow == FLOW_OFF).
 *
 * The bucket holds at most burst tokens and gains rate tokens a second; a
 * receive takes one per message it hands out (redeliveries too).  It
 * starts full: when the entry is built (after a restart too) and when the
 * rate or burst changes.
 */
#include "postgres.h"

#include <math.h>

#include "utils/timestamp.h"

#include "flow.h"
#include "registry.h"
#include "settings.h"
#include "shmem.h"

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
 * Copy the group's settings from the catalog cache (under the group's
 * lock).  A cache older than the last catalog change may predate the
 * change that asked for this: its values serve this receive, and the next
 * one reads them again.
 */
static void
flow_load(QueueInfo *q, const GroupInfo *g, GroupEntry *gs, TimestampTz now)
{
	double		burst = (double) g->burst;

	if (g->rate != gs->rate || burst != gs->burst)
	{
		gs->tokens = burst;		/* a new limit starts with a full bucket */
		gs->refill_at = now;
	}
	gs->paused = g->paused;
	gs->rate = g->rate;
	gs->burst = burst;
	if (q->gen == pg_atomic_read_u32(&deliver_shared->catalog_gen))
		gs->flow = (g->paused || g->rate > 0) ? FLOW_ON : FLOW_OFF;
}

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
 * is not FLOW_OFF: how many of max messages it may hand out (0 when paused
 * or the bucket holds no whole token).
 */
int
flow_limit(QueueInfo *q, const GroupInfo *g, GroupEntry *gs, TimestampTz now, int max)
{
	if (gs->flow == FLOW_UNLOADED)
		flow_load(q, g, gs, now);
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

	if (gs->paused)
		return DT_NOEND;
	if (gs->rate <= 0)
		return 0;
	if (now > gs->refill_at)
		tokens += (double) (now - gs->refill_at) / 1000000.0 * gs->rate;
	if (tokens >= 1.0)
		return 0;
	return now + (int64) ceil((1.0 - tokens) / gs->rate * 1000000.0);
}

/*
 * At the commit of a change of the group's flow control: its next receive
 * reads the settings again.
 */
void
flow_changed(int32 queue_idx, int32 group_id)
{
	int			i;

	LWLockAcquire(deliver_shared->entry_lock, LW_SHARED);
	for (i = 0; i < deliver_max_groups; i++)
	{
		GroupEntry *gs = &deliver_groups[i];

		if (gs->group_id != group_id || gs->queue_idx != queue_idx)
			continue;
		LWLockAcquire(&gs->lock, LW_EXCLUSIVE);
		if (gs->group_id == group_id && gs->queue_idx == queue_idx)
			gs->flow = FLOW_UNLOADED;
		LWLockRelease(&gs->lock);
	}
	LWLockRelease(deliver_shared->entry_lock);
}
