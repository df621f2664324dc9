/*
 * registry.h
 *		The entries of queues and consumer groups in shared memory
 *		(registry.c).
 */
#ifndef DELIVER_REGISTRY_H
#define DELIVER_REGISTRY_H

#include "deliver.h"
#include "shmem.h"

extern int32 deliver_queue_entry(Oid dbid, Oid done_relid, int32 queue_id, bool create);
extern int32 deliver_group_entry(int32 group_id, int32 queue_idx);
extern void deliver_reset_queue_groups(int32 queue_idx, int32 group_id, bool forget);
extern void deliver_forget_database(Oid dbid);
extern GroupEntry *group_lock(QueueInfo *q, int32 group_id, int *gidx_out);
extern int32 group_entry_find(int32 group_id, int32 queue_idx);
extern void group_entry_forget(int32 group_id, int32 queue_idx);
extern bool group_may_be_busy(QueueInfo *q, int32 group_id);

#endif							/* DELIVER_REGISTRY_H */
