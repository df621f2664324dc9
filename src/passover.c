/*
 * passover.c
 *		FIFO: how much a consumer group holds back behind busy keys, and
 *		passing over the rest of a busy key's run (both receive paths:
 *		receive.c, readahead.c).  Callers hold the group's lock.
 *
 * A group holds messages back behind a busy key in lease slots, at most
 * half of what its queue may hold.  Past that, the rows of a busy key are
 * passed over without a slot, and every later row of that key, until the
 * key is free: then the group reads again from the restart point that was
 * newest at the first (group_reread, recovery.c), and its finish records
 * and lease slots say what of that stretch is taken care of.
 */
#include "postgres.h"

#include "checkpoint.h"
#include "cursor.h"
#include "deliver.h"
#include "fifo.h"
#include "lease.h"
#include "passover.h"
#include "recovery.h"
#include "scan.h"
#include "shmem.h"

/*
 * A long run of one key must not take the queue's whole share: a group
 * holds back at most half of what the queue may hold now (its share, less
 * what the pool cannot give it) behind busy keys; beyond, the rows of busy
 * keys are passed over (pass_over).
 */
bool
held_back_full(const GroupEntry *gs)
{
	return gs->blocked.count >= lease_queue_reach(gs->queue_idx) / 2;
}

/*
 * Once the group holds back all it may (held_back_full), a row whose key
 * is busy is passed over without a slot, and so is every later row of
 * that key until the group reads them again (group_reread, when one of
 * those keys is free), so that the keys behind a long run of one key go
 * on.  At most DELIVER_PASSED_KEYS keys, and *budget rows (of
 * PASS_OVER_MAX per receive).  The rows count as unfinished in the newest
 * restart point, which the group's restart point then does not pass until
 * they are read again.
 */
int
pass_over(ScanCtx *c, MessageRow *r, int *budget)
{
	GroupEntry *gs = c->gs;
	uint32		h;
	int			i;

	if (r->key_null || (gs->npassed == 0 && !held_back_full(gs)))
		return PASS_TAKE;
	h = fifo_key_hash(r->key);
	for (i = 0; i < gs->npassed && gs->passed_keys[i] != h; i++)
		;
	if (i == gs->npassed &&
		(!held_back_full(gs) || !fifo_key_busy(c->gidx, h, c->q->fifo_key_limit)))
		return PASS_TAKE;
	if (*budget <= 0 || i == DELIVER_PASSED_KEYS)
		return PASS_STOP;
	if (i == gs->npassed)
	{
		if (gs->npassed == 0)
			gs->passed_cp_seq = gs->cps[gs->ncp - 1].seq;
		gs->passed_keys[gs->npassed++] = h;
	}
	(*budget)--;
	checkpoint_count_add(gs, gs->cps[gs->ncp - 1].seq, 1);
	window_advance(gs, r);
	gs->passed++;
	return PASS_OVER;
}

/* may the cursor read on past what is held back (pass_over)? */
bool
may_read_on(const GroupEntry *gs)
{
	return !held_back_full(gs) || gs->npassed < DELIVER_PASSED_KEYS;
}

/*
 * A key the group passed over is free: read again what it passed over
 * (group_reread), before this receive reads on.
 */
void
reread_passed(ScanCtx *c)
{
	GroupEntry *gs = c->gs;
	int			i;

	for (i = 0; i < gs->npassed; i++)
		if (!fifo_key_busy(c->gidx, gs->passed_keys[i], c->q->fifo_key_limit))
		{
			group_reread(gs, c->gidx);
			recovery_filter_load(c->q, gs);
			return;
		}
}

