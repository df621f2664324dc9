/*
 * recovery.h
 *		Rebuilding a consumer group's cursor from its durable state
 *		(recovery.c).
 */
#ifndef DELIVER_RECOVERY_H
#define DELIVER_RECOVERY_H

#include "deliver.h"
#include "shmem.h"

extern void group_recover(QueueInfo *q, GroupEntry *gs, int gidx);
extern void group_reread(GroupEntry *gs, int gidx);
extern void recovery_filter_load(QueueInfo *q, GroupEntry *gs);
extern bool recovery_finished(QueueInfo *q, int32 group_id, int64 message_id);
extern int	recovery_filter(QueueInfo *q, GroupEntry *gs, int64 message_id,
							TransactionId *pending_xid);

#endif							/* DELIVER_RECOVERY_H */
