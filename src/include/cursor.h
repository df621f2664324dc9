/*
 * cursor.h
 *		A consumer group's cursor: windows in commit order (cursor.c).
 *		Callers hold the group's lock.
 */
#ifndef DELIVER_CURSOR_H
#define DELIVER_CURSOR_H

#include "scan.h"

extern void open_window(ScanCtx *c, TimestampTz now);
extern int	take_window(ScanCtx *c, MessageRow *out, int limit, bool *exhausted);
extern void window_advance(GroupEntry *gs, MessageRow *r);
extern void close_window(ScanCtx *c);

#endif							/* DELIVER_CURSOR_H */
