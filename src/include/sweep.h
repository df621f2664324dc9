/*
 * sweep.h
 *		The maintenance of a queue's leases (sweep.c).
 */
#ifndef DELIVER_SWEEP_H
#define DELIVER_SWEEP_H

#include "deliver.h"

typedef struct SweepCounts
{
	int64		expired;		/* leases that ran out */
	int64		ready;			/* messages ready now */
	int64		dead_lettered;	/* moved to the dead letters */
	int64		released;		/* lease slots idle groups gave back */
} SweepCounts;

extern void sweep_queue(QueueInfo *q, int max_dead, SweepCounts *out);

#endif							/* DELIVER_SWEEP_H */
