/*
 * cmd_common.c - what every subcommand shares: printing error records in the documented text
 * and JSON forms, and the status-to-exit-code rule.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tools/cmd.h"

void cmd_print_error(const char *prog, const ir_error *err)
{
    if (err->where[0])
        fprintf(stderr, "%s: %s at %s: %s\n", prog, ir_status_name(err->status), err->where,
                err->why);
    else
        fprintf(stderr, "%s: %s: %s\n", prog, ir_status_name(err->status), err->why);
}

/* JSON string body with the escapes JSON requires. */
static void put_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

void cmd_print_error_json(const ir_error *err)
{
    printf("{\"status\": \"%s\", \"where\": ", ir_status_name(err->status));
    put_json_string(stdout, err->where);
    printf(", \"why\": ");
    put_json_string(stdout, err->why);
    printf("}\n");
}

void cmd_put_json_string(FILE *f, const char *s) { put_json_string(f, s); }

int cmd_exit_for(ir_status s) { return s == IR_OK ? AMK_EXIT_OK : AMK_EXIT_MALFORMED; }

bool cmd_json_int(const void *json_number, int64_t lo, int64_t hi, int64_t *out)
{
    const cJSON *v = json_number;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble != floor(v->valuedouble) ||
        v->valuedouble < (double)lo || v->valuedouble > (double)hi)
        return false;
    *out = (int64_t)v->valuedouble;
    return true;
}

void cmd_error_in_file(ir_error *err, const char *file)
{
    char where[sizeof err->where];
    snprintf(where, sizeof where, "%.120s%s%.120s", file, err->where[0] ? ": " : "", err->where);
    memcpy(err->where, where, sizeof where);
}
