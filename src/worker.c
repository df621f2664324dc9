/*
 * worker.c
 *		The maintenance background workers.
 *
 * deliver.database lists the databases to serve; one worker is registered
 * for each at server start.  A worker wakes every
 * deliver.maintenance_interval and, for each queue of its database, in a
 * transaction of its own per step (committed without waiting for the WAL
 * flush: see deliver_worker_main):
 *
 *	- moves delayed messages that came due into the active segment (its
 *	  commit wakes long polls);
 *	- sweeps the leases: leases that ran out become ready again after their
 *	  backoff, messages out of attempts move to the dead letters (with the
 *	  reason and last error), and long polls are woken when something is
 *	  ready;
 *	- maintains its storage (maintain.c, as deliver.maintain()): segment
 *	  rotation and truncation, expiry of idempotency keys, of old dead
 *	  letters and of the archive.
 *
 * Each step calls its C primitive directly (delayed.c, sweep.c,
 * maintain.c); SQL-callable wrappers (deliver._move_due, deliver._sweep,
 * deliver.maintain) run the same code for a database without a worker.
 *
 * Every deliver.alert_interval it checks the queues' alert thresholds
 * (deliver._check_alerts).  An error in one step is logged, counted in the
 * worker's status (deliver.worker_status) and the loop goes on.
 *
 * A little over 500 lines, kept whole: the setting that lists the
 * databases, registration, the loop with its latch and signals, the wake-up
 * at the earliest due time and the status the worker publishes are one life
 * cycle; the steps themselves live in their own modules.
 */
#include "postgres.h"

#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"
#include "utils/varlena.h"

#include "args.h"
#include "catalog.h"
#include "delayed.h"
#include "maintain.h"
#include "settings.h"
#include "shmem.h"
#include "sweep.h"
#include "worker.h"

PGDLLEXPORT void deliver_worker_main(Datum arg);

static WorkerStatus *my_status = NULL;

/* how soon the postmaster restarts a worker that exited with an error */
#define WORKER_RESTART_S	5

/* the shortest sleep between two runs (a move that keeps failing must not spin) */
#define WORKER_MIN_WAIT_MS	10

/*
 * How often a run also deletes expired idempotency keys, dead letters and
 * archived messages (looking at three tables per queue): what has expired
 * is deleted within this much of the next run (a dedup check ignores an
 * expired key anyway).
 */
#define WORKER_EXPIRY_INTERVAL_MS	10000

/*
 * The database names of a deliver.database value, or NIL when it does not
 * parse.  The list points into a copy made in the current memory context.
 */
static List *
database_list(const char *value, bool *ok)
{
	char	   *raw = pstrdup(value ? value : "");
	List	   *names = NIL;

	*ok = SplitGUCList(raw, ',', &names);
	return *ok ? names : NIL;
}

/*
 * GUC check hook of deliver.database: a list of at most
 * DELIVER_MAX_WORKERS distinct database names.
 */
bool
deliver_check_database_list(char **newval, void **extra, GucSource source)
{
	bool		ok;
	List	   *names = database_list(*newval, &ok);
	ListCell   *lc;
	ListCell   *lc2;

	if (!ok)
	{
		GUC_check_errdetail("List syntax is invalid.");
		return false;
	}
	if (list_length(names) > DELIVER_MAX_WORKERS)
	{
		GUC_check_errdetail("At most %d databases can be listed.", DELIVER_MAX_WORKERS);
		return false;
	}
	foreach(lc, names)
	{
		char	   *name = lfirst(lc);

		if (name[0] == '\0' || strlen(name) >= NAMEDATALEN)
		{
			GUC_check_errdetail("Database name \"%s\" is invalid.", name);
			return false;
		}
		for_each_cell(lc2, names, lnext(names, lc))
		{
			if (strcmp(name, lfirst(lc2)) == 0)
			{
				GUC_check_errdetail("Database \"%s\" is listed twice.", name);
				return false;
			}
		}
	}
	return true;
}

/*
 * The databases deliver.database lists, one worker each, in the order of
 * their entries in DeliverShared.workers.
 */
List *
deliver_worker_databases(void)
{
	bool		ok;

	return database_list(deliver_database, &ok);
}

/*
 * Register one worker per listed database (from _PG_init, when preloading).
 */
void
deliver_worker_init(void)
{
	bool		ok;
	List	   *names = database_list(deliver_database, &ok);
	ListCell   *lc;

	foreach(lc, names)
	{
		BackgroundWorker worker;
		int			i = foreach_current_index(lc);

		memset(&worker, 0, sizeof(worker));
		worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
		worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
		worker.bgw_restart_time = WORKER_RESTART_S;
		snprintf(worker.bgw_library_name, BGW_MAXLEN, "deliver");
		snprintf(worker.bgw_function_name, BGW_MAXLEN, "deliver_worker_main");
		snprintf(worker.bgw_name, BGW_MAXLEN, "deliver maintenance %s", (char *) lfirst(lc));
		snprintf(worker.bgw_type, BGW_MAXLEN, "deliver maintenance");
		strlcpy(worker.bgw_extra, lfirst(lc), BGW_EXTRALEN);
		worker.bgw_main_arg = Int32GetDatum(i);
		RegisterBackgroundWorker(&worker);
	}
}

/*
 * Does a maintenance worker serve the current database?
 */
bool
deliver_worker_serves_database(void)
{
	static Oid	checked_db = InvalidOid;
	static bool serves = false;

	if (checked_db != MyDatabaseId)
	{
		char	   *name = get_database_name(MyDatabaseId);
		bool		ok;
		List	   *names = database_list(deliver_database, &ok);
		ListCell   *lc;

		serves = false;
		foreach(lc, names)
			if (name && strcmp(name, lfirst(lc)) == 0)
				serves = true;
		checked_db = MyDatabaseId;
	}
	return serves;
}

/* note an error in the worker's status */
static void
status_error(const char *what, const char *msg)
{
	char		text[sizeof(my_status->last_error)];

	clip_copy(text, psprintf("%s: %s", what, msg), sizeof(text));
	SpinLockAcquire(&deliver_shared->worker_mutex);
	my_status->errors++;
	my_status->last_error_at = GetCurrentTimestamp();
	memcpy(my_status->last_error, text, sizeof(text));
	SpinLockRelease(&deliver_shared->worker_mutex);
}

/* the steps of a run, each in a transaction of its own */
typedef enum WorkerStep
{
	STEP_MOVE_DUE,				/* delayed messages that came due */
	STEP_SWEEP,					/* leases */
	STEP_MAINTAIN,				/* storage */
	STEP_ALERTS					/* alert thresholds (every queue at once) */
} WorkerStep;

static const char *const step_names[] = {"moving due messages", "sweeping leases",
"maintaining storage", "checking alerts"};

/*
 * Run one step on one queue (queue NULL: STEP_ALERTS) in a transaction of
 * its own; on error, log it, count it in the worker's status and go on.
 * Returns false on error; a sweep adds its counts to *sweep; maintenance
 * deletes what expired only with expiries.
 */
static bool
run_step(WorkerStep step, const char *queue, bool expiries, SweepCounts *sweep)
{
	MemoryContext outer = CurrentMemoryContext;
	volatile bool ok = true;
	char		activity[NAMEDATALEN + 64];

	snprintf(activity, sizeof(activity), "deliver: %s%s%s", step_names[step],
			 queue ? " of queue " : "", queue ? queue : "");
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, activity);
		if (step == STEP_ALERTS)
		{
			if (SPI_execute("SELECT deliver._check_alerts()", false, 0) != SPI_OK_SELECT)
				elog(ERROR, "deliver: the alert check failed");
		}
		else
		{
			QueueInfo  *q = queue_lookup(cstring_to_text(queue));
			SweepCounts n;
			MaintainResult r;

			switch (step)
			{
				case STEP_MOVE_DUE:
					(void) move_due_delayed(q);
					break;
				case STEP_SWEEP:
					sweep_queue(q, deliver_sweep_batch, &n);
					sweep->expired += n.expired;
					sweep->dead_lettered += n.dead_lettered;
					sweep->released += n.released;
					break;
				case STEP_MAINTAIN:
					maintain_queue(q, expiries, &r);
					break;
				case STEP_ALERTS:
					break;
			}
		}
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		MemoryContextSwitchTo(outer);	/* the commit left us in TopMemoryContext */
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		char		what[NAMEDATALEN + 16];

		MemoryContextSwitchTo(outer);
		edata = CopyErrorData();
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		if (queue)
			snprintf(what, sizeof(what), "queue \"%s\"", queue);
		else
			snprintf(what, sizeof(what), "alerts");
		status_error(what, edata->message);
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return ok;
}

/*
 * Is the extension in this database the version of this library?  Until
 * ALTER EXTENSION deliver UPDATE, the worker leaves the database alone
 * (and says so, once).
 */
static bool
extension_version_ok(const char *version)
{
	static bool warned = false;

	if (version != NULL && strcmp(version, DELIVER_VERSION) == 0)
	{
		warned = false;
		return true;
	}
	if (!warned)
		ereport(WARNING,
				(errmsg("deliver: the extension in database \"%s\" is version %s, the library is version %s: its queues are not maintained",
						get_database_name(MyDatabaseId), version ? version : "?", DELIVER_VERSION),
				 errhint("Run ALTER EXTENSION deliver UPDATE in that database.")));
	warned = true;
	return false;
}

/*
 * The names of the queues of this database (none when the extension is not
 * created here, or not updated to this library's version).
 */
static List *
worker_queues(void)
{
	List	   *queues = NIL;
	MemoryContext outer = CurrentMemoryContext;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_execute("SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'deliver'", true, 1) ==
		SPI_OK_SELECT && SPI_processed == 1 &&
		extension_version_ok(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1)) &&
		SPI_execute("SELECT queue_name FROM deliver.queue ORDER BY queue_id", true, 0) ==
		SPI_OK_SELECT)
	{
		uint64		i;
		MemoryContext spi = MemoryContextSwitchTo(outer);

		for (i = 0; i < SPI_processed; i++)
			queues = lappend(queues, SPI_getvalue(SPI_tuptable->vals[i],
												  SPI_tuptable->tupdesc, 1));
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(outer);	/* the commit left us in TopMemoryContext */
	return queues;
}

/*
 * One run over every queue of the database: all of maintenance (deleting
 * what expired with expiries), or only the moves of delayed messages that
 * came due (moves_only).
 */
static void
worker_run(bool check_alerts, bool expiries, bool moves_only)
{
	List	   *queues = worker_queues();
	ListCell   *lc;
	TimestampTz start = GetCurrentTimestamp();
	SweepCounts swept = {0};

	foreach(lc, queues)
	{
		char	   *name = lfirst(lc);

		CHECK_FOR_INTERRUPTS();
		(void) run_step(STEP_MOVE_DUE, name, false, &swept);
		if (moves_only)
			continue;
		(void) run_step(STEP_SWEEP, name, false, &swept);
		(void) run_step(STEP_MAINTAIN, name, expiries, &swept);
	}
	if (check_alerts && queues != NIL)
		(void) run_step(STEP_ALERTS, NULL, false, &swept);
	if (moves_only)
		return;

	SpinLockAcquire(&deliver_shared->worker_mutex);
	my_status->runs++;
	my_status->last_run_at = GetCurrentTimestamp();
	my_status->last_run_us = my_status->last_run_at - start;
	my_status->expired_total += swept.expired;
	my_status->dead_total += swept.dead_lettered;
	my_status->released_total += swept.released;
	SpinLockRelease(&deliver_shared->worker_mutex);
}

/*
 * The earliest due time of a delayed message the queues of this database
 * know of (0: none known).
 */
static TimestampTz
earliest_due(void)
{
	TimestampTz due = 0;
	int			i;

	for (i = 0; i < deliver_max_queues; i++)
	{
		QueueEntry *qs = &deliver_queues[i];
		TimestampTz d;

		if (!qs->used || qs->dbid != MyDatabaseId)
			continue;
		SpinLockAcquire(&qs->mutex);
		d = qs->delayed_due;
		SpinLockRelease(&qs->mutex);
		/* 1: unknown (the queue was just loaded): look now */
		if (d != 0 && (due == 0 || d < due))
			due = d;
	}
	return due;
}

/*
 * Wake the maintenance worker of a database (a delayed message was sent
 * that comes due before those it knew of).
 */
void
deliver_worker_wake(Oid dbid)
{
	int			i;

	for (i = 0; i < DELIVER_MAX_WORKERS; i++)
	{
		WorkerStatus *w = &deliver_shared->workers[i];
		int			procno = -1;

		SpinLockAcquire(&deliver_shared->worker_mutex);
		if (w->pid != 0 && w->dboid == dbid)
			procno = w->procno;
		SpinLockRelease(&deliver_shared->worker_mutex);
		if (procno >= 0)
			SetLatch(&ProcGlobal->allProcs[procno].procLatch);
	}
}

/* on exit: the worker's status says it is not running */
static void
worker_exit(int code, Datum arg)
{
	SpinLockAcquire(&deliver_shared->worker_mutex);
	my_status->pid = 0;
	SpinLockRelease(&deliver_shared->worker_mutex);
}

/*
 * The main function of a maintenance worker (bgw_function_name): connect
 * to its database, then run maintenance until told to stop.
 */
void
deliver_worker_main(Datum arg)
{
	int			idx = DatumGetInt32(arg);
	char		dbname[NAMEDATALEN];
	MemoryContext loop_cxt;
	TimestampTz last_alerts = 0;
	TimestampTz last_expiries = 0;
	TimestampTz next_run;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	strlcpy(dbname, MyBgworkerEntry->bgw_extra, sizeof(dbname));
	my_status = &deliver_shared->workers[idx];
	SpinLockAcquire(&deliver_shared->worker_mutex);
	strlcpy(my_status->dbname, dbname, sizeof(my_status->dbname));
	my_status->pid = MyProcPid;
	my_status->started_at = GetCurrentTimestamp();
	SpinLockRelease(&deliver_shared->worker_mutex);
	before_shmem_exit(worker_exit, (Datum) 0);

	BackgroundWorkerInitializeConnection(dbname, NULL, 0);
	SpinLockAcquire(&deliver_shared->worker_mutex);
	my_status->dboid = MyDatabaseId;
	my_status->procno = MyProc->pgprocno;
	SpinLockRelease(&deliver_shared->worker_mutex);
	/*
	 * The worker runs as a superuser: no function or operator that the
	 * database's owner (or ALTER DATABASE ... SET search_path) put in front
	 * of pg_catalog may resolve in what it runs.
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);

	/*
	 * The worker's commits do not wait for the WAL flush: with a commit per
	 * step and queue, waiting made a run over many queues as long as that
	 * many flushes.  Losing its last commits in a crash loses nothing: what
	 * it does is done again by its next run (moving due messages, sweeping,
	 * restart points, expiries, rotation), and whatever came to depend on
	 * one of its commits durably (an ack or a send after it, an at-most-once
	 * receive, a push client, which is only sent flushed WAL) flushed the
	 * WAL past it first.  A truncation, which unlinks files, still commits
	 * durably (PostgreSQL forces it).
	 */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);
	elog(LOG, "deliver maintenance worker started in database \"%s\"", dbname);

	loop_cxt = AllocSetContextCreate(TopMemoryContext, "deliver worker loop",
									 ALLOCSET_DEFAULT_SIZES);
	next_run = GetCurrentTimestamp();
	for (;;)
	{
		MemoryContext old;
		TimestampTz now;
		TimestampTz due;
		bool		alerts;
		long		wait_ms;

		/*
		 * Sleep until the next run, or until a delayed message comes due: it
		 * is moved then (a sender of an earlier one wakes the worker), so
		 * that it takes its place in its key's order at its due time.
		 */
		now = GetCurrentTimestamp();
		due = earliest_due();
		wait_ms = (long) Max((next_run - now) / 1000, 0);
		if (due != 0 && due < next_run)
			wait_ms = (long) Max((due - now + 999) / 1000, WORKER_MIN_WAIT_MS);
		if (wait_ms > 0)
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 wait_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		/* a queue whose tables someone keeps locked must not stall the others */
		{
			char		buf[32];

			snprintf(buf, sizeof(buf), "%d", deliver_maintenance_lock_timeout_ms);
			SetConfigOption("lock_timeout", buf, PGC_SUSET, PGC_S_SESSION);
		}
		now = GetCurrentTimestamp();
		old = MemoryContextSwitchTo(loop_cxt);
		if (now >= next_run)
		{
			bool		expiries = TimestampDifferenceExceeds(last_expiries, now,
															  WORKER_EXPIRY_INTERVAL_MS);

			alerts = TimestampDifferenceExceeds(last_alerts, now, deliver_alert_interval_ms);
			if (alerts)
				last_alerts = now;
			if (expiries)
				last_expiries = now;
			worker_run(alerts, expiries, false);
			next_run = GetCurrentTimestamp() + (int64) deliver_maintenance_interval_ms * 1000;
		}
		else if ((due = earliest_due()) != 0 && due <= now)
			worker_run(false, false, true);
		MemoryContextSwitchTo(old);
		MemoryContextReset(loop_cxt);
	}
}
