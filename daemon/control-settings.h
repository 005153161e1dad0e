/* control-settings.h: entropy-control's options: the one table from which its flags, ENTROPY_*
 * environment variables, config-file keys ([control] in /etc/entropy/control.conf) and --help
 * come. */
#pragma once

#include "conf.h"
#include "control.h"

/* Fixed paths, as the units, the packages and the docs name them (not $(sysconfdir)). */
#define CONTROL_DEFAULT_CONFIG   "/etc/entropy/control.conf"
#define CONTROL_DEFAULT_DATABASE "/var/lib/entropy/control.db"

extern const ConfProgram control_program;

/* Loads settings (zeroed by the caller) with flag > environment > file > default. Returns 0 to
 * run, 1 when --help or --version was printed, negative on error (logged). */
int control_settings_load(ControlSettings *s, int argc, char **argv);
/* Checks the settings make sense together; logs what is wrong and returns -EINVAL. */
int control_settings_check(const ControlSettings *s);
void control_settings_free(ControlSettings *s);
