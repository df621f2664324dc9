/*
 * readahead.c
 *		Queues whose receives read ahead and choose: queues with
 *		priorities, and FIFO queues whose keys may have more than one
 *		message out (keys in turn).  A receive reads ahead into ready
 *		slots, then hands out the best candidates (take_read_ahead); peek
 *		lists them in the same order (read_ahead_order).  Callers hold the
 *		group's lock.
 */
#include "postgres.h"

#include "port/pg_bitutils.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "cursor.h"
#include "deadletter.h"
#include "deliver.h"
#include "expiry.h"
#include "fifo.h"
#include "lease.h"
#include "passover.h"
#include "readahead.h"
#include "scan.h"
#include "settings.h"
#include "shmem.h"
#include "take.h"

/*
 * How many messages a receive of max reading ahead chooses from:
 * deliver.priority_window, at most half of the queue's share of lease
 * slots; while the queue holds over half of its share (its groups' windows
 * and leases), only max: the window shrinks before a group runs out of
 * slots to lease.
 */
static int64
read_ahead_window(const QueueInfo *q, int max)
{
	int32		cap = lease_queue_cap();
	int64		window = Max(Min((int64) deliver_priority_window, (int64) cap / 2), 1);

	/* (slots_held moves under the slot lock: a rough reading will do) */
	if (deliver_queues[q->queue_idx].slots_held > cap / 2)
		window = Min(window, (int64) Max(max, 1));
	return window;
}

/*
 * Queues with priorities, and FIFO queues whose keys may have more than
 * one message out (keys in turn), under the group lock: read ahead from the
 * cursor, in commit order, until the group holds window messages ready
 * to go out (read_ahead_window: read ahead, or due for redelivery),
 * each in a ready slot (not leased, not in flight: a crash or restart
 * loses only this memory, and the messages are read again from the
 * group's restart point, as after a nack).  The waiting messages of the
 * ready list (due for redelivery later, or finishing) do not count in the
 * window, nor does a message whose FIFO key is held, which waits on the
 * blocked list: as on the path without reading ahead (take_messages), the
 * read goes on past a busy key until half of the queue's share waits
 * there.  Rows that expired go to dead[].  Returns whether the read ran
 * out of lease slots.
 */
static bool
read_ahead(ScanCtx *c, int64 window, int64 waiting, TimestampTz now, int64 vt_ms, Delivery *dead,
		   int max_dead, int *ndead)
{
	GroupEntry *gs = c->gs;
	QueueInfo  *q = c->q;
	int64		limit = window + waiting;
	MessageRow *rows = NULL;
	int			chunk = 0;
	int			windows = 0;
	int			budget = PASS_OVER_MAX;
	bool		stop = false;

	/* the rows' bodies are read when they are handed out (fetch_row) */
	c->no_body = true;
	while (gs->ready_list.count < limit && may_read_on(gs) && *ndead < max_dead && !stop)
	{
		int			want = (int) Min(limit - gs->ready_list.count, (int64) (max_dead - *ndead));
		int			got;
		int			i;
		bool		exhausted;

		if (!gs->in_window)
		{
			if (windows++ >= 2)
				break;
			open_window(c, now);
		}
		if (rows == NULL || want > chunk)
		{
			/* each segment may return up to want rows before they are merged */
			chunk = Max(want, 64);
			rows = MemoryContextAlloc(c->cxt, sizeof(MessageRow) * chunk * q->nsegments);
		}
		got = take_window(c, rows, want, &exhausted);
		for (i = 0; i < got; i++)
		{
			MessageRow *r = &rows[i];
			int32		idx;
			LeaseSlot  *s;

			if (q->fifo)
			{
				int			p = pass_over(c, r, &budget);

				if (p == PASS_OVER)
					continue;
				if (p == PASS_STOP)
				{
					stop = true;	/* (the cursor has not passed rows[i..]) */
					break;
				}
			}
			idx = slot_alloc(q->queue_idx);
			if (idx < 0)
			{
				c->no_body = false;
				return true;	/* (the cursor has not passed rows[i..]) */
			}
			s = slot_for_row(c, idx, r);
			if (TransactionIdIsValid(r->pending_xid))
			{
				hold_pending_finish(c, idx, r, now, vt_ms);
				continue;
			}
			if (unlikely(message_expired(q, r->enqueued_at, r->expires_at, now)))
			{
				s->reason = REASON_TTL;
				dead_letter_claim(gs, idx, now, vt_ms, &dead[(*ndead)++]);
				dead[*ndead - 1].row = *r;
				dead[*ndead - 1].fetched = false;	/* (no body: read again) */
				continue;
			}
			if (q->fifo && s->has_key && !fifo_key_take(idx, q->fifo_key_limit))
			{
				s->state = SLOT_BLOCKED;
				slist_push(&gs->blocked, idx);
				continue;
			}
			/* waits for its turn: first attempt, ready since now */
			s->state = SLOT_READY;
			s->reason = REASON_NONE;
			s->visible_at = now;
			slist_push(&gs->ready_list, idx);
		}
		if (stop)
			break;
		if (exhausted)
			close_window(c);
		else if (got == 0)
			break;
	}
	c->no_body = false;
	return false;
}

/*
 * Keys in turn: a FIFO queue whose keys may have more than one message out
 * serves them round-robin (take_read_ahead).
 */
static inline bool
keys_in_turn(const QueueInfo *q)
{
	return q->fifo && q->fifo_key_limit > 1;
}

/*
 * A ready slot competing for a receive that reads ahead: of a queue with
 * priorities, or of a FIFO queue whose keys may have more than one message
 * out (keys in turn).
 */
typedef struct Candidate
{
	int32		idx;
	int32		pos;			/* on the ready list: earlier first among equals */
	int32		level;			/* priority, raised by aging (0 without) */
	int32		round;			/* keys in turn: the key's messages out before it */
} Candidate;

/* higher level first, then earlier round, then earlier on the ready list */
static int
candidate_cmp(const void *a, const void *b)
{
	const Candidate *x = a;
	const Candidate *y = b;

	if (x->level != y->level)
		return x->level > y->level ? -1 : 1;
	if (x->round != y->round)
		return x->round < y->round ? -1 : 1;
	return (x->pos > y->pos) - (x->pos < y->pos);
}

/* the level every waiting message reaches by aging: above any priority */
#define AGED_LEVEL	(DELIVER_MAX_PRIORITY + 1)

/*
 * The level of a ready message: its priority, plus one for each
 * deliver.priority_aging it has waited since it became ready (read ahead,
 * or due again), up to AGED_LEVEL.  Messages at AGED_LEVEL go out in the
 * order they became ready (their order on the ready list), before any
 * newer one: a message of priority p waits at most (AGED_LEVEL - p) agings
 * once read ahead (a FIFO-held one: once its key lets it out).
 */
static int32
ready_level(const LeaseSlot *s, TimestampTz now)
{
	int64		waited;

	if (deliver_priority_aging_ms <= 0 || now <= s->visible_at)
		return s->priority;
	waited = (now - s->visible_at) / ((int64) deliver_priority_aging_ms * 1000);
	return (int32) Min((int64) s->priority + waited, (int64) AGED_LEVEL);
}

/*
 * FIFO queues: how many messages of each key are out (leased, or waiting
 * for a redelivery), counted in a table of this receive's own (open
 * addressing by key hash, room for every slot of the group's lists).
 */
typedef struct KeyCount
{
	uint32		key_hash;
	int32		count;
	int32		level_cap;		/* with priorities: the lowest level of its candidates so far */
	bool		used;
} KeyCount;

typedef struct KeyCounts
{
	KeyCount   *t;
	uint32		mask;
} KeyCounts;

static void
key_counts_init(KeyCounts *kc, MemoryContext cxt, int32 slots)
{
	uint32		size = pg_nextpower2_32((uint32) Max(slots, 8) * 2);

	kc->t = MemoryContextAllocZero(cxt, sizeof(KeyCount) * size);
	kc->mask = size - 1;
}

/* the entry of a key (count 0 when first asked for) */
static KeyCount *
key_count(KeyCounts *kc, uint32 key_hash)
{
	uint32		i = key_hash & kc->mask;

	while (kc->t[i].used && kc->t[i].key_hash != key_hash)
		i = (i + 1) & kc->mask;
	if (!kc->t[i].used)
	{
		kc->t[i].used = true;
		kc->t[i].key_hash = key_hash;
		kc->t[i].level_cap = PG_INT32_MAX;
	}
	return &kc->t[i];
}

/*
 * Put the candidates (cand[], in ready-list order, levels set) in the
 * order a receive hands them out; returns how many of them are in order
 * (all, or one when max is 1).  FIFO queues (kc: the keys' messages out):
 * a candidate's round is its key's messages out plus its key's candidates
 * before it; one without a key is a key of its own (round 0).  With
 * priorities too, a candidate's level is at most that of its key's
 * candidates before it, so that a key's messages still go out in their
 * order: a higher one waits for the lower ones of its key before it, as
 * behind a key held at a limit of 1.  A candidate whose round is limit or
 * more (the queue's fifo_key_limit, lowered while more of its key were
 * ready) is left out: it goes once its key is below the limit.
 */
static int
rank_candidates(Candidate *cand, int ncand, KeyCounts *kc, int max, int32 limit)
{
	int			i;
	int			kept = 0;

	for (i = 0; kc != NULL && i < ncand; i++)
	{
		LeaseSlot  *s = &deliver_slots[cand[i].idx];
		KeyCount   *e;

		if (s->has_key)
		{
			e = key_count(kc, s->key_hash);
			cand[i].round = e->count++;
			if (cand[i].level > e->level_cap)
				cand[i].level = e->level_cap;
			else
				e->level_cap = cand[i].level;
			if (cand[i].round >= limit)
				continue;
		}
		cand[kept++] = cand[i];
	}
	if (kc != NULL)
		ncand = kept;
	if (max == 1 && ncand > 1)
	{
		/* (the common receive of one: the best, no sort) */
		for (i = 1; i < ncand; i++)
			if (candidate_cmp(&cand[i], &cand[0]) < 0)
				cand[0] = cand[i];
		return 1;
	}
	if (ncand > 1)
		qsort(cand, ncand, sizeof(Candidate), candidate_cmp);
	return ncand;
}

/* a ready slot due now competes for a receive reading ahead (cand[n]) */
static inline void
candidate_add(Candidate *cand, int n, int32 idx, int32 pos, const QueueInfo *q, TimestampTz now)
{
	cand[n].idx = idx;
	cand[n].pos = pos;
	cand[n].level = q->priorities ? ready_level(&deliver_slots[idx], now) : 0;
	cand[n].round = 0;
}

/*
 * FIFO queues: a count table with room for keys keys (at most half full),
 * holding each key's messages leased (a finish pending among them).
 */
static void
key_counts_leased(KeyCounts *kc, MemoryContext cxt, const GroupEntry *gs, int64 keys)
{
	int32		idx;

	key_counts_init(kc, cxt, (int32) keys);
	for (idx = gs->leased.head; idx >= 0; idx = deliver_slots[idx].next)
		if (deliver_slots[idx].has_key)
			key_count(kc, deliver_slots[idx].key_hash)->count++;
}

/*
 * Under the group lock of a queue that reads ahead: its ready list's
 * messages due now into cand[] (in list order, from *ncand; *pos counts
 * the list's places), and (kc set: FIFO queues) those waiting for a
 * redelivery later as their keys' messages out.  A message out of attempts
 * or expired is not a candidate: with dead (a receive) it goes to dead[]
 * while there is room; without (peek) it is passed over.  Returns how many
 * wait (due later, finishing, or for the dead letters of a later receive).
 */
static int64
ready_candidates(const QueueInfo *q, GroupEntry *gs, TimestampTz now, Candidate *cand, int *ncand,
				 int32 *pos, KeyCounts *kc, Delivery *dead, int max_dead, int *ndead, int64 vt_ms)
{
	int64		waiting = 0;
	int32		idx;
	int32		next;
	bool		expired;

	for (idx = gs->ready_list.head; idx >= 0; idx = next, (*pos)++)
	{
		LeaseSlot  *s = &deliver_slots[idx];

		next = s->next;
		if (s->visible_at > now || s->finish_pending)
		{
			/* waits (FIFO: out, as it waits for a redelivery) */
			waiting++;
			if (kc != NULL && s->has_key)
				key_count(kc, s->key_hash)->count++;
			continue;
		}
		expired = message_expired(q, s->enqueued_at, s->expires_at, now);
		if (expired || s->attempt >= q->max_attempts)
		{
			if (dead == NULL)
				continue;		/* (peek: a receive moves it to the dead letters) */
			if (*ndead >= max_dead)
			{
				waiting++;		/* (the next receive or sweep) */
				continue;
			}
			slist_remove(&gs->ready_list, idx);
			if (expired)
				s->reason = REASON_TTL;
			dead_letter_claim(gs, idx, now, vt_ms, &dead[(*ndead)++]);
			continue;
		}
		candidate_add(cand, (*ncand)++, idx, *pos, q, now);
	}
	return waiting;
}

/*
 * take_messages for a queue that reads ahead (leases taken; not an
 * overflow drop): take the ready messages due now as candidates (messages
 * out of attempts or expired go to dead[] as in take_messages), read ahead
 * (read_ahead, the ones waiting for later not counted in its window), then
 * lease up to max of the candidates, highest level first (ready_level,
 * with priorities), then (FIFO queues) the earliest round, that is keys
 * in turn where they may have more than one message out, then the earlier
 * on the ready list; none of a key at its fifo_key_limit.
 */
int
take_read_ahead(ScanCtx *c, int max, int64 vt_ms, Delivery *out, Delivery *dead, int max_dead,
				int *ndead, bool *out_of_slots, TimestampTz now)
{
	GroupEntry *gs = c->gs;
	QueueInfo  *q = c->q;
	bool		count_keys = q->fifo;
	int64		window = read_ahead_window(q, max);
	KeyCounts	kc = {0};
	Candidate  *cand;
	int			ncand = 0;
	int64		waiting;
	int			n = 0;
	int32		pos = 0;
	int32		idx;
	int32		tail;
	int			i;

	/*
	 * the ready list's candidates, then those read ahead: the read stops
	 * at window candidates (read_ahead's limit counts the waiting ones)
	 */
	int64		room = gs->ready_list.count + window;

	cand = MemoryContextAlloc(c->cxt, sizeof(Candidate) * room);
	/* (every key the counting can meet: leased, on the ready list, read ahead) */
	if (count_keys)
		key_counts_leased(&kc, c->cxt, gs,
						  (int64) gs->leased.count + gs->ready_list.count + window);
	waiting = ready_candidates(q, gs, now, cand, &ncand, &pos, count_keys ? &kc : NULL,
							   dead, max_dead, ndead, vt_ms);
	/* what the read adds to the ready list: due now, after the rest */
	tail = gs->ready_list.tail;
	*out_of_slots = read_ahead(c, window, waiting, now, vt_ms, dead, max_dead, ndead);
	for (idx = tail >= 0 ? deliver_slots[tail].next : gs->ready_list.head; idx >= 0;
		 idx = deliver_slots[idx].next)
	{
		Assert(ncand < room);
		candidate_add(cand, ncand++, idx, pos++, q, now);
	}

	ncand = rank_candidates(cand, ncand, count_keys ? &kc : NULL, max, q->fifo_key_limit);
	for (i = 0; i < ncand && n < max; i++)
		lease_ready(gs, cand[i].idx, &out[n++], now, vt_ms);
	pfree(cand);
	if (kc.t != NULL)
		pfree(kc.t);
	/* out of slots only matters when nothing could be handed out */
	if (n > 0)
		*out_of_slots = false;
	return n;
}

/* does a receive of the queue read ahead (priorities, keys in turn)? */
bool
queue_reads_ahead(const QueueInfo *q)
{
	return q->guarantee != G_AT_MOST_ONCE && (q->priorities || keys_in_turn(q));
}

/*
 * For peek, under the group lock of a queue that reads ahead, changing
 * nothing: the slots of the group's ready list that a receive would hand
 * out now (due, not expired, attempts left), in the order it would (as
 * take_read_ahead ranks them), at most max of them into idx[].  Returns
 * how many.
 */
int
read_ahead_order(QueueInfo *q, GroupEntry *gs, TimestampTz now, int32 *idx, int max)
{
	bool		count_keys = q->fifo;
	KeyCounts	kc = {0};
	Candidate  *cand;
	int			ncand = 0;
	int32		pos = 0;
	int			i;

	if (gs->ready_list.count == 0)
		return 0;
	cand = palloc(sizeof(Candidate) * gs->ready_list.count);
	if (count_keys)
		key_counts_leased(&kc, CurrentMemoryContext, gs, (int64) gs->leased.count + gs->ready_list.count);
	(void) ready_candidates(q, gs, now, cand, &ncand, &pos, count_keys ? &kc : NULL, NULL, 0, NULL, 0);
	ncand = rank_candidates(cand, ncand, count_keys ? &kc : NULL, ncand, q->fifo_key_limit);
	for (i = 0; i < ncand && i < max; i++)
		idx[i] = cand[i].idx;
	pfree(cand);
	if (kc.t != NULL)
		pfree(kc.t);
	return i;
}

