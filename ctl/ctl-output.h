/* ctl-output.h: how entropyctl prints, the way systemctl does: aligned tables with a legend, a
 * pager and colour only on a terminal, JSON for scripts, times relative to now. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>

#include "ctl.h"

OutputMode output_mode(const CtlSettings *s);
/* Pipes stdout through $ENTROPY_PAGER, $PAGER or less when it is a terminal and --no-pager was
 * not given; pager_close() waits for it. */
void pager_open(const CtlSettings *s);
void pager_close(void);

/* Colour escapes, or "" when stdout is not a terminal (decided before the pager starts),
 * $NO_COLOR is set or TERM is dumb. */
bool colors_enabled(void);
const char *color_for_state(const char *state);
const char *color_off(void);
const char *color_bold(void);

typedef struct Table Table;
/* Columns from a NULL-terminated list of header names. */
Table *table_new(const char *header, ...);
Table *table_free(Table *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(Table *, table_free);
/* Adds a row of exactly as many cells as columns (copied; NULL prints as "-"). color applies
 * to the given column (-1 none). */
int table_add_row(Table *t, int color_column, const char *color, const char *const *cells);
size_t table_rows(const Table *t);
/* Caps a column's width (longer cells are cut with "…") when printing to a terminal. */
void table_set_max_width(Table *t, size_t column, size_t width);
void table_print(const Table *t, bool header, FILE *f);

/* Prints JSON as asked by --output (one line, or pretty). */
void output_json(json_object *o, OutputMode mode);

/* Field access that tolerates absent members. */
const char *json_str(json_object *o, const char *key);
bool json_has(json_object *o, const char *key);
int64_t json_int(json_object *o, const char *key, int64_t fallback);
double json_num(json_object *o, const char *key, double fallback);
/* "3min ago" for Unix seconds; "-" for 0 or absent. */
char *format_ago(char *buf, size_t size, double unix_seconds);
/* "2024-05-01 12:00:03" local time. */
char *format_when(char *buf, size_t size, double unix_seconds);
