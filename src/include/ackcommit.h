/*
 * ackcommit.h
 *		A queue's ack_commit 'async': acks that are their transaction's
 *		only work commit without waiting for the WAL flush (ackcommit.c).
 */
#ifndef DELIVER_ACKCOMMIT_H
#define DELIVER_ACKCOMMIT_H

#include "deliver.h"

/* the transaction's state; 0 until an async ack runs (xact.c tests it) */
extern int	ack_commit_state;

extern void ack_commit_begin(void);
extern void ack_commit_end(void);
extern void ack_commit_pre_commit(void);

/* what xact.c does at the end of every transaction: one test */
static inline void
ack_commit_reset(void)
{
	ack_commit_state = 0;
}

#endif							/* DELIVER_ACKCOMMIT_H */
