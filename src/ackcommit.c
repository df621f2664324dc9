/*
 * ackcommit.c
 *		ack_commit 'async': an ack that is its transaction's only work
 *		commits without waiting for its WAL to reach the disk.
 *
 * An at-least-once ack (one finish record) is a durable commit like any
 * other: the backend waits until the commit record is flushed.  With many
 * consumers acking one message at a time, that wait is most of an ack's
 * time, and the acks share the disk's flushes with the producers' sends.
 * A queue with ack_commit = 'async' lets such an ack's transaction commit
 * with synchronous_commit off, for that transaction only.  Losing the
 * ack's commit in a crash (the WAL writer flushes it within
 * 3 x wal_writer_delay) only means the message is delivered again: its
 * finish record is gone with it, nothing else is.  Anything durable that
 * depends on the ack (a restart point, a segment's truncation) is written
 * later in the WAL, so it is only durable once the ack is.
 *
 * The transaction must not hold anything else that needs the flush: the
 * first async ack must come before anything of the transaction wrote WAL
 * (no transaction id yet, no WAL record), and no WAL record may be written between the
 * transaction's async acks nor after the last one.  Anything else (a
 * write of the consumer's, an ack of a durable queue, another deliver
 * call that writes) makes the commit durable as usual.  A transaction
 * block made only of acks qualifies; an ack inside a transaction that
 * also wrote its effects does not, and commits them durably.  Prepared
 * transactions are always durable.
 *
 * Queues with ack_commit 'durable' pay one test per ack, and every
 * transaction one test at its end.
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "executor/instrument.h"
#include "utils/guc.h"

#include "ackcommit.h"

int			ack_commit_state = ACS_NONE;

/* pgWalUsage.wal_records after the transaction's last async ack */
static int64 wal_mark;

/*
 * Before an ack of an async queue writes anything.
 */
void
ack_commit_begin(void)
{
	if (ack_commit_state == ACS_NONE)
		ack_commit_state = TransactionIdIsValid(GetTopTransactionIdIfAny()) ||
			XactLastRecEnd != InvalidXLogRecPtr ? ACS_DURABLE : ACS_ASYNC;
	else if (ack_commit_state == ACS_ASYNC && pgWalUsage.wal_records != wal_mark)
		ack_commit_state = ACS_DURABLE;
}

/*
 * After an ack of an async queue wrote its finish record.
 */
void
ack_commit_end(void)
{
	if (ack_commit_state == ACS_ASYNC)
		wal_mark = pgWalUsage.wal_records;
}

/*
 * At pre-commit of a transaction that ran an async ack: when nothing but
 * async acks wrote WAL, commit without waiting for the flush (this
 * transaction only: SET LOCAL, undone when it ends).
 */
void
ack_commit_pre_commit(void)
{
	if (ack_commit_state == ACS_ASYNC && pgWalUsage.wal_records == wal_mark &&
		synchronous_commit != SYNCHRONOUS_COMMIT_OFF)
	{
		(void) set_config_option("synchronous_commit", "off", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_LOCAL, true, ERROR, false);
		elog(DEBUG1, "deliver: ack_commit async: this transaction commits without waiting for the WAL flush");
	}
	ack_commit_state = ACS_NONE;
}
