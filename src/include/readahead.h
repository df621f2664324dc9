/*
 * readahead.h
 *		Queues whose receives read ahead and choose (priorities, FIFO keys
 *		in turn): the order a receive hands out what a group has read
 *		ahead, for peek (receive.c).
 */
#ifndef DELIVER_READAHEAD_H
#define DELIVER_READAHEAD_H

#include "deliver.h"
#include "shmem.h"

extern bool queue_reads_ahead(const QueueInfo *q);
extern int	read_ahead_order(QueueInfo *q, GroupEntry *gs, TimestampTz now, int32 *idx, int max);

#endif							/* DELIVER_READAHEAD_H */
