/*
 * settings.h
 *		The values of deliver's settings (GUCs), defined and registered in
 *		module.c; each is read by the modules named next to it.
 */
#ifndef DELIVER_SETTINGS_H
#define DELIVER_SETTINGS_H

/*
 * sizes of shared memory (shmem.c, fifo.c), read too by the modules that
 * walk the entries (registry.c, lease.c, xact.c, worker.c, metrics.c)
 */
extern int	deliver_max_queues;
extern int	deliver_max_groups;
extern int	deliver_max_leases;

/* fair sharing of lease slots (lease.c), idle groups (sweep.c) */
extern int	deliver_max_leases_per_queue;
extern int	deliver_idle_release_ms;
extern int	deliver_dead_letter_retention_s;

/* messages and batches (send.c, receive.c, ack.c, sweep.c, delayed.c) */
extern int	deliver_max_payload;
extern int	deliver_max_batch;

/* queues with priorities: read-ahead and aging (readahead.c) */
extern int	deliver_priority_window;
extern int	deliver_priority_aging_ms;

/* restart points (checkpoint.c) */
extern int	deliver_checkpoint_interval_ms;

/* maintenance workers (worker.c) */
extern char *deliver_database;
extern int	deliver_maintenance_interval_ms;
extern int	deliver_maintenance_lock_timeout_ms;
extern int	deliver_sweep_batch;
extern int	deliver_alert_interval_ms;
extern int	deliver_rotation_min_size_kb;	/* maintain.c */

#endif							/* DELIVER_SETTINGS_H */
