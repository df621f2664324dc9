/*
 * fifo.h
 *		The FIFO key index (fifo.c).  Callers hold the lock of the group
 *		of the lease slot they pass.
 */
#ifndef DELIVER_FIFO_H
#define DELIVER_FIFO_H

extern void deliver_fifo_init(void);
extern uint32 fifo_key_hash(Datum key);
extern bool fifo_key_take(int32 idx);
extern void fifo_key_hold(int32 idx);
extern int32 fifo_key_release(int32 idx);
extern void fifo_key_forget(int32 idx);
extern void fifo_key_unchain(int32 idx);

#endif							/* DELIVER_FIFO_H */
