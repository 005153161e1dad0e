/* control-settings-check.h: consistency checks on the control plane's settings, run by main()
 * after loading them and again on reload. */
#pragma once

#include <stddef.h>

#include "control.h"

/* 0 when the settings make sense together; -EINVAL with a message in err otherwise (e.g. a lease
 * longer than the heartbeat timeout would let the control plane reassign a job its worker still
 * runs after the worker is declared OFFLINE... see the checks). */
int control_settings_validate(const ControlSettings *s, char *err, size_t err_size);
