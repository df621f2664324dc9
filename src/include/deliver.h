/*
 * deliver.h
 *		Shared declarations of the deliver extension.
 *
 * Storage model, in short:
 *
 * - Messages are appended once to a queue's segment tables
 *   (deliver.q<id>_s<n>) with the top-level transaction id of the sender.
 * - Each consumer group reads the segments with a cursor made of two
 *   snapshots (a "window"): the rows whose transactions are visible in the
 *   upper snapshot and not in the lower one.  The cursor only passes rows
 *   whose sending transaction has finished, in transaction order, so a
 *   producer transaction left open neither holds back nor loses messages.
 * - Leases live in shared memory (LeaseSlot).  Losing them in a crash only
 *   means redelivery.
 * - Finishing a message (ack, at-most-once consumption, dead-letter move) is
 *   durable: one row per call in the queue's done table (deliver.q<id>_done<n>,
 *   one per segment, truncated with it) holding the ids and the
 *   group's restart point (a snapshot behind which every message is
 *   finished).  After a restart a group resumes from its latest restart
 *   point and skips the messages the done rows name.
 */
#ifndef DELIVER_H
#define DELIVER_H

#include "postgres.h"

#include "access/transam.h"
#include "fmgr.h"
#include "nodes/parsenodes.h"
#include "storage/condition_variable.h"
#include "storage/lwlock.h"
#include "storage/spin.h"
#include "utils/acl.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#define DELIVER_MAX_SEGMENTS	8
#define DELIVER_CHECKPOINTS		8
#define DELIVER_ERROR_LEN		120	/* bytes kept of a nack's error, with the NUL */
/* limits of arguments */
#define DELIVER_MAX_KEY_BYTES		512 /* ordering and idempotency keys */
#define DELIVER_MAX_VISIBILITY_MS	((int64) 12 * 3600 * 1000)	/* leases and retry_after */
#define DELIVER_MAX_VISIBILITY_TEXT "12 hours"
#define DELIVER_MAX_DELAY_MS		((int64) 365 * 24 * 3600 * 1000)	/* send's delay */
#define DELIVER_MAX_DELAY_TEXT		"365 days"
#define DELIVER_MAX_WAIT_MS			((int64) 3600 * 1000)	/* receive's long poll */
#define DELIVER_MAX_WAIT_TEXT		"1 hour"
#define DELIVER_MAX_WORKERS		16	/* databases served by maintenance workers */
#define DELIVER_KEY_PARTITIONS	16	/* locks of the FIFO key index */

/* guarantees */
#define G_AT_MOST_ONCE	0
#define G_AT_LEAST_ONCE	1
#define G_EXACTLY_ONCE	2

/* kinds of finish records in the done tables (q<id>_done<n>) */
#define DONE_ACK		'a'
#define DONE_CONSUMED	'c'
#define DONE_DEAD		'd'
#define DONE_CHECKPOINT	'p'		/* a restart point only (maintenance) */

/* GUCs */
extern int	deliver_max_queues;
extern int	deliver_max_groups;
extern int	deliver_max_leases;
extern int	deliver_max_payload;
extern int	deliver_max_batch;
extern int	deliver_checkpoint_interval_ms;
extern int	deliver_rotation_interval_ms;
extern int	deliver_maintenance_lock_timeout_ms;

/*
 * A snapshot reduced to what a cursor needs: full (epoch-widened) top-level
 * transaction ids.  In shared memory each one has room for
 * deliver_snap_xip_max xids.
 */
typedef struct DSnap
{
	uint64		xmin;
	uint64		xmax;
	uint32		nxip;
	uint64		xip[FLEXIBLE_ARRAY_MEMBER];	/* sorted ascending */
} DSnap;

extern int	deliver_snap_xip_max;
extern Size deliver_snap_size;

/*
 * A delivery id (the fencing token of a lease): epoch (15 bits: WAL
 * timeline mod 32, boot counter) | generation of the lease slot (28 bits) |
 * lease slot (20 bits).  Always positive.
 */
#define DELIVERY_SLOT_BITS	20
#define DELIVERY_GEN_BITS	28
#define DELIVERY_SLOT_MASK	((UINT64CONST(1) << DELIVERY_SLOT_BITS) - 1)
#define DELIVERY_GEN_MASK	((UINT64CONST(1) << DELIVERY_GEN_BITS) - 1)

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
	char		last_error[DELIVER_ERROR_LEN];
} LeaseSlot;

typedef struct SlotList
{
	int32		head;
	int32		tail;
	int64		count;
} SlotList;

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
	TimestampTz next_expiry;
	TimestampTz last_receive;	/* when a receive last took from it */

	int64		delivered_total;
	int64		acked_total;
	int64		dead_total;
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
	ConditionVariable cv;		/* broadcast when messages may be available */
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
	LWLock	   *lock;			/* allocation of queue and group entries */
	LWLock	   *slot_lock;		/* the free list of lease slots */
	pg_atomic_uint32 catalog_gen;
	uint32		epoch;			/* of delivery ids; 0 until the first lease */
	uint32		epoch_tli;		/* the WAL timeline the epoch was taken on */
	int32		free_head;
	int32		free_tail;
	int32		free_count;		/* slots on the free list */
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

/* backend-local description of a queue, from the catalog */
typedef struct GroupInfo
{
	int32		group_id;
	char		name[NAMEDATALEN];
	DSnap	   *start;			/* messages visible here are not for it */
} GroupInfo;

typedef struct QueueInfo
{
	char		name[NAMEDATALEN];
	int32		queue_id;
	int			guarantee;
	int64		visibility_ms;
	int32		max_attempts;
	bool		fifo;
	int64		dedup_window_ms;
	int64		retry_base_ms;
	int64		retry_max_ms;
	int			nsegments;
	Oid			seg_rel[DELIVER_MAX_SEGMENTS];
	Oid			seg_idx[DELIVER_MAX_SEGMENTS];
	Oid			done_rel[DELIVER_MAX_SEGMENTS];	/* one per segment */
	Oid			dead_rel;
	Oid			delayed_rel;
	Oid			dedup_rel;
	Oid			seq_rel;
	int			ngroups;
	GroupInfo  *groups;
	int32		queue_idx;		/* index in deliver_queues */
	uint32		gen;			/* catalog_gen when loaded */
	Oid			owner;			/* of the queue's tables: statements run as it */
	Acl		   *acl;			/* deliver.queue.acl: who may send, receive */
} QueueInfo;

/* the user and search_path a statement of deliver's runs with (spi.c) */
typedef struct OwnerScope
{
	Oid			save_user;
	int			save_sec;
	int			guc_level;
} OwnerScope;

/* deliver.c */
extern void deliver_check_preloaded(void);
extern void deliver_check_primary(void);
extern uint64 deliver_new_delivery_id(int32 slot_idx);
extern int32 deliver_queue_entry(Oid dbid, Oid done_relid, int32 queue_id, bool create);
extern int32 deliver_group_entry(int32 group_id, int32 queue_idx);
extern void deliver_reset_queue_groups(int32 queue_idx, int32 group_id, bool forget);
extern void deliver_forget_database(Oid dbid);

/* catalog.c */
extern QueueInfo *queue_lookup(text *name_t);
extern QueueInfo *queue_lookup_readonly(text *name_t);
extern QueueInfo *queue_lookup_by_id(int32 queue_id);
extern const GroupInfo *queue_group(QueueInfo *q, text *group_name);
extern Oid	catalog_owner(void);
extern bool queue_has_privilege(QueueInfo *q, Oid roleid, AclMode mode);
extern void queue_check_privilege(QueueInfo *q, AclMode mode, const char *what);
extern void queue_check_metrics_privilege(QueueInfo *q);

/* spi.c */
extern void owner_scope_enter(OwnerScope *s, Oid owner);
extern void owner_scope_exit(OwnerScope *s);
extern int	spi_run(Oid owner, const char *key, const char *sql, int nargs, Oid *argtypes,
					Datum *args, const char *nulls, bool read_only, long count);

/* snap.c */
extern void dsnap_latest(DSnap *out);
extern void dsnap_copy(DSnap *dst, const DSnap *src);
extern bool dsnap_visible(const DSnap *s, uint64 txid);
extern bool dsnap_in_xip(const DSnap *s, uint64 txid);
extern Datum dsnap_to_datum(const DSnap *s);
extern void dsnap_from_datum(Datum d, DSnap *out);
extern uint64 dsnap_next_txid(void);

/* slots.c */
extern int	deliver_max_leases_per_queue;
extern int	deliver_idle_release_ms;
extern int32 lease_reserve(void);
extern int32 lease_queue_cap(void);
extern void lease_queue_added(void);
extern void lease_queue_removed(int32 queue_idx);
extern int32 slot_alloc(int32 queue_idx);
extern void slot_free(int32 idx);
extern Size fifo_keys_shmem_size(void);
extern void fifo_keys_shmem_init(void);
extern bool fifo_key_take(GroupEntry *gs, int32 idx);
extern void fifo_key_hold(GroupEntry *gs, int32 idx);
extern void group_release_slots(GroupEntry *gs);
extern void slist_push(SlotList *l, int32 idx);
extern void slist_remove(SlotList *l, int32 idx);
extern void group_finish_slot(GroupEntry *gs, int32 idx, char kind);
extern bool slot_resolve_finish(GroupEntry *gs, int32 idx);
extern void group_expire_leases(GroupEntry *gs, QueueInfo *q, TimestampTz now);
extern int64 backoff_ms(QueueInfo *q, int attempt);
extern void group_done_snapshot(GroupEntry *gs, int gidx, DSnap *out);
extern void cp_count_add(GroupEntry *gs, uint64 seq, int64 delta);
extern GroupEntry *group_lock(QueueInfo *q, int32 group_id, int *gidx_out);

/* xact.c */
extern void xact_note_leased(int32 slot_idx, uint64 delivery_id);
extern void xact_note_finish(int32 slot_idx, uint64 delivery_id);
extern void xact_note_sent(int32 queue_idx, int64 n, TimestampTz delayed_due);
extern void xact_note_moved_delayed(int32 queue_idx);
#define CATALOG_NONE			'n'
#define CATALOG_RESET			'r'
#define CATALOG_FORGET			'f'
#define CATALOG_FORGET_GROUP	'g'
#define CATALOG_SWITCH			's'
#define CATALOG_FORGET_DATABASE	'D'	/* every queue of this database (DROP EXTENSION) */
extern void xact_note_catalog(int32 queue_idx, int32 group_id, char action);
extern void deliver_xact_init(void);
extern bool xact_statement_is_top_level(void);

/* worker.c */
extern char *deliver_database;
extern int	deliver_maintenance_interval_ms;
extern int	deliver_sweep_batch;
extern int	deliver_alert_interval_ms;
extern bool deliver_check_database_list(char **newval, void **extra, GucSource source);
extern void deliver_worker_register(void);
extern bool deliver_worker_serves_database(void);
extern bool deliver_worker_status_here(WorkerStatus *out);
extern void deliver_worker_wake(Oid dbid);

/* receive.c */
typedef struct GroupLive
{
	int64		backlog;		/* not reached by the cursor yet */
	int64		in_flight;
	int64		ready;			/* waiting for redelivery */
	int64		blocked;		/* FIFO: behind an earlier message of its key */
	TimestampTz oldest;			/* enqueued_at of the oldest unfinished, or 0 */
	int64		sent_total;
	int64		acked_total;
	int64		dead_total;
} GroupLive;
extern void group_live_state(QueueInfo *q, int32 group_id, GroupLive *out);

/* recovery.c */
extern void group_recover(QueueInfo *q, GroupEntry *gs, int gidx);
extern int	recovery_filter(QueueInfo *q, GroupEntry *gs, int64 message_id,
							TransactionId *pending_xid);

/* storage.c */
extern void done_write(QueueInfo *q, int32 group_id, char kind,
					   int64 *ids, int n, DSnap *done);
extern void move_due_delayed(QueueInfo *q);
extern int	queue_current_segment(QueueInfo *q);

#endif							/* DELIVER_H */
