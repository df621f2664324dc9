/*
 * fifo.c
 *		The FIFO key index: which ordering keys of a FIFO queue are held by
 *		a message out for delivery, and which messages wait behind them.
 *
 * In a FIFO queue a key's next message is not delivered while an earlier
 * one of that key is leased or waiting for redelivery (or while
 * fifo_key_limit earlier ones are, when the queue allows more than one).  lease.c keeps the
 * lease slots and their lists; this module only answers "may it go out?"
 * and hands over a key when its holder leaves.
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/builtins.h"

#include "fifo.h"
#include "settings.h"
#include "shmem.h"

/*
 * The FIFO key index: for each (consumer group, key) of a FIFO queue, how
 * many of its messages hold the key (leased or waiting for redelivery:
 * nearly always one) and the chain of its messages held back behind them,
 * oldest first.  A shared hash table, partitioned, each partition under a
 * lock of its own; a caller holds the group's lock, then a partition's.
 */
typedef struct FifoKey
{
	int32		gidx;
	uint32		key_hash;
} FifoKey;

typedef struct FifoKeyEntry
{
	FifoKey		key;
	int32		holders;
	int32		blocked_head;	/* lease slots, linked by key_next */
	int32		blocked_tail;
} FifoKeyEntry;

static HTAB *fifo_keys = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/*
 * shmem_request_hook: ask for the shared memory of the key index.
 */
static void
fifo_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(hash_estimate_size(deliver_max_leases, sizeof(FifoKeyEntry)));
}

/*
 * shmem_startup_hook: create (or attach to) the key index.
 */
static void
fifo_shmem_startup(void)
{
	HASHCTL		info;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	info.keysize = sizeof(FifoKey);
	info.entrysize = sizeof(FifoKeyEntry);
	info.num_partitions = DELIVER_KEY_PARTITIONS;
	fifo_keys = ShmemInitHash("deliver fifo keys", deliver_max_leases, deliver_max_leases,
							  &info, HASH_ELEM | HASH_BLOBS | HASH_PARTITION | HASH_FIXED_SIZE);
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Install the hooks that request and create the key index (from _PG_init,
 * when preloading; its locks are in the "deliver" tranche of shmem.c).
 */
void
deliver_fifo_init(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = fifo_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = fifo_shmem_startup;
}

/* the entry of a group's key, its partition locked; NULL when there is none */
static FifoKeyEntry *
fifo_group_key_entry(int32 gidx, uint32 key_hash, HASHACTION action, LWLock **lock)
{
	FifoKey		k;
	uint32		h;
	bool		found;
	FifoKeyEntry *e;

	memset(&k, 0, sizeof(k));
	k.gidx = gidx;
	k.key_hash = key_hash;
	h = get_hash_value(fifo_keys, &k);
	*lock = &deliver_shared->key_locks[h % DELIVER_KEY_PARTITIONS].lock;
	LWLockAcquire(*lock, LW_EXCLUSIVE);
	e = hash_search_with_hash_value(fifo_keys, &k, h, action, &found);
	if (e != NULL && !found)
	{
		e->holders = 0;
		e->blocked_head = e->blocked_tail = -1;
	}
	return e;
}

/* the entry of a slot's key (fifo_group_key_entry) */
static inline FifoKeyEntry *
fifo_key_entry(LeaseSlot *s, HASHACTION action, LWLock **lock)
{
	return fifo_group_key_entry(s->group_idx, s->key_hash, action, lock);
}

/*
 * Would a message of the group's key wait now (limit earlier ones of the
 * key hold it, or earlier ones wait)?  Changes nothing.
 */
bool
fifo_key_busy(int32 gidx, uint32 key_hash, int32 limit)
{
	LWLock	   *lock;
	FifoKeyEntry *e = fifo_group_key_entry(gidx, key_hash, HASH_FIND, &lock);
	bool		busy = e != NULL && (e->holders >= limit || e->blocked_head >= 0);

	LWLockRelease(lock);
	return busy;
}

/* how many messages hold the slot's key (out, or ready to go) */
int32
fifo_key_holders(int32 idx)
{
	LWLock	   *lock;
	FifoKeyEntry *e = fifo_key_entry(&deliver_slots[idx], HASH_FIND, &lock);
	int32		holders = e != NULL ? e->holders : 0;

	LWLockRelease(lock);
	return holders;
}

/*
 * A message of a FIFO queue with a key comes to the group: true when it may
 * go out (it holds its key now), false when limit earlier messages of its
 * key hold it, or earlier ones wait: then it is chained behind (the caller
 * puts it on the group's blocked list).  limit is the queue's
 * fifo_key_limit (1: one at a time); fifo_key_release reads it from the
 * queue's shared entry, where each load of the queue's catalog puts it.
 */
bool
fifo_key_take(int32 idx, int32 limit)
{
	LeaseSlot  *s = &deliver_slots[idx];
	LWLock	   *lock;
	FifoKeyEntry *e = fifo_key_entry(s, HASH_ENTER, &lock);
	bool		take = (e->holders < limit && e->blocked_head < 0);

	if (take)
	{
		e->holders++;
		s->key_held = true;
	}
	else
	{
		s->key_next = -1;
		if (e->blocked_tail >= 0)
			deliver_slots[e->blocked_tail].key_next = idx;
		else
			e->blocked_head = idx;
		e->blocked_tail = idx;
	}
	LWLockRelease(lock);
	return take;
}

/* the message holds its key whatever else does (a finish still pending) */
void
fifo_key_hold(int32 idx)
{
	LeaseSlot  *s = &deliver_slots[idx];
	LWLock	   *lock;
	FifoKeyEntry *e = fifo_key_entry(s, HASH_ENTER, &lock);

	e->holders++;
	s->key_held = true;
	LWLockRelease(lock);
}

/*
 * A message that held its key leaves the group: the next ones of its key
 * (as many as the queue's fifo_key_limit lets out now, at most max) hold
 * it now and are put into next[] (the caller moves them from the blocked
 * list to the ready list); returns how many.
 */
int
fifo_key_release(int32 idx, int32 *next, int max)
{
	LeaseSlot  *s = &deliver_slots[idx];
	LWLock	   *lock;
	FifoKeyEntry *e = fifo_key_entry(s, HASH_FIND, &lock);
	int32		limit = deliver_queues[s->queue_idx].fifo_key_limit;
	int			n = 0;

	s->key_held = false;
	if (e == NULL)
	{
		LWLockRelease(lock);
		return 0;
	}
	e->holders--;
	while (e->holders < limit && e->blocked_head >= 0 && n < max)
	{
		int32		b = e->blocked_head;
		LeaseSlot  *bs = &deliver_slots[b];

		e->blocked_head = bs->key_next;
		if (e->blocked_head < 0)
			e->blocked_tail = -1;
		bs->key_next = -1;
		bs->key_held = true;
		e->holders++;
		next[n++] = b;
	}
	if (e->holders <= 0 && e->blocked_head < 0)
		hash_search(fifo_keys, &e->key, HASH_REMOVE, NULL);
	LWLockRelease(lock);
	return n;
}

/* forget a slot's key entry altogether (its group lets go of everything) */
void
fifo_key_forget(int32 idx)
{
	LeaseSlot  *s = &deliver_slots[idx];
	LWLock	   *lock;
	FifoKeyEntry *e = fifo_key_entry(s, HASH_FIND, &lock);

	if (e != NULL)
		hash_search(fifo_keys, &e->key, HASH_REMOVE, NULL);
	LWLockRelease(lock);
}

/*
 * The hash of an ordering key that the key index goes by.
 */
uint32
fifo_key_hash(Datum key)
{
	text	   *t = DatumGetTextPP(key);

	return hash_bytes((unsigned char *) VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
}

/*
 * A message held back behind its key leaves the group without ever
 * holding it (deliver.delete_message): take it out of the key's chain.
 */
void
fifo_key_unchain(int32 idx)
{
	LeaseSlot  *s = &deliver_slots[idx];
	LWLock	   *lock;
	FifoKeyEntry *e = fifo_key_entry(s, HASH_FIND, &lock);
	int32		prev = -1;
	int32		cur;

	if (e == NULL)
	{
		LWLockRelease(lock);
		return;
	}
	for (cur = e->blocked_head; cur >= 0 && cur != idx; cur = deliver_slots[cur].key_next)
		prev = cur;
	if (cur == idx)
	{
		if (prev >= 0)
			deliver_slots[prev].key_next = s->key_next;
		else
			e->blocked_head = s->key_next;
		if (e->blocked_tail == idx)
			e->blocked_tail = prev;
		s->key_next = -1;
	}
	if (e->holders <= 0 && e->blocked_head < 0)
		hash_search(fifo_keys, &e->key, HASH_REMOVE, NULL);
	LWLockRelease(lock);
}
