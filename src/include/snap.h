/*
 * snap.h
 *		Cursor snapshots (DSnap): taking, testing and storing them; the
 *		commit times of transactions.
 */
#ifndef DELIVER_SNAP_H
#define DELIVER_SNAP_H

#include "datatype/timestamp.h"

/*
 * A snapshot reduced to what a cursor needs: full (epoch-widened) top-level
 * transaction ids.  In shared memory each one has room for
 * deliver_snap_xip_max xids.
 */
typedef struct DSnap
{
	uint64		xmin;
	uint64		xmax;
	uint32		nxip;
	uint64		xip[FLEXIBLE_ARRAY_MEMBER];	/* sorted ascending */
} DSnap;

extern int	deliver_snap_xip_max;
extern Size deliver_snap_size;

extern void dsnap_set_size(void);
extern void dsnap_latest(DSnap *out);
extern void dsnap_copy(DSnap *dst, const DSnap *src);
extern bool dsnap_visible(const DSnap *s, uint64 txid);
extern bool dsnap_in_xip(const DSnap *s, uint64 txid);
extern Datum dsnap_to_datum(const DSnap *s);
extern void dsnap_from_datum(Datum d, DSnap *out);
extern uint64 dsnap_next_txid(void);
extern TimestampTz txid_commit_time(uint64 txid);

#endif							/* DELIVER_SNAP_H */
