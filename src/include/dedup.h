/*
 * dedup.h
 *		Idempotency keys of exactly-once producers (dedup.c).
 */
#ifndef DELIVER_DEDUP_H
#define DELIVER_DEDUP_H

#include "deliver.h"

extern void dedup_claim_keys(QueueInfo *q, int n, Datum *idem, bool *idem_nulls,
							 int64 *ids, bool *fresh);

#endif							/* DELIVER_DEDUP_H */
