/*
 * flow.h
 *		Flow control of consumer groups: pause and rate limit (flow.c).
 */
#ifndef DELIVER_FLOW_H
#define DELIVER_FLOW_H

#include "datatype/timestamp.h"

#include "deliver.h"
#include "shmem.h"

/* GroupEntry.flow */
#define FLOW_OFF		0		/* neither paused nor rate-limited */
#define FLOW_UNLOADED	1		/* not read from the catalog yet */
#define FLOW_ON			2		/* paused or rate-limited */

extern void flow_entry_init(GroupEntry *gs);
extern void flow_reload(GroupEntry *gs, int32 queue_idx, int32 group_id, uint32 flow_gen);
extern int	flow_limit(GroupEntry *gs, TimestampTz now, int max);
extern void flow_taken(GroupEntry *gs, int n);
extern TimestampTz flow_next_token(GroupEntry *gs, TimestampTz now);
extern void flow_changed(int32 queue_idx, int32 group_id);

#endif							/* DELIVER_FLOW_H */
