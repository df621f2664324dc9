/*
 * hooks.h
 *		The executor and utility hooks (hooks.c).
 */
#ifndef DELIVER_HOOKS_H
#define DELIVER_HOOKS_H

extern void deliver_hooks_init(void);
extern bool statement_is_top_level(void);

#endif							/* DELIVER_HOOKS_H */
