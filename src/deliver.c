/*
 * deliver.c
 *		Module start-up: GUCs, shared memory, delivery ids.
 */
#include "deliver.h"

#include <unistd.h>

#include "access/twophase.h"
#include "access/xlog.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

PG_MODULE_MAGIC;

int			deliver_max_queues = 256;
int			deliver_max_groups = 1024;
int			deliver_max_leases = 65536;
int			deliver_max_payload = 1024 * 1024;
int			deliver_max_batch = 10000;
int			deliver_checkpoint_interval_ms = 1000;
int			deliver_rotation_interval_ms = 10000;
int			deliver_maintenance_lock_timeout_ms = 200;
static int	deliver_default_retry_base_ms = 1000;
static int	deliver_default_retry_max_ms = 300 * 1000;
static int	deliver_dead_letter_retention_s = 14 * 86400;

int			deliver_snap_xip_max;
Size		deliver_snap_size;

DeliverShared *deliver_shared = NULL;
QueueEntry *deliver_queues = NULL;
GroupEntry *deliver_groups = NULL;
LeaseSlot  *deliver_slots = NULL;
char	   *deliver_snaps = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

#define EPOCH_FILE		"deliver.epoch"

void		_PG_init(void);

/*
 * Size of everything deliver keeps in shared memory.
 */
static Size
deliver_shmem_size(void)
{
	Size		size;

	deliver_snap_xip_max = MaxBackends + max_prepared_xacts + 1;
	deliver_snap_size = MAXALIGN(offsetof(DSnap, xip) +
								 sizeof(uint64) * deliver_snap_xip_max);

	size = MAXALIGN(sizeof(DeliverShared));
	size = add_size(size, mul_size(deliver_max_queues, MAXALIGN(sizeof(QueueEntry))));
	size = add_size(size, mul_size(deliver_max_groups, MAXALIGN(sizeof(GroupEntry))));
	size = add_size(size, mul_size(deliver_max_leases, sizeof(LeaseSlot)));
	size = add_size(size, mul_size(mul_size(deliver_max_groups, SNAPS_PER_GROUP),
								   deliver_snap_size));
	return size;
}

/* the shared memory of deliver, its hash tables included */
static Size
deliver_shmem_size_all(void)
{
	return add_size(deliver_shmem_size(), fifo_keys_shmem_size());
}

static void
deliver_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(deliver_shmem_size_all());
	RequestNamedLWLockTranche("deliver", 2 + DELIVER_KEY_PARTITIONS);
}

/*
 * Read, bump and durably rewrite the boot counter kept in $PGDATA, and make
 * the epoch of delivery ids from it and the WAL timeline: epoch = (timeline
 * mod 32) << 10 | counter (1..1023).  The counter makes ids unique across
 * restarts (including crash restarts); the timeline makes them unique
 * across a failover: a base backup copies the counter file, so a standby
 * and its primary count from the same value, but a promoted standby writes
 * a timeline of its own, which the old primary never has.
 */
#define EPOCH_COUNTER_BITS	10

static uint32
deliver_next_epoch(TimeLineID tli)
{
	uint32		counter = 0;
	FILE	   *f;

	f = AllocateFile(EPOCH_FILE, PG_BINARY_R);
	if (f)
	{
		if (fread(&counter, sizeof(counter), 1, f) != 1)
			counter = 0;
		FreeFile(f);
	}
	counter++;
	if (counter >= (1U << EPOCH_COUNTER_BITS))
		counter = 1;			/* after 1023 epochs; ids of counter 1 are long gone */

	f = AllocateFile(EPOCH_FILE ".tmp", PG_BINARY_W);
	if (f == NULL || fwrite(&counter, sizeof(counter), 1, f) != 1 || FreeFile(f) != 0)
		ereport(FATAL,
				(errcode_for_file_access(),
				 errmsg("deliver: could not write file \"%s\": %m", EPOCH_FILE ".tmp")));
	(void) durable_rename(EPOCH_FILE ".tmp", EPOCH_FILE, FATAL);
	StaticAssertStmt(EPOCH_COUNTER_BITS + 5 == 63 - DELIVERY_SLOT_BITS - DELIVERY_GEN_BITS, "epoch bits");
	return ((tli & 0x1F) << EPOCH_COUNTER_BITS) | counter;
}

/*
 * Take a new epoch if there is none yet since the server started, or if
 * the timeline changed since (the server was a standby and got promoted).
 * Leases are only handed out outside recovery (deliver_check_primary).
 */
static void
deliver_ensure_epoch(void)
{
	TimeLineID	tli = GetWALInsertionTimeLine();

	if (likely(deliver_shared->epoch_tli == tli))
	{
		pg_read_barrier();
		return;
	}
	/* slot_lock, not lock: callers hold a group lock */
	LWLockAcquire(deliver_shared->slot_lock, LW_EXCLUSIVE);
	if (deliver_shared->epoch_tli != tli)
	{
		deliver_shared->epoch = deliver_next_epoch(tli);
		pg_write_barrier();
		deliver_shared->epoch_tli = tli;
	}
	LWLockRelease(deliver_shared->slot_lock);
}

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

		deliver_shared->lock = &locks[0].lock;
		deliver_shared->slot_lock = &locks[1].lock;
		deliver_shared->key_locks = &locks[2];
		pg_atomic_init_u32(&deliver_shared->catalog_gen, 1);
		SpinLockInit(&deliver_shared->worker_mutex);
		/* the epoch is taken at the first lease (deliver_ensure_epoch) */

		for (i = 0; i < deliver_max_queues; i++)
		{
			SpinLockInit(&deliver_queues[i].mutex);
			ConditionVariableInit(&deliver_queues[i].cv);
		}
		for (i = 0; i < deliver_max_groups; i++)
			LWLockInitialize(&deliver_groups[i].lock, tranche);

		/* every slot starts on the free list, in order */
		for (i = 0; i < deliver_max_leases; i++)
		{
			deliver_slots[i].prev = i - 1;
			deliver_slots[i].next = (i + 1 < deliver_max_leases) ? i + 1 : -1;
		}
		deliver_shared->free_head = 0;
		deliver_shared->free_tail = deliver_max_leases - 1;
		deliver_shared->free_count = deliver_max_leases;
		deliver_shared->reserved = 0;
	}
	fifo_keys_shmem_init();
	LWLockRelease(AddinShmemInitLock);
	LWLockRegisterTranche(deliver_groups[0].lock.tranche, "deliver_group");
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

/*
 * A new fencing token for the slot: epoch | generation | slot.  A slot's
 * generation wrapping bumps the epoch so that no token is ever reused.
 */
uint64
deliver_new_delivery_id(int32 slot_idx)
{
	LeaseSlot  *s = &deliver_slots[slot_idx];
	uint32		epoch;

	deliver_ensure_epoch();
	s->gen = (s->gen + 1) & DELIVERY_GEN_MASK;
	if (s->gen == 0)
	{
		/* slot_lock, not lock: callers hold a group lock */
		LWLockAcquire(deliver_shared->slot_lock, LW_EXCLUSIVE);
		deliver_shared->epoch = deliver_next_epoch(deliver_shared->epoch_tli);
		LWLockRelease(deliver_shared->slot_lock);
		s->gen = 1;
	}
	epoch = deliver_shared->epoch;
	return ((uint64) epoch << (DELIVERY_SLOT_BITS + DELIVERY_GEN_BITS)) |
		((uint64) s->gen << DELIVERY_SLOT_BITS) | (uint64) slot_idx;
}

/*
 * Index of the shared entry of a queue (keyed by database and the OID of
 * its done table q<id>_done0, so that a queue re-created under the same id
 * is a new one), created on first use when create; -1 when there is none.
 */
int32
deliver_queue_entry(Oid dbid, Oid done_relid, int32 queue_id, bool create)
{
	int			i;
	int			free_i = -1;

	LWLockAcquire(deliver_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < deliver_max_queues; i++)
	{
		QueueEntry *qs = &deliver_queues[i];

		if (qs->used && qs->dbid == dbid && qs->done_relid == done_relid)
		{
			LWLockRelease(deliver_shared->lock);
			return i;
		}
		if (!qs->used && free_i < 0)
			free_i = i;
	}
	if (!create)
	{
		LWLockRelease(deliver_shared->lock);
		return -1;
	}
	if (free_i < 0)
	{
		LWLockRelease(deliver_shared->lock);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("too many queues in use"),
				 errhint("Raise deliver.max_queues (now %d) and restart.", deliver_max_queues)));
	}
	deliver_queues[free_i].used = true;
	deliver_queues[free_i].dbid = dbid;
	deliver_queues[free_i].done_relid = done_relid;
	deliver_queues[free_i].queue_id = queue_id;
	deliver_queues[free_i].sent_total = 0;
	deliver_queues[free_i].slots_held = 0;
	deliver_queues[free_i].delayed_due = 1;	/* unknown: look once */
	deliver_queues[free_i].cur_seg = -1;
	lease_queue_added();
	LWLockRelease(deliver_shared->lock);
	return free_i;
}

/*
 * Index of the shared entry of a consumer group, created (not yet
 * recovered) on first use.
 */
int32
deliver_group_entry(int32 group_id, int32 queue_idx)
{
	int			i;
	int			free_i = -1;

	LWLockAcquire(deliver_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < deliver_max_groups; i++)
	{
		if (deliver_groups[i].group_id == group_id &&
			deliver_groups[i].queue_idx == queue_idx)
		{
			LWLockRelease(deliver_shared->lock);
			return i;
		}
		if (deliver_groups[i].group_id == 0 && free_i < 0)
			free_i = i;
	}
	if (free_i < 0)
	{
		LWLockRelease(deliver_shared->lock);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("too many consumer groups in use"),
				 errhint("Raise deliver.max_consumer_groups (now %d) and restart.", deliver_max_groups)));
	}
	{
		GroupEntry *gs = &deliver_groups[free_i];

		LWLockAcquire(&gs->lock, LW_EXCLUSIVE);
		gs->group_id = group_id;
		gs->queue_idx = queue_idx;
		gs->recovered = false;
		gs->leased.head = gs->leased.tail = -1;
		gs->leased.count = 0;
		gs->ready_list = gs->leased;
		gs->blocked = gs->leased;
		gs->delivered_total = gs->acked_total = gs->dead_total = 0;
		gs->last_receive = GetCurrentTimestamp();
		LWLockRelease(&gs->lock);
	}
	LWLockRelease(deliver_shared->lock);
	return free_i;
}

/*
 * Forget the in-memory state of every group of a queue, or of one group
 * when group_id is not 0 (after purge or drop): leases are released and
 * the groups recover from their durable state on next use.  With forget,
 * the entries are released too.
 */
void
deliver_reset_queue_groups(int32 queue_idx, int32 group_id, bool forget)
{
	int			i;

	LWLockAcquire(deliver_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < deliver_max_groups; i++)
	{
		GroupEntry *gs = &deliver_groups[i];

		if (gs->group_id == 0 || gs->queue_idx != queue_idx ||
			(group_id != 0 && gs->group_id != group_id))
			continue;
		LWLockAcquire(&gs->lock, LW_EXCLUSIVE);
		group_release_slots(gs);
		gs->recovered = false;
		if (forget)
			gs->group_id = 0;
		LWLockRelease(&gs->lock);
	}
	if (forget && group_id == 0)
	{
		lease_queue_removed(queue_idx);
		deliver_queues[queue_idx].used = false;
	}
	LWLockRelease(deliver_shared->lock);
}

/*
 * Forget the shared state of every queue of a database (dropped, or the
 * extension dropped in it): its lease slots, queue and group entries.
 */
void
deliver_forget_database(Oid dbid)
{
	int			i;

	for (i = 0; i < deliver_max_queues; i++)
	{
		if (!deliver_queues[i].used || deliver_queues[i].dbid != dbid)
			continue;
		ConditionVariableBroadcast(&deliver_queues[i].cv);
		deliver_reset_queue_groups(i, 0, true);
	}
}

void
_PG_init(void)
{
	if (IsBinaryUpgrade)
		return;

	DefineCustomIntVariable("deliver.max_payload_size",
							"Largest payload (plus headers) a message may have, in bytes.",
							NULL, &deliver_max_payload, 1024 * 1024, 1, 256 * 1024 * 1024,
							PGC_SUSET, GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomIntVariable("deliver.max_batch_size",
							"Most messages one send_batch, receive or ack_batch call may handle.",
							NULL, &deliver_max_batch, 10000, 1, 1000000,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("deliver.rotation_interval",
							"How long a segment takes new messages before deliver.maintain() switches to the next.",
							NULL, &deliver_rotation_interval_ms, 10000, 1, 24 * 3600 * 1000,
							PGC_SUSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("deliver.maintenance_lock_timeout",
							"How long deliver.maintain() waits for the lock to truncate a segment before it tries again later.",
							NULL, &deliver_maintenance_lock_timeout_ms, 200, 1, 3600 * 1000,
							PGC_SUSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("deliver.checkpoint_interval",
							"How often a consumer group records a new restart point.",
							NULL, &deliver_checkpoint_interval_ms, 1000, 1, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	/* read by the SQL functions (create_queue's defaults, maintain) */
	DefineCustomIntVariable("deliver.default_retry_base",
							"Default first retry delay of new queues (doubles with each attempt).",
							NULL, &deliver_default_retry_base_ms, 1000, 0, 24 * 3600 * 1000,
							PGC_USERSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("deliver.default_retry_max",
							"Default longest retry delay of new queues.",
							NULL, &deliver_default_retry_max_ms, 300 * 1000, 0, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("deliver.dead_letter_retention",
							"How long dead letters are kept before maintenance deletes them (0: forever).",
							NULL, &deliver_dead_letter_retention_s, 14 * 86400, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);

	if (!process_shared_preload_libraries_in_progress)
		return;

	DefineCustomIntVariable("deliver.max_queues",
							"Most queues that can be in use at once.",
							NULL, &deliver_max_queues, 256, 1, 100000,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("deliver.max_consumer_groups",
							"Most consumer groups that can be in use at once.",
							NULL, &deliver_max_groups, 1024, 1, 100000,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("deliver.max_in_flight",
							"Most messages leased, waiting for redelivery or held back by FIFO order at once, over all queues.",
							NULL, &deliver_max_leases, 65536, 64, (1 << DELIVERY_SLOT_BITS) - 1,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("deliver.database",
							   "Databases served by maintenance workers, one worker each (comma-separated; empty: none).",
							   NULL, &deliver_database, "",
							   PGC_POSTMASTER, GUC_LIST_INPUT, deliver_check_database_list, NULL, NULL);
	DefineCustomIntVariable("deliver.max_in_flight_per_queue",
							"Most messages one queue may have leased, waiting for redelivery or held back by FIFO order at once (0: a quarter of deliver.max_in_flight).",
							"Each queue in use may always hold deliver.max_in_flight / deliver.max_queues of them, whatever the other queues hold.",
							&deliver_max_leases_per_queue, 0, 0, (1 << DELIVERY_SLOT_BITS) - 1,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("deliver.idle_release",
							"How long a consumer group nobody receives from keeps the lease slots of its messages waiting for redelivery (0: for ever).",
							"Then it gives them back; its messages come again from its durable state at its next receive.",
							&deliver_idle_release_ms, 5 * 60 * 1000, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("deliver.maintenance_interval",
							"Pause between two runs of a maintenance worker over its queues.",
							NULL, &deliver_maintenance_interval_ms, 1000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("deliver.sweep_batch_size",
							"Most messages a maintenance sweep moves to the dead letters per consumer group in one transaction.",
							NULL, &deliver_sweep_batch, 1000, 1, 1000000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("deliver.alert_interval",
							"How often a maintenance worker checks the queues' alert thresholds.",
							NULL, &deliver_alert_interval_ms, 10000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	MarkGUCPrefixReserved("deliver");

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = deliver_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = deliver_shmem_startup;

	deliver_xact_init();
	deliver_worker_register();
}
