/*
 * module.c
 *		Module load (_PG_init) and every setting (GUC) of deliver.
 *
 * The settings any backend may change or read are defined whenever the
 * library is loaded; the others, and everything else, only when it is
 * preloaded (shared_preload_libraries): shared memory (shmem.c, fifo.c),
 * the transaction callbacks (xact.c), the executor and utility hooks
 * (hooks.c) and the maintenance workers (worker.c).  settings.h says which
 * module reads which setting.
 */
#include "postgres.h"

#include "miscadmin.h"

#include "deliver.h"
#include "fifo.h"
#include "hooks.h"
#include "settings.h"
#include "shmem.h"
#include "worker.h"
#include "xact.h"

PG_MODULE_MAGIC;

/* sizes of shared memory */
int			deliver_max_queues = 256;
int			deliver_max_groups = 1024;
int			deliver_max_leases = 65536;

/* fair sharing of lease slots, idle groups */
int			deliver_max_leases_per_queue = 0;
int			deliver_idle_release_ms = 5 * 60 * 1000;

/* messages and batches */
int			deliver_max_payload = 1024 * 1024;
int			deliver_max_batch = 10000;

/* restart points */
int			deliver_checkpoint_interval_ms = 1000;
int			deliver_priority_window = 1000;
int			deliver_priority_aging_ms = 10 * 1000;

/* maintenance workers */
char	   *deliver_database = NULL;
int			deliver_maintenance_interval_ms = 1000;
int			deliver_maintenance_lock_timeout_ms = 200;
int			deliver_sweep_batch = 1000;
int			deliver_alert_interval_ms = 10000;
int			deliver_rotation_min_size_kb = 8 * 1024;
int			deliver_dead_letter_retention_s = 14 * 86400;

/* read by the SQL functions only (current_setting) */
static int	deliver_rotation_interval_ms = 10000;
static int	deliver_rotation_max_interval_ms = 600 * 1000;
static int	deliver_default_retry_base_ms = 1000;
static int	deliver_default_retry_max_ms = 300 * 1000;

void		_PG_init(void);

/*
 * Module load: define the settings; when preloaded, set up the modules
 * that need it (shared memory, transaction callbacks and hooks, workers).
 */
void
_PG_init(void)
{
	if (IsBinaryUpgrade)
		return;

	DefineCustomIntVariable("deliver.max_payload_size",
							"Largest payload (plus headers) a message may have, in bytes.",
							NULL, &deliver_max_payload, 1024 * 1024, 1, 256 * 1024 * 1024,
							PGC_SUSET, GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomIntVariable("deliver.max_batch_size",
							"Most messages one send_batch, receive or ack_batch call may handle.",
							NULL, &deliver_max_batch, 10000, 1, 1000000,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("deliver.rotation_interval",
							"How long a segment takes new messages before deliver.maintain() switches to the next.",
							NULL, &deliver_rotation_interval_ms, 10000, 1, 24 * 3600 * 1000,
							PGC_SUSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("deliver.rotation_min_size",
							"How much a segment holds before it is switched away from after deliver.rotation_interval (0: whatever it holds).",
							"A smaller one is switched away from after deliver.rotation_max_interval.",
							&deliver_rotation_min_size_kb, 8 * 1024, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_KB, NULL, NULL, NULL);
	DefineCustomIntVariable("deliver.rotation_max_interval",
							"How long a segment holding less than deliver.rotation_min_size takes new messages at most.",
							NULL, &deliver_rotation_max_interval_ms, 600 * 1000, 1, 24 * 3600 * 1000,
							PGC_SUSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("deliver.maintenance_lock_timeout",
							"How long deliver.maintain() waits for the lock to truncate a segment before it tries again later.",
							NULL, &deliver_maintenance_lock_timeout_ms, 200, 1, 3600 * 1000,
							PGC_SUSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("deliver.checkpoint_interval",
							"How often a consumer group records a new restart point.",
							NULL, &deliver_checkpoint_interval_ms, 1000, 1, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("deliver.priority_window",
							"How many ready messages a consumer group reads ahead to choose from (queues with priorities; FIFO queues with fifo_key_limit above 1); messages held back behind their FIFO key, or waiting for a later redelivery, do not count.",
							NULL, &deliver_priority_window, 1000, 1, 100000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("deliver.priority_aging",
							"How long a message of a queue with priorities waits read ahead before it rises one priority level (0: never).",
							NULL, &deliver_priority_aging_ms, 10 * 1000, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	/* read by the SQL functions (create_queue's defaults, maintain) */
	DefineCustomIntVariable("deliver.default_retry_base",
							"Default first retry delay of new queues (doubles with each attempt).",
							NULL, &deliver_default_retry_base_ms, 1000, 0, 24 * 3600 * 1000,
							PGC_USERSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("deliver.default_retry_max",
							"Default longest retry delay of new queues.",
							NULL, &deliver_default_retry_max_ms, 300 * 1000, 0, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("deliver.dead_letter_retention",
							"How long dead letters are kept before maintenance deletes them (0: forever).",
							NULL, &deliver_dead_letter_retention_s, 14 * 86400, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);

	if (!process_shared_preload_libraries_in_progress)
		return;

	DefineCustomIntVariable("deliver.max_queues",
							"Most queues that can be in use at once.",
							NULL, &deliver_max_queues, 256, 1, 100000,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("deliver.max_consumer_groups",
							"Most consumer groups that can be in use at once.",
							NULL, &deliver_max_groups, 1024, 1, 100000,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("deliver.max_in_flight",
							"Most messages leased, waiting for redelivery or held back by FIFO order at once, over all queues.",
							NULL, &deliver_max_leases, 65536, 64, (1 << DELIVERY_SLOT_BITS) - 1,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("deliver.database",
							   "Databases served by maintenance workers, one worker each (comma-separated; empty: none).",
							   NULL, &deliver_database, "",
							   PGC_POSTMASTER, GUC_LIST_INPUT, deliver_check_database_list, NULL, NULL);
	DefineCustomIntVariable("deliver.max_in_flight_per_queue",
							"Most messages one queue may have leased, waiting for redelivery or held back by FIFO order at once (0: a quarter of deliver.max_in_flight).",
							"Each queue in use may always hold deliver.max_in_flight / deliver.max_queues of them, whatever the other queues hold.",
							&deliver_max_leases_per_queue, 0, 0, (1 << DELIVERY_SLOT_BITS) - 1,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("deliver.idle_release",
							"How long a consumer group nobody receives from keeps the lease slots of its messages waiting for redelivery (0: for ever).",
							"Then it gives them back; its messages come again from its durable state at its next receive.",
							&deliver_idle_release_ms, 5 * 60 * 1000, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("deliver.maintenance_interval",
							"Pause between two runs of a maintenance worker over its queues.",
							NULL, &deliver_maintenance_interval_ms, 1000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("deliver.sweep_batch_size",
							"Most messages a maintenance sweep moves to the dead letters per consumer group in one transaction.",
							NULL, &deliver_sweep_batch, 1000, 1, 1000000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("deliver.alert_interval",
							"How often a maintenance worker checks the queues' alert thresholds.",
							NULL, &deliver_alert_interval_ms, 10000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	MarkGUCPrefixReserved("deliver");

	deliver_shmem_init();
	deliver_fifo_init();
	deliver_xact_init();
	deliver_hooks_init();
	deliver_worker_init();
}
