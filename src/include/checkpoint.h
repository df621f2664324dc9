/*
 * checkpoint.h
 *		The restart points of a consumer group (checkpoint.c).  Callers
 *		hold the group's lock.
 */
#ifndef DELIVER_CHECKPOINT_H
#define DELIVER_CHECKPOINT_H

#include "shmem.h"

extern void checkpoint_open(GroupEntry *gs, int gidx, TimestampTz now);
extern void checkpoint_count_add(GroupEntry *gs, uint64 seq, int64 delta);
extern void checkpoint_restart_point(GroupEntry *gs, int gidx, DSnap *out);
extern void checkpoint_reset(GroupEntry *gs, int gidx);
extern int	checkpoint_rewind(GroupEntry *gs, uint64 seq, int64 uncounted);

#endif							/* DELIVER_CHECKPOINT_H */
