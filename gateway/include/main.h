/*
 * deliverd: startup, signals and shutdown (main.c).
 */
#ifndef DELIVERD_MAIN_H
#define DELIVERD_MAIN_H

#include <stdbool.h>

/* true once SIGTERM or SIGINT came: requests and streams finish up */
bool		shutting_down(void);

#endif
