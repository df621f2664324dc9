/*
 * deadletter.h
 *		Claiming and moving dead letters (deadletter.c).
 */
#ifndef DELIVER_DEADLETTER_H
#define DELIVER_DEADLETTER_H

#include "scan.h"

/*
 * A message on its way out of its group: handed out by a receive, or
 * claimed for the dead letters.
 */
typedef struct Delivery
{
	MessageRow	row;
	uint64		delivery_id;
	int32		slot;
	int			attempt;
	TimestampTz lease_expires;
	bool		fetched;
	char		dead_reason;	/* for dead-letter moves: REASON_* */
	char		last_error[DELIVER_ERROR_LEN];
} Delivery;

extern void dead_letter_claim(GroupEntry *gs, int32 idx, TimestampTz now, int64 vt_ms,
							  Delivery *o);
extern void dead_letter_move(ScanCtx *c, Delivery *dead, int ndead);

#endif							/* DELIVER_DEADLETTER_H */
