/*
 * commands.h - the SQL commands of the deliver client (commands.c): send,
 * receive, ack, stats.  Each takes the command's arguments (argv[0] is its
 * name) and returns the exit status.
 */
#ifndef DELIVER_CLI_COMMANDS_H
#define DELIVER_CLI_COMMANDS_H

extern int	cmd_send(int argc, char **argv);
extern int	cmd_receive(int argc, char **argv);
extern int	cmd_ack(int argc, char **argv);
extern int	cmd_stats(int argc, char **argv);

#endif
