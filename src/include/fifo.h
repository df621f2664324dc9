/*
 * fifo.h
 *		The FIFO key index (fifo.c).  Callers hold the lock of the group
 *		of the lease slot they pass.
 */
#ifndef DELIVER_FIFO_H
#define DELIVER_FIFO_H

extern void deliver_fifo_init(void);
extern uint32 fifo_key_hash(Datum key);
extern bool fifo_key_busy(int32 gidx, uint32 key_hash, int32 limit);
extern int32 fifo_key_holders(int32 idx);
extern bool fifo_key_take(int32 idx, int32 limit);
extern void fifo_key_hold(int32 idx);
/* most messages of a key one release lets out (fifo_key_release) */
#define FIFO_RELEASE_MAX	64
extern int	fifo_key_release(int32 idx, int32 *next, int max);
extern void fifo_key_forget(int32 idx);
extern void fifo_key_unchain(int32 idx);

#endif							/* DELIVER_FIFO_H */
