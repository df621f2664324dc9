/*
 * xact.h
 *		Tying shared-memory state to the fate of the current transaction
 *		(xact.c).
 */
#ifndef DELIVER_XACT_H
#define DELIVER_XACT_H

#include "datatype/timestamp.h"

/* what a change of deliver's catalog asks of shared memory at commit */
#define CATALOG_NONE			'n'
#define CATALOG_RESET			'r'
#define CATALOG_FORGET			'f'
#define CATALOG_FORGET_GROUP	'g'
#define CATALOG_SWITCH			's'
#define CATALOG_FLOW			'F'	/* a group's flow control changed (flow.c) */
#define CATALOG_FORGET_DATABASE	'D'	/* every queue of this database (DROP EXTENSION) */

extern void deliver_xact_init(void);
extern void xact_note_leased(int32 slot_idx, uint64 delivery_id);
extern void xact_note_finish(int32 slot_idx, uint64 delivery_id);
extern void xact_note_sent(int32 queue_idx, int64 n, TimestampTz delayed_due);
extern void xact_note_moved_delayed(int32 queue_idx);
extern void xact_note_catalog(int32 queue_idx, int32 group_id, char action);
extern void xact_note_segment_switch(int32 queue_idx, int segment);
extern void xact_note_prepared_finished(void);

#endif							/* DELIVER_XACT_H */
