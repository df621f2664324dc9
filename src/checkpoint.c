/*
 * checkpoint.c
 *		The restart points (checkpoints) of a consumer group.
 *
 * A group keeps up to DELIVER_CHECKPOINTS of them in its shared entry: the
 * lower bounds of some of its past windows, each counting the messages
 * taken from the cursor while it was the newest that are not finished yet.
 * The oldest one with unfinished messages is the group's restart point,
 * written with every finish record: after a restart the group resumes from
 * the newest restart point of its committed records (recovery.c).
 */
#include "postgres.h"

#include "utils/timestamp.h"

#include "checkpoint.h"
#include "settings.h"
#include "shmem.h"
#include "snap.h"

/*
 * A window opens: start a new restart point (the window's lower bound) when
 * the newest one is older than deliver.checkpoint_interval.
 */
void
checkpoint_open(GroupEntry *gs, int gidx, TimestampTz now)
{
	DSnap	   *lo = group_snap(gidx, SNAP_LO);

	if (gs->ncp == 0 ||
		now - gs->cps[gs->ncp - 1].at >= (int64) deliver_checkpoint_interval_ms * 1000)
	{
		if (gs->ncp == DELIVER_CHECKPOINTS)
		{
			/* fold the second oldest into the oldest: that only makes the
			 * restart point older */
			int			i;

			gs->cps[0].count += gs->cps[1].count;
			for (i = 1; i < gs->ncp - 1; i++)
			{
				gs->cps[i] = gs->cps[i + 1];
				dsnap_copy(group_snap(gidx, SNAP_CP(i)), group_snap(gidx, SNAP_CP(i + 1)));
			}
			gs->ncp--;
		}
		gs->cps[gs->ncp].seq = ++gs->cp_next_seq;
		gs->cps[gs->ncp].count = 0;
		gs->cps[gs->ncp].at = now;
		dsnap_copy(group_snap(gidx, SNAP_CP(gs->ncp)), lo);
		gs->ncp++;
	}
}

/*
 * Add delta to the unfinished count of the checkpoint a message counts in
 * (the newest one not newer than its seq), then drop finished checkpoints
 * from the front, keeping the newest.
 */
void
checkpoint_count_add(GroupEntry *gs, uint64 seq, int64 delta)
{
	int			i;

	for (i = gs->ncp - 1; i >= 0; i--)
	{
		if (gs->cps[i].seq <= seq)
		{
			gs->cps[i].count += delta;
			break;
		}
	}
	if (i < 0 && gs->ncp > 0)
		gs->cps[0].count += delta;

	while (gs->ncp > 1 && gs->cps[0].count <= 0)
	{
		int			gidx = gs - deliver_groups;

		memmove(&gs->cps[0], &gs->cps[1], sizeof(Checkpoint) * (gs->ncp - 1));
		for (i = 0; i < gs->ncp - 1; i++)
			dsnap_copy(group_snap(gidx, SNAP_CP(i)), group_snap(gidx, SNAP_CP(i + 1)));
		gs->ncp--;
	}
}

/*
 * The group's restart point: every message visible in it is finished.
 */
void
checkpoint_restart_point(GroupEntry *gs, int gidx, DSnap *out)
{
	if (gs->ncp == 1 && gs->cps[0].count <= 0)
		dsnap_copy(out, group_snap(gidx, SNAP_LO));
	else
		dsnap_copy(out, group_snap(gidx, SNAP_CP(0)));
}

/*
 * A group recovers: its only restart point is its cursor's lower bound.
 */
void
checkpoint_reset(GroupEntry *gs, int gidx)
{
	gs->ncp = 1;
	gs->cps[0].seq = ++gs->cp_next_seq;
	gs->cps[0].count = 0;
	gs->cps[0].at = GetCurrentTimestamp();
	dsnap_copy(group_snap(gidx, SNAP_CP(0)), group_snap(gidx, SNAP_LO));
}

/*
 * The group reads again from the newest restart point not newer than seq
 * (group_reread): that one takes the unfinished counts of the newer ones,
 * less the uncounted rows that the cursor will count again as it reads
 * them, and becomes the newest.  Returns its index.
 */
int
checkpoint_rewind(GroupEntry *gs, uint64 seq, int64 uncounted)
{
	int			j = 0;
	int			i;

	for (i = gs->ncp - 1; i > 0; i--)
		if (gs->cps[i].seq <= seq)
		{
			j = i;
			break;
		}
	for (i = j + 1; i < gs->ncp; i++)
		gs->cps[j].count += gs->cps[i].count;
	gs->cps[j].count -= uncounted;
	gs->ncp = j + 1;
	return j;
}
