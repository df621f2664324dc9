/*
 * lease.h
 *		Lease slots: delivery ids, the free list and its fair sharing,
 *		the lists of a group, finishing, expiry and backoff (lease.c).
 */
#ifndef DELIVER_LEASE_H
#define DELIVER_LEASE_H

#include "deliver.h"
#include "shmem.h"

/* delivery ids */
extern uint64 lease_new_delivery_id(int32 slot_idx);
extern int32 lease_slot_of(int64 delivery_id);

/* the free list and how it is shared between queues */
extern int32 lease_reserve(void);
extern int32 lease_queue_cap(void);
extern int32 lease_queue_reach(int32 queue_idx);
extern void lease_queue_added(void);
extern void lease_queue_removed(int32 queue_idx);
extern int32 slot_alloc(int32 queue_idx);
extern void slot_free(int32 idx);

/* the slots of a group (callers hold its lock, but for lease_lock_group) */
extern void slist_push(SlotList *l, int32 idx);
extern void slist_remove(SlotList *l, int32 idx);
extern void group_release_slots(GroupEntry *gs);
extern void group_finish_slot(GroupEntry *gs, int32 idx, char kind);
extern bool slot_resolve_finish(GroupEntry *gs, int32 idx);
extern GroupEntry *lease_lock_group(int32 idx, uint64 delivery_id);
extern void lease_forget_vanished(GroupEntry *gs, int32 idx, uint64 delivery_id);

/* expiry */
extern int64 backoff_ms(QueueInfo *q, int attempt);
extern void group_expire_leases(GroupEntry *gs, QueueInfo *q, TimestampTz now);

#endif							/* DELIVER_LEASE_H */
