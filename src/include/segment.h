/*
 * segment.h
 *		A queue's current segment and its finish records (segment.c).
 */
#ifndef DELIVER_SEGMENT_H
#define DELIVER_SEGMENT_H

#include "deliver.h"
#include "snap.h"

extern int	queue_current_segment(QueueInfo *q);
extern void done_write(QueueInfo *q, int32 group_id, char kind,
					   int64 *ids, int n, DSnap *done);
extern void checkpoint_groups(QueueInfo *q, const uint64 *closed_xmax, bool *ok, int n);

#endif							/* DELIVER_SEGMENT_H */
