/*
 * metrics.h
 *		A queue's depth, for its max_depth (metrics.c).
 */
#ifndef DELIVER_METRICS_H
#define DELIVER_METRICS_H

#include "deliver.h"

extern int64 group_depth(QueueInfo *q, int32 group_id, int64 stop);
extern bool group_depth_fits(QueueInfo *q, int32 group_id, int64 n, int64 limit);

#endif							/* DELIVER_METRICS_H */
