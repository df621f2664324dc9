/*
 * overflow.h
 *		A queue's max_depth with overflow drop_oldest: sends make room by
 *		moving the oldest messages to the dead letters (receive.c).
 */
#ifndef DELIVER_OVERFLOW_H
#define DELIVER_OVERFLOW_H

#include "deliver.h"

extern int	overflow_drop_oldest(QueueInfo *q, int32 group_id, int count);

#endif							/* DELIVER_OVERFLOW_H */
