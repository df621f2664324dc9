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
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "pgstat.h"
#include "port/pg_bitutils.h"
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
#include "readahead.h"
#include "recovery.h"
#include "registry.h"
#include "scan.h"
#include "segment.h"
#include "settings.h"
#include "shmem.h"
#include "snap.h"
#include "worker.h"
#include "xact.h"

PG_FUNCTION_INFO_V1(deliver_receive);

/*
 * Lease a message in a new or reused slot.
 */
static void
lease_message(GroupEntry *gs, int32 idx, Delivery *o, TimestampTz now, int64 vt_ms)
{
	LeaseSlot  *s = &deliver_slots[idx];

	s->attempt++;
	s->delivery_id = lease_new_delivery_id(idx);
	s->state = SLOT_LEASED;
	s->lease_expires = now + vt_ms * 1000;
	slist_push(&gs->leased, idx);
	if (s->lease_expires < gs->next_expiry)
		gs->next_expiry = s->lease_expires;
	gs->delivered_total++;
	o->delivery_id = s->delivery_id;
	o->slot = idx;
	o->attempt = s->attempt;
	o->lease_expires = s->lease_expires;
	xact_note_leased(idx, s->delivery_id);
}

/*
 * Most messages out of attempts one receive moves to the dead letters (the
 * room of its dead[] array): at least this many, or max_messages when more.
 */
#define RECEIVE_DEAD_BATCH	100

/*
 * Under the group lock: lease the message of ready slot idx (a
 * redelivery, or read ahead), whose row is fetched later.
 */
static void
lease_ready(GroupEntry *gs, int32 idx, Delivery *o, TimestampTz now, int64 vt_ms)
{
	LeaseSlot  *s = &deliver_slots[idx];

	slist_remove(&gs->ready_list, idx);
	memset(o, 0, sizeof(Delivery));
	o->row.txid = s->txid;
	o->row.id = s->message_id;
	o->row.seg = s->seg;
	o->row.enqueued_at = s->enqueued_at;
	lease_message(gs, idx, o, now, vt_ms);
}

/*
 * Fill a lease slot for row r, read by the group's cursor (which it passes).
 */
static LeaseSlot *
slot_for_row(ScanCtx *c, int32 idx, MessageRow *r)
{
	GroupEntry *gs = c->gs;
	LeaseSlot  *s = &deliver_slots[idx];

	s->group_idx = c->gidx;
	s->message_id = r->id;
	s->txid = r->txid;
	s->seg = r->seg;
	s->enqueued_at = r->enqueued_at;
	s->expires_at = r->expires_at;
	s->priority = r->priority;
	s->has_key = !r->key_null;
	s->key_hash = r->key_null ? 0 : fifo_key_hash(r->key);
	s->cp_seq = gs->cps[gs->ncp - 1].seq;
	checkpoint_count_add(gs, s->cp_seq, 1);
	window_advance(gs, r);
	return s;
}

/*
 * A row acked in a transaction still prepared: hold it as leased, looked
 * at again when its lease runs out (the finish may yet roll back).
 */
static void
hold_pending_finish(ScanCtx *c, int32 idx, const MessageRow *r, TimestampTz now, int64 vt_ms)
{
	GroupEntry *gs = c->gs;
	LeaseSlot  *s = &deliver_slots[idx];

	s->attempt = 1;
	s->delivery_id = lease_new_delivery_id(idx);
	s->state = SLOT_LEASED;
	s->finish_pending = true;
	s->finish_kind = DONE_ACK;
	s->finish_xid = r->pending_xid;
	s->lease_expires = now + vt_ms * 1000;
	if (s->lease_expires < gs->next_expiry)
		gs->next_expiry = s->lease_expires;
	slist_push(&gs->leased, idx);
	if (c->q->fifo && s->has_key)
		fifo_key_hold(idx);
}

/*
 * FIFO: a long run of one key must not take the queue's whole share: a
 * group holds back at most half of what the queue may hold now (its share,
 * less what the pool cannot give it) behind busy keys; beyond, the rows of
 * busy keys are passed over (pass_over, both receive paths).
 */
static inline bool
held_back_full(const GroupEntry *gs)
{
	return gs->blocked.count >= lease_queue_reach(gs->queue_idx) / 2;
}

/* what pass_over makes of a row */
#define PASS_TAKE	0			/* take it as usual */
#define PASS_OVER	1			/* the cursor passed it, without a slot */
#define PASS_STOP	2			/* read no further (the cursor has not passed it) */

/* most rows one receive passes over */
#define PASS_OVER_MAX	4096

/*
 * FIFO: once half of the queue's share is held back (held_back_full), a
 * row whose key is busy is passed over without a slot, and so is every
 * later row of that key until the group reads them again (group_reread,
 * when one of those keys is free), so that the keys behind a long run of
 * one key go on.  At most DELIVER_PASSED_KEYS keys, and *budget rows (of
 * PASS_OVER_MAX per receive).  The rows count as unfinished in the newest
 * restart point, which the group's restart point then does not pass
 * until they are read again.
 */
static int
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
static inline bool
may_read_on(const GroupEntry *gs)
{
	return !held_back_full(gs) || gs->npassed < DELIVER_PASSED_KEYS;
}

/*
 * A key the group passed over is free: read again what it passed over
 * (group_reread), before this receive reads on.
 */
static void
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
 * Keys in turn: how many messages of each key are out (leased, or waiting
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
 * (all, or one when max is 1).  Keys in turn (kc: the keys' messages out):
 * a candidate's round is its key's messages out plus its key's candidates
 * before it; one without a key is a key of its own (round 0).  With
 * priorities too, a candidate's level is at most that of its key's
 * candidates before it, so that a key's messages still go out in their
 * order: a higher one waits for the lower ones of its key before it, as
 * behind a key held at a limit of 1.
 */
static int
rank_candidates(Candidate *cand, int ncand, KeyCounts *kc, int max)
{
	int			i;

	for (i = 0; kc != NULL && i < ncand; i++)
	{
		LeaseSlot  *s = &deliver_slots[cand[i].idx];
		KeyCount   *e;

		if (!s->has_key)
			continue;
		e = key_count(kc, s->key_hash);
		cand[i].round = e->count++;
		if (cand[i].level > e->level_cap)
			cand[i].level = e->level_cap;
		else
			e->level_cap = cand[i].level;
	}
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
 * Keys in turn: a count table with room for keys keys (at most half full),
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
 * the list's places), and (kc set: keys in turn) those waiting for a
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
			/* waits (keys in turn: out, as it waits for a redelivery) */
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
 * with priorities), then (FIFO keys with more than one message out at
 * once) the earliest round, that is keys in turn, then the earlier on the
 * ready list.
 */
static int
take_read_ahead(ScanCtx *c, int max, int64 vt_ms, Delivery *out, Delivery *dead, int max_dead,
				int *ndead, bool *out_of_slots, TimestampTz now)
{
	GroupEntry *gs = c->gs;
	QueueInfo  *q = c->q;
	bool		in_turn = keys_in_turn(q);
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
	if (in_turn)
		key_counts_leased(&kc, c->cxt, gs,
						  (int64) gs->leased.count + gs->ready_list.count + window);
	waiting = ready_candidates(q, gs, now, cand, &ncand, &pos, in_turn ? &kc : NULL,
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

	ncand = rank_candidates(cand, ncand, in_turn ? &kc : NULL, max);
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
	bool		in_turn = keys_in_turn(q);
	KeyCounts	kc = {0};
	Candidate  *cand;
	int			ncand = 0;
	int32		pos = 0;
	int			i;

	if (gs->ready_list.count == 0)
		return 0;
	cand = palloc(sizeof(Candidate) * gs->ready_list.count);
	if (in_turn)
		key_counts_leased(&kc, CurrentMemoryContext, gs, (int64) gs->leased.count + gs->ready_list.count);
	(void) ready_candidates(q, gs, now, cand, &ncand, &pos, in_turn ? &kc : NULL, NULL, 0, NULL, 0);
	ncand = rank_candidates(cand, ncand, in_turn ? &kc : NULL, ncand);
	for (i = 0; i < ncand && i < max; i++)
		idx[i] = cand[i].idx;
	pfree(cand);
	if (kc.t != NULL)
		pfree(kc.t);
	return i;
}

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
