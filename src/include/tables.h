/*
 * tables.h
 *		The tables of a queue: their names and their columns.
 *
 * Each queue owns a few tables in schema deliver, named after its numeric
 * id (never after the user's queue name), created by deliver.create_queue
 * (sql/admin.sql):
 *
 *	q<id>_s<n>		message segment n (append-only, rotated)
 *	q<id>_s<n>_pos	its index on (txid, message_id)
 *	q<id>_done<n>	finish records of segment n, truncated with it
 *	q<id>_dead		dead letters
 *	q<id>_delayed	messages not yet due
 *	q<id>_dedup		idempotency keys
 *	q<id>_archive	finished messages kept for a while
 *	q<id>_seq		message ids
 *
 * queue_relname builds each of these names wherever the C code needs one;
 * the column numbers below are those the code reads rows by.
 */
#ifndef DELIVER_TABLES_H
#define DELIVER_TABLES_H

#define DELIVER_SCHEMA		"deliver"

/* a table (or the index, or the sequence) of a queue */
typedef enum QueueRel
{
	QUEUE_SEGMENT,
	QUEUE_SEGMENT_INDEX,
	QUEUE_DONE,
	QUEUE_DEAD,
	QUEUE_DELAYED,
	QUEUE_DEDUP,
	QUEUE_ARCHIVE,
	QUEUE_SEQ
} QueueRel;

extern char *queue_relname(char *buf, QueueRel rel, int32 queue_id, int seg);
extern Oid	deliver_namespace(void);
extern Oid	queue_rel_oid(Oid nsp, QueueRel rel, int32 queue_id, int seg, bool missing_ok);
extern bool queue_relname_is_segment(const char *relname, int32 *queue_id, int *seg);

/* columns of a segment table q<id>_s<n> (attribute numbers) */
typedef enum SegmentColumn
{
	SEG_COL_TXID = 1,			/* xid8: the sender's top-level transaction */
	SEG_COL_MESSAGE_ID,			/* bigint */
	SEG_COL_TARGET_GROUP,		/* int: NULL, or the one group it is for */
	SEG_COL_ENQUEUED_AT,		/* timestamptz */
	SEG_COL_ORDERING_KEY,		/* text */
	SEG_COL_HEADERS,			/* jsonb */
	SEG_COL_PAYLOAD,			/* jsonb */
	SEG_COL_EXPIRES_AT,			/* timestamptz: the sender's expires_at, or NULL */
	SEG_COL_PRIORITY			/* smallint: the sender's priority (0-9), NULL for 0 */
} SegmentColumn;
#define SEG_NCOLUMNS		9
/* a segment of 0.1 (or decoded from before the upgrade): no expires_at, priority */
#define SEG_NCOLUMNS_V01	7

/* columns of a segment's index q<id>_s<n>_pos (index attribute numbers) */
#define SEG_POS_COL_TXID		1
#define SEG_POS_COL_MESSAGE_ID	2

/* columns of a done table q<id>_done<n> (attribute numbers) */
typedef enum DoneColumn
{
	DONE_COL_GROUP_ID = 1,		/* int */
	DONE_COL_KIND,				/* "char": DONE_ACK, DONE_CONSUMED, ... */
	DONE_COL_MESSAGE_IDS,		/* bigint[] */
	DONE_COL_SNAPSHOT,			/* pg_snapshot: the group's restart point */
	DONE_COL_WRITTEN_AT			/* timestamptz */
} DoneColumn;
#define DONE_NCOLUMNS		5

/* columns of deliver.queue and deliver.consumer_group read by number */
#define QUEUE_COL_QUEUE_ID		1
#define QUEUE_COL_QUEUE_NAME	2
#define GROUP_COL_GROUP_ID		1
#define GROUP_COL_QUEUE_ID		2
#define GROUP_COL_GROUP_NAME	3

#endif							/* DELIVER_TABLES_H */
