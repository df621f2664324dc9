/*
 * delayed.h
 *		Moving delayed messages that came due (delayed.c).
 */
#ifndef DELIVER_DELAYED_H
#define DELIVER_DELAYED_H

#include "deliver.h"

extern bool delayed_came_due(QueueInfo *q);
extern int64 move_due_delayed(QueueInfo *q);

#endif							/* DELIVER_DELAYED_H */
