/*
 * replication.h - the replication-protocol stream of deliver listen
 * (replication.c): START_REPLICATION with the deliver output plugin's
 * binary format, its records made into transactions, the positions
 * confirmed to the server.
 */
#ifndef DELIVER_CLI_REPLICATION_H
#define DELIVER_CLI_REPLICATION_H

#include <stdbool.h>

#include "listen.h"

/* Connect for replication and start streaming; false: retry later. */
extern bool start_stream(Listen *L);
/* Stream until stop (true), or until the connection or a handler fails (false). */
extern bool run_stream(Listen *L);
/* End the stream; what was not confirmed comes again from the server. */
extern void stop_stream(Listen *L);
/* Tell the server how far the messages are handled (L->confirmed). */
extern bool send_status(Listen *L, bool reply);

#endif
