/*
 * handler.h - what deliver listen does with the messages of complete
 * transactions (handler.c): print them, pass them to --exec, or apply them
 * with --apply; and the --report at exit.
 */
#ifndef DELIVER_CLI_HANDLER_H
#define DELIVER_CLI_HANDLER_H

#include <stdbool.h>

#include "listen.h"

/*
 * Handle the messages of the complete transactions in L->buf.  True when
 * they were handled; then their LSN is confirmed.
 */
extern bool handle_batch(Listen *L);
/* --report: messages per second and commit-to-consumer latency, on stderr */
extern void print_report(Listen *L);

#endif
