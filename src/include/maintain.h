/*
 * maintain.h
 *		A queue's storage maintenance (maintain.c).
 */
#ifndef DELIVER_MAINTAIN_H
#define DELIVER_MAINTAIN_H

#include "deliver.h"

typedef struct MaintainResult
{
	int			truncated;		/* segments reclaimed */
	bool		rotated;		/* the active segment switched */
	int64		expired_keys;	/* idempotency keys past their window */
	int64		expired_dead_letters;	/* past deliver.dead_letter_retention */
	int64		archived;		/* messages copied to the archive */
	int64		expired_archive;	/* archived messages past their retention */
} MaintainResult;

extern void maintain_queue(QueueInfo *q, bool expiries, MaintainResult *r);

#endif							/* DELIVER_MAINTAIN_H */
