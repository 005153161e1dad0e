/* rlimit-util.h: the soft limit on open descriptors, raised for a daemon that holds many of them
 * and given back to the programs it starts.
 *
 * A service starts with systemd's default of 1024 (soft) and 524288 (hard): the soft limit is
 * kept low for programs that still use select(), which cannot watch a descriptor past 1023. A
 * daemon that needs more raises its own soft limit to the hard one, and starts other programs
 * with the soft limit it was given, as systemd itself does. */
#pragma once

#include <sys/types.h>

/* Raises the soft RLIMIT_NOFILE to the hard one, remembering the soft limit the process started
 * with. Returns the new soft limit, or -errno (the limit is then unchanged, and still given back
 * as it is). */
int rlimit_nofile_bump(void);
/* Gives process pid the soft limit this process started with: another process of ours, started
 * without a fork of our own (posix_spawn()), before it starts anything; or 0, this process, in a
 * child between fork() and execve() (only system calls). Returns 0 or -errno. */
int rlimit_nofile_give_back(pid_t pid);
