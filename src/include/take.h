/*
 * take.h
 *		A consumer group's lease slots for what its receives take
 *		(take.c).  Callers hold the group's lock.
 */
#ifndef DELIVER_TAKE_H
#define DELIVER_TAKE_H

#include "deadletter.h"
#include "scan.h"
#include "shmem.h"

extern void lease_message(GroupEntry *gs, int32 idx, Delivery *o, TimestampTz now, int64 vt_ms);
extern void lease_ready(GroupEntry *gs, int32 idx, Delivery *o, TimestampTz now, int64 vt_ms);
extern LeaseSlot *slot_for_row(ScanCtx *c, int32 idx, MessageRow *r);
extern void hold_pending_finish(ScanCtx *c, int32 idx, const MessageRow *r, TimestampTz now,
								int64 vt_ms);
extern bool ready_key_may_go(const QueueInfo *q, const GroupEntry *gs, int32 idx);

#endif							/* DELIVER_TAKE_H */
