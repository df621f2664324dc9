/*
 * shmem.c
 *		deliver's shared memory: its size, its set-up at server start, and
 *		the checks that it is there to use.
 *
 * The layout is in shmem.h.  The queue and group entries are handed out by
 * registry.c, the lease slots by lease.c; the FIFO key index (fifo.c)
 * requests a hash table of its own.
 */
#include "postgres.h"

#include "access/xlog.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"

#include "settings.h"
#include "shmem.h"
#include "snap.h"

DeliverShared *deliver_shared = NULL;
QueueEntry *deliver_queues = NULL;
GroupEntry *deliver_groups = NULL;
LeaseSlot  *deliver_slots = NULL;
char	   *deliver_snaps = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/*
 * Size of everything deliver keeps in shared memory.
 */
static Size
deliver_shmem_size(void)
{
	Size		size;

	dsnap_set_size();

	size = MAXALIGN(sizeof(DeliverShared));
	size = add_size(size, mul_size(deliver_max_queues, MAXALIGN(sizeof(QueueEntry))));
	size = add_size(size, mul_size(deliver_max_groups, MAXALIGN(sizeof(GroupEntry))));
	size = add_size(size, mul_size(deliver_max_leases, sizeof(LeaseSlot)));
	size = add_size(size, mul_size(mul_size(deliver_max_groups, SNAPS_PER_GROUP),
								   deliver_snap_size));
	return size;
}

/*
 * shmem_request_hook: ask for deliver's shared memory and its locks.
 */
static void
deliver_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(deliver_shmem_size());
	RequestNamedLWLockTranche("deliver", DELIVER_LWLOCKS);
}

/*
 * shmem_startup_hook: attach to deliver's shared memory, setting it up when
 * this is the first process to (the postmaster, at start).
 */
static void
deliver_shmem_startup(void)
{
	bool		found;
	char	   *p;
	int			i;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	p = ShmemInitStruct("deliver", deliver_shmem_size(), &found);
	if (!found)
		memset(p, 0, deliver_shmem_size());
	deliver_shared = (DeliverShared *) p;
	p += MAXALIGN(sizeof(DeliverShared));
	deliver_queues = (QueueEntry *) p;
	p += deliver_max_queues * MAXALIGN(sizeof(QueueEntry));
	deliver_groups = (GroupEntry *) p;
	p += deliver_max_groups * MAXALIGN(sizeof(GroupEntry));
	deliver_slots = (LeaseSlot *) p;
	p += (Size) deliver_max_leases * sizeof(LeaseSlot);
	deliver_snaps = p;

	if (!found)
	{
		LWLockPadded *locks = GetNamedLWLockTranche("deliver");
		int			tranche = LWLockNewTrancheId();

		deliver_shared->entry_lock = &locks[0].lock;
		deliver_shared->slot_lock = &locks[1].lock;
		deliver_shared->key_locks = &locks[2];
		pg_atomic_init_u32(&deliver_shared->catalog_gen, 1);
		pg_atomic_init_u32(&deliver_shared->routing_gen, 1);
		SpinLockInit(&deliver_shared->worker_mutex);
		/* the epoch is taken at the first lease (lease_ensure_epoch) */

		for (i = 0; i < deliver_max_queues; i++)
		{
			SpinLockInit(&deliver_queues[i].mutex);
			ConditionVariableInit(&deliver_queues[i].cv);
			pg_atomic_init_u64(&deliver_queues[i].wakes, 0);
		}
		for (i = 0; i < deliver_max_groups; i++)
			LWLockInitialize(&deliver_groups[i].lock, tranche);

		/* every lease slot starts on the free list, in order (lease.c) */
		for (i = 0; i < deliver_max_leases; i++)
		{
			deliver_slots[i].prev = i - 1;
			deliver_slots[i].next = (i + 1 < deliver_max_leases) ? i + 1 : -1;
		}
		deliver_shared->free_list.head = 0;
		deliver_shared->free_list.tail = deliver_max_leases - 1;
		deliver_shared->free_list.count = deliver_max_leases;
		deliver_shared->reserved = 0;
	}
	LWLockRelease(AddinShmemInitLock);
	LWLockRegisterTranche(deliver_groups[0].lock.tranche, "deliver_group");
}

/*
 * Install the hooks that request and set up deliver's shared memory (from
 * _PG_init, when preloading).
 */
void
deliver_shmem_init(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = deliver_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = deliver_shmem_startup;
}

/*
 * Error out clearly when the library was not preloaded: the shared memory
 * every function of deliver's works with is not there.
 */
void
deliver_check_preloaded(void)
{
	if (deliver_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("deliver must be loaded via shared_preload_libraries"),
				 errhint("Add deliver to shared_preload_libraries in postgresql.conf and restart the server.")));
}

/*
 * Error out clearly when the library was not preloaded, or when the server
 * is a standby in recovery: deliver's functions write (sends, acks) or keep
 * state in shared memory (leases, group cursors) that a standby must not
 * build up, since it would outlive a promotion without matching what the
 * primary did meanwhile.
 */
void
deliver_check_primary(void)
{
	deliver_check_preloaded();
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("deliver cannot send, receive or acknowledge during recovery"),
				 errhint("Connect to the primary server.")));
}
