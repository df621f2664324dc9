/*
 * scan.h
 *		Reading a queue's segments through their index (scan.c).
 */
#ifndef DELIVER_SCAN_H
#define DELIVER_SCAN_H

#include "executor/tuptable.h"
#include "utils/relcache.h"
#include "utils/snapshot.h"

#include "deliver.h"
#include "shmem.h"
#include "snap.h"

/* a message as read from its segment */
typedef struct MessageRow
{
	uint64		txid;
	int64		id;
	int			seg;
	TimestampTz enqueued_at;
	TimestampTz expires_at;		/* the sender's expires_at; DT_NOEND: none */
	uint8		priority;		/* the sender's priority, 0-9 */
	bool		key_null;
	bool		headers_null;
	Datum		key;
	Datum		headers;
	Datum		payload;
	TransactionId pending_xid;	/* finish pending in a prepared transaction */
} MessageRow;

/* the state of a scan of a queue's segments for one consumer group */
typedef struct ScanCtx
{
	QueueInfo  *q;
	GroupEntry *gs;
	int			gidx;
	int32		group_id;
	Relation	heap[DELIVER_MAX_SEGMENTS];
	Relation	index[DELIVER_MAX_SEGMENTS];
	Relation	done[DELIVER_MAX_SEGMENTS];
	Snapshot	snap;
	MemoryContext cxt;
	bool		open;			/* tables opened by scan_open */
	bool		count_only;		/* metrics: count rows, keep none */
	bool		skip_expired;	/* peek: leave out expired messages */
	bool		no_body;		/* read-ahead (priorities): rows without headers and
								 * payload, which fetch_row reads when needed */
	TimestampTz now;			/* (for skip_expired) */
	int64		counted;
	int64		count_stop;		/* count_only: stop counting at this many (0: all) */
	TimestampTz oldest;
	/* metrics, peek: only the rows after this position (in commit order) */
	bool		count_after;
	TimestampTz after_cts;
	uint64		after_txid;
	int64		after_id;
	uint64		cts_txid;		/* the last row's transaction and its commit time */
	TimestampTz cts;
} ScanCtx;

extern void scan_open(ScanCtx *c);
extern void scan_close(ScanCtx *c);
extern int	scan_index(ScanCtx *c, int seg, uint64 from, uint64 to, bool use_after,
					   int64 after_id, const DSnap *hi, MessageRow *out, int limit,
					   bool *more);
extern int	scan_window(ScanCtx *c, const DSnap *lo, const DSnap *hi, MessageRow *out,
						int limit, bool *exhausted);
extern bool fetch_row(ScanCtx *c, MessageRow *r);
extern uint64 tuple_txid(TupleTableSlot *tuple);
extern int	message_row_cmp(const void *a, const void *b);

#endif							/* DELIVER_SCAN_H */
