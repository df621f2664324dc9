/*
 * ackcommit.h
 *		A queue's ack_commit 'async': acks that are their transaction's
 *		only work commit without waiting for the WAL flush (ackcommit.c).
 */
#ifndef DELIVER_ACKCOMMIT_H
#define DELIVER_ACKCOMMIT_H

#include "deliver.h"

#define ACS_NONE		0		/* no async ack in this transaction */
#define ACS_ASYNC		1		/* only async acks wrote so far */
#define ACS_DURABLE		2		/* something else wrote: commit durably */

/* the transaction's state; ACS_NONE until an async ack runs (xact.c tests it) */
extern int	ack_commit_state;

extern void ack_commit_begin(void);
extern void ack_commit_end(void);
extern void ack_commit_pre_commit(void);

/* what xact.c does at the end of every transaction: one test */
static inline void
ack_commit_reset(void)
{
	ack_commit_state = ACS_NONE;
}

#endif							/* DELIVER_ACKCOMMIT_H */
