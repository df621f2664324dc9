/*
 * readahead.h
 *		Queues whose receives read ahead and choose (priorities, FIFO keys
 *		in turn): their receive, and the order it hands out what a group
 *		has read ahead, for peek (readahead.c).
 */
#ifndef DELIVER_READAHEAD_H
#define DELIVER_READAHEAD_H

#include "deadletter.h"
#include "deliver.h"
#include "scan.h"
#include "shmem.h"

extern bool queue_reads_ahead(const QueueInfo *q);
extern int	take_read_ahead(ScanCtx *c, int max, int64 vt_ms, Delivery *out, Delivery *dead,
							int max_dead, int *ndead, bool *out_of_slots, TimestampTz now);
extern int	read_ahead_order(QueueInfo *q, GroupEntry *gs, TimestampTz now, int32 *idx, int max);

#endif							/* DELIVER_READAHEAD_H */
