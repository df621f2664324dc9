/*
 * shmem.h
 *		The layout of deliver's shared memory: every struct kept there.
 *
 * shmem.c sizes and sets up this memory at server start; the modules that
 * work on a part of it include this header for its layout:
 *
 * - lease slots (LeaseSlot), one per message between its first delivery
 *   and its finish, linked on lists of their group (lease.c, fifo.c);
 * - an entry per queue in use (QueueEntry) and per consumer group in use
 *   (GroupEntry), allocated by registry.c; a group's entry holds its cursor
 *   (cursor.c), restart points (checkpoint.c) and lease lists (lease.c);
 * - cursor snapshots, SNAPS_PER_GROUP per group entry (group_snap);
 * - the status of the maintenance workers (worker.c).
 *
 * The FIFO key index is a shared hash table of fifo.c's own.
 */
#ifndef DELIVER_SHMEM_H
#define DELIVER_SHMEM_H

#include "port/atomics.h"
#include "storage/condition_variable.h"
#include "storage/lwlock.h"
#include "storage/spin.h"

#include "deliver.h"
#include "snap.h"

#define DELIVER_CHECKPOINTS		8	/* restart points kept per group */
#define DELIVER_MAX_WORKERS		16	/* databases served by maintenance workers */
#define DELIVER_KEY_PARTITIONS	16	/* locks of the FIFO key index */
#define DELIVER_PASSED_KEYS		8	/* FIFO keys a group may pass over at once */

/* the LWLock tranche "deliver": the entry lock, the slot lock, the key locks */
#define DELIVER_LWLOCKS			(2 + DELIVER_KEY_PARTITIONS)

/* lease slot states */
#define SLOT_FREE		0
#define SLOT_LEASED		1		/* handed out, lease running */
#define SLOT_READY		2		/* waiting for redelivery at visible_at */
#define SLOT_BLOCKED	3		/* FIFO: waits behind an earlier message of its key */

/* why a message became ready again */
#define REASON_NONE		0
#define REASON_EXPIRED	1
#define REASON_NACKED	2
#define REASON_ABORTED	3
#define REASON_REJECTED	4		/* nack(dead_letter => true) */
#define REASON_TTL		5		/* the message itself expired (expiry.c) */
#define REASON_OVERFLOW	6		/* dropped by a send over max_depth (drop_oldest) */

typedef struct LeaseSlot
{
	uint64		delivery_id;	/* current fencing token; 0 when free */
	uint32		gen;			/* bumped at each delivery of this slot */
	int32		group_idx;
	int32		prev;
	int32		next;
	uint8		state;
	uint8		reason;
	uint8		seg;
	bool		has_key;
	bool		key_held;		/* FIFO: holds its key (counted in the key index) */
	bool		finish_pending;	/* a transaction is acking / dead-lettering it */
	char		finish_kind;
	uint16		attempt;
	uint8		priority;		/* the sender's, 0-9 (queues with priorities) */
	TransactionId finish_xid;	/* that transaction */
	uint32		key_hash;
	int32		queue_idx;		/* the queue whose share it counts in */
	int32		key_next;		/* FIFO: next blocked slot of the same key */
	int64		message_id;
	uint64		txid;
	uint64		cp_seq;			/* checkpoint this message counts in */
	TimestampTz enqueued_at;
	TimestampTz lease_expires;
	TimestampTz visible_at;
	TimestampTz expires_at;		/* the sender's expires_at; DT_NOEND: none */
	char		last_error[DELIVER_ERROR_LEN];
} LeaseSlot;

/* a list of lease slots (of a group, or the free list), linked by prev and next */
typedef struct SlotList
{
	int32		head;
	int32		tail;
	int64		count;
} SlotList;

/* a restart point of a group (checkpoint.c) */
typedef struct Checkpoint
{
	uint64		seq;
	int64		count;			/* unfinished messages counting here */
	TimestampTz at;
} Checkpoint;

/* shared state of one consumer group */
typedef struct GroupEntry
{
	LWLock		lock;
	int32		group_id;		/* 0 when the entry is free */
	int32		queue_idx;
	bool		recovered;		/* its cursor was rebuilt since the server started */
	uint32		boot_gen;		/* changes at each recovery */
	uint64		horizon_txid;	/* rows below may have pre-recovery done rows */

	/* cursor: window (lo, hi], position inside it (in commit order) */
	bool		in_window;
	uint64		window_seq;		/* changes with each window */
	TimestampTz pos_cts;		/* commit time of pos_txid */
	uint64		pos_txid;
	int64		pos_id;
	uint64		cp_next_seq;

	/* restart points; cps[0] is the oldest */
	int			ncp;
	Checkpoint	cps[DELIVER_CHECKPOINTS];

	SlotList	leased;
	SlotList	ready_list;
	SlotList	blocked;

	/*
	 * FIFO keys passed over (passover.c): once half of what the queue may
	 * hold is held back, the cursor passes the rows of a busy key without
	 * a slot, and every later row of that key, so that other keys go on.
	 * They are read again from the restart point of passed_cp_seq when one
	 * of these keys is free (group_reread); passed counts the rows.
	 */
	int			npassed;
	uint32		passed_keys[DELIVER_PASSED_KEYS];
	int64		passed;
	uint64		passed_cp_seq;	/* the newest restart point at the first */
	TimestampTz next_expiry;
	TimestampTz last_receive;	/* when a receive last took from it */

	int64		delivered_total;
	int64		acked_total;
	int64		dead_total;

	/*
	 * max_depth (metrics.c): the last exact count of the group, so that a
	 * send far from the limit needs none.  unfinished counts backlog,
	 * ready, blocked and in flight; sent is the queue's sent_total read
	 * before that count, finished acked_total + dead_total read with it.
	 * Valid while depth_valid and the group has not recovered since
	 * (depth_boot_gen).
	 */
	bool		depth_valid;
	uint32		depth_boot_gen;
	int64		depth_unfinished;
	int64		depth_sent;
	int64		depth_finished;

	/* flow control (flow.c): FLOW_OFF unless paused or rate-limited */
	uint8		flow;
	uint32		flow_gen;		/* bumped by each change (flow_changed) */
	bool		paused;
	double		rate;			/* messages per second; 0: none */
	double		burst;
	double		tokens;			/* token bucket: what receives may take now */
	TimestampTz refill_at;		/* when tokens was last topped up */
} GroupEntry;

/* shared state of one queue */
typedef struct QueueEntry
{
	bool		used;
	Oid			dbid;			/* key: database and */
	Oid			done_relid;		/* the OID of its done table q<id>_done0 */
	int32		queue_id;
	int32		cur_seg;		/* segment receiving inserts; -1: not loaded */
	slock_t		mutex;
	int64		sent_total;
	int32		slots_held;		/* lease slots of its groups (under slot_lock) */
	TimestampTz delayed_due;	/* earliest known delayed message, or 0 */
	uint64		delayed_version;	/* bumped when a sender sets delayed_due */
	int32		fifo_key_limit;	/* FIFO: messages of a key in flight at once (fifo.c) */
	ConditionVariable cv;		/* broadcast when messages may be available */
	pg_atomic_uint64 wakes;		/* bumped before each broadcast (queue_wake) */
} QueueEntry;

/* what a maintenance worker reports about itself (deliver.worker_status) */
typedef struct WorkerStatus
{
	char		dbname[NAMEDATALEN];
	Oid			dboid;			/* of dbname, once connected */
	int			pid;			/* 0 when not running */
	int			procno;			/* its PGPROC (for its latch) */
	TimestampTz started_at;
	TimestampTz last_run_at;	/* end of the last complete run */
	int64		last_run_us;	/* its duration */
	int64		runs;
	int64		errors;
	int64		expired_total;	/* leases that ran out, found by sweeps */
	int64		dead_total;		/* messages the sweeps moved to dead letters */
	int64		released_total;	/* lease slots idle groups gave back */
	TimestampTz last_error_at;
	char		last_error[2 * DELIVER_ERROR_LEN];
} WorkerStatus;

typedef struct DeliverShared
{
	LWLock	   *entry_lock;		/* allocation of queue and group entries */
	LWLock	   *slot_lock;		/* the free list of lease slots */
	pg_atomic_uint32 catalog_gen;
	pg_atomic_uint32 routing_gen;	/* moves when deliver.binding changes (routing.c) */
	uint32		epoch;			/* of delivery ids; 0 until the first lease */
	uint32		epoch_tli;		/* the WAL timeline the epoch was taken on */
	SlotList	free_list;		/* lease slots nobody holds, oldest freed first */
	int64		reserved;		/* free slots kept for queues below their reserve */
	LWLockPadded *key_locks;	/* DELIVER_KEY_PARTITIONS locks of the FIFO key index */
	slock_t		worker_mutex;	/* the workers' status entries */
	WorkerStatus workers[DELIVER_MAX_WORKERS];
} DeliverShared;

extern DeliverShared *deliver_shared;
extern QueueEntry *deliver_queues;
extern GroupEntry *deliver_groups;
extern LeaseSlot *deliver_slots;
extern char *deliver_snaps;

/* snapshots of group g: lo, hi, then one per checkpoint position */
#define SNAP_LO			0
#define SNAP_HI			1
#define SNAP_CP(i)		(2 + (i))
#define SNAPS_PER_GROUP	(2 + DELIVER_CHECKPOINTS)
static inline DSnap *
group_snap(int gidx, int which)
{
	return (DSnap *) (deliver_snaps +
					  ((Size) gidx * SNAPS_PER_GROUP + which) * deliver_snap_size);
}

/*
 * Wake the long polls of a queue: messages may be available, or the queue
 * changed.  The count goes up first, so a long poll that read it before
 * looking at the queue sees that it must look again, even when the
 * broadcast's latch was spent by a lock wait in between (receive.c).
 */
static inline void
queue_wake(int32 queue_idx)
{
	pg_atomic_fetch_add_u64(&deliver_queues[queue_idx].wakes, 1);
	ConditionVariableBroadcast(&deliver_queues[queue_idx].cv);
}

extern void deliver_shmem_init(void);
extern void deliver_check_preloaded(void);
extern void deliver_check_primary(void);

#endif							/* DELIVER_SHMEM_H */
