/*
 * deliver.h
 *		What every part of deliver shares: the storage model, the limits,
 *		the guarantees, the layout of delivery ids and the description of a
 *		queue (QueueInfo) that the modules pass around.
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
 *
 * Each module has a header of its own in src/include, included only by the
 * modules that use it; the top comment of each .c file says what it owns.
 */
#ifndef DELIVER_H
#define DELIVER_H

#include "utils/acl.h"

#define DELIVER_MAX_SEGMENTS	8
#define DELIVER_ERROR_LEN		120	/* bytes kept of a nack's error, with the NUL */

/* limits of arguments */
#define DELIVER_MAX_KEY_BYTES		512 /* ordering and idempotency keys */
#define DELIVER_MAX_VISIBILITY_MS	((int64) 12 * 3600 * 1000)	/* leases and retry_after */
#define DELIVER_MAX_VISIBILITY_TEXT "12 hours"
#define DELIVER_MAX_DELAY_MS		((int64) 365 * 24 * 3600 * 1000)	/* send's delay */
#define DELIVER_MAX_DELAY_TEXT		"365 days"
#define DELIVER_MAX_WAIT_MS			((int64) 3600 * 1000)	/* receive's long poll */
#define DELIVER_MAX_WAIT_TEXT		"1 hour"
#define DELIVER_MAX_PRIORITY		9	/* send's priority: 0 (the default) to 9 */

/* guarantees */
#define G_AT_MOST_ONCE	0
#define G_AT_LEAST_ONCE	1
#define G_EXACTLY_ONCE	2

/* kinds of finish records in the done tables (q<id>_done<n>) */
#define DONE_ACK		'a'
#define DONE_CONSUMED	'c'
#define DONE_DEAD		'd'
#define DONE_CHECKPOINT	'p'		/* a restart point only (maintenance) */
#define DONE_DELETED	'x'		/* deliver.delete_message */

/*
 * A delivery id (the fencing token of a lease): epoch (15 bits: WAL
 * timeline mod 32, boot counter) | generation of the lease slot (28 bits) |
 * lease slot (20 bits).  Always positive.  lease.c makes and reads them.
 */
#define DELIVERY_SLOT_BITS	20
#define DELIVERY_GEN_BITS	28
#define DELIVERY_SLOT_MASK	((UINT64CONST(1) << DELIVERY_SLOT_BITS) - 1)
#define DELIVERY_GEN_MASK	((UINT64CONST(1) << DELIVERY_GEN_BITS) - 1)

/* backend-local description of a queue, from the catalog (catalog.c) */
typedef struct GroupInfo
{
	int32		group_id;
	char		name[NAMEDATALEN];
	struct DSnap *start;		/* messages visible here are not for it */
} GroupInfo;

typedef struct QueueInfo
{
	char		name[NAMEDATALEN];
	int32		queue_id;
	int			guarantee;
	int64		visibility_ms;
	int32		max_attempts;
	bool		fifo;
	int32		fifo_key_limit;	/* FIFO: messages of a key in flight at once */
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
	int32		queue_idx;		/* index of its entry in deliver_queues */
	uint32		gen;			/* catalog_gen when loaded */
	Oid			owner;			/* of the queue's tables: statements run as it */
	Acl		   *acl;			/* deliver.queue.acl: who may send, receive */
	int64		message_ttl_us;	/* deliver.queue.message_ttl; 0: none */
	bool		expire_drop;	/* on_expire = 'drop' (else dead_letter) */
	int64		max_depth;		/* deliver.queue.max_depth; 0: none */
	bool		overflow_drop;	/* overflow = 'drop_oldest' (else reject) */
	bool		ack_async;		/* ack_commit = 'async', at_least_once (ackcommit.c) */
	bool		priorities;		/* deliver.queue.priorities: receive reads ahead (readahead.c) */
} QueueInfo;

#endif							/* DELIVER_H */
