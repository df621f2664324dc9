/*
 * passover.h
 *		FIFO: holding back behind busy keys and passing over the rest of a
 *		busy key's run (passover.c).  Callers hold the group's lock.
 */
#ifndef DELIVER_PASSOVER_H
#define DELIVER_PASSOVER_H

#include "scan.h"
#include "shmem.h"

/* what pass_over makes of a row */
#define PASS_TAKE	0			/* take it as usual */
#define PASS_OVER	1			/* the cursor passed it, without a slot */
#define PASS_STOP	2			/* read no further (the cursor has not passed it) */

/* most rows one receive passes over */
#define PASS_OVER_MAX	4096

extern bool held_back_full(const GroupEntry *gs);
extern int	pass_over(ScanCtx *c, MessageRow *r, int *budget);
extern bool may_read_on(const GroupEntry *gs);
extern void reread_passed(ScanCtx *c);

#endif							/* DELIVER_PASSOVER_H */
