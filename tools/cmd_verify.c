/*
 * cmd_verify.c - `amk-verify PROGRAM ...` (also `amk verify`) and `amk cert check CERT PROGRAM`.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "tools/cmd.h"
#include "verify/verify.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: amk-verify PROGRAM.json [--target NAME | --target-file F]\n"
            "                  [--format text|json|sarif] [--cert OUT.json] [--witness OUT.json]\n"
            "                  [--timeout-ms N] [--rlimit N] [--queue-order list|topo]\n"
            "                  [--plan amk-loader [--plan-out OUT.json]] [--deadline-s S]\n"
            "       amk-verify --version | --help\n"
            "\n"
            "Proves the program's launch plan well-formed, deadlock-free, race-free, resident on\n"
            "the target and complete (every read written first), or refutes it with a witness.\n"
            "Programs without a launch plan run one queue per sm value (--queue-order list: task\n"
            "list order, AMK's model; topo: one global topological order), each task with a null\n"
            "sm on a worker of its own: that covers every assignment AMK's loader can make.\n"
            "--plan amk-loader replaces any launch plan with the exact one AMK's loader builds\n"
            "(its topological order, its SM assignment, its threads and SMEM) and proves that;\n"
            "--plan-out writes the program with that plan (the certificate's program).\n"
            "Target: the program's own, else --target / --target-file (which override it).\n"
            "--timeout-ms (default 30000) and --rlimit (default 50000000, deterministic) bound\n"
            "each Z3 query; hitting either makes the verdict UNKNOWN.\n"
            "--deadline-s (default 300, 0 for none) bounds the whole run: what is not decided by\n"
            "then is UNKNOWN (exit 3), the rest keeps its verdict. Runs longer than 2 s report\n"
            "progress on stderr.\n"
            "exit: 0 PROVED, 1 REFUTED, 2 MALFORMED or usage, 3 UNKNOWN (never safe).\n");
}

/* Progress lines on stderr, once a run has taken 2 s (short runs stay quiet). */
static void print_progress(void *arg, const char *line)
{
    const double *start = arg;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double t = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9 - *start;
    if (t >= 2.0)
        fprintf(stderr, "amk-verify: [%.0f s] %s\n", t, line);
}

/* text and a newline to path (ir_out: "-" is stdout, devices and links written through). */
static bool write_text(const char *path, const char *text, ir_error *err)
{
    ir_out o;
    if (ir_out_open(&o, path, err) != IR_OK)
        return false;
    if (fputs(text, o.f) < 0 || fputc('\n', o.f) == EOF) {
        ir_fail(err, IR_ERR_IO, path, "write failed");
        ir_out_abort(&o);
        return false;
    }
    return ir_out_commit(&o, err) == IR_OK;
}

static void print_json(const char *file, const verify_result *r, const char *cert_path)
{
    printf("{\"verdict\": \"%s\", \"program\": ", verify_verdict_name(r->verdict));
    cmd_put_json_string(stdout, file);
    printf(", \"program_sha256\": \"%s\", \"z3_version\": \"%s\", \"tool_version\": \"%s\", "
           "\"seconds\": %.6f, \"obligations\": [", r->program_sha256, r->z3_version,
           AMK_TOOL_VERSION, r->seconds);
    for (int i = 0; i < VERIFY_N_OBLIGATIONS; i++) {
        const verify_ob_result *o = &r->ob[i];
        printf("%s{\"name\": \"%s\", \"status\": \"%s\", \"seconds\": %.6f, \"solver_queries\": %lld, "
               "\"solver_conflicts\": %lld, \"detail\": ", i ? ", " : "",
               verify_obligation_name((verify_obligation)i), verify_verdict_name(o->status),
               o->seconds, (long long)o->solver_queries, (long long)o->solver_conflicts);
        cmd_put_json_string(stdout, o->detail);
        printf("}");
    }
    printf("], \"witness_kind\": ");
    if (r->witness_kind[0])
        cmd_put_json_string(stdout, r->witness_kind);
    else
        printf("null");
    printf(", \"witness\": %s, \"certificate\": ", r->witness_json ? r->witness_json : "null");
    if (cert_path && r->certificate_json)
        cmd_put_json_string(stdout, cert_path);
    else
        printf("null");
    printf("}\n");
}

static void print_sarif(const char *file, const verify_result *r)
{
    printf("{\"version\": \"2.1.0\", \"$schema\": \"https://json.schemastore.org/sarif-2.1.0.json\", "
           "\"runs\": [{\"tool\": {\"driver\": {\"name\": \"amk-verify\", \"version\": \"%s\", "
           "\"rules\": [", AMK_TOOL_VERSION);
    for (int i = 0; i < VERIFY_N_OBLIGATIONS; i++)
        printf("%s{\"id\": \"%s\", \"shortDescription\": {\"text\": \"obligation %d: %s\"}}",
               i ? ", " : "", verify_obligation_name((verify_obligation)i), i + 1,
               verify_obligation_name((verify_obligation)i));
    printf("]}}, \"results\": [");
    /* The witness belongs to the first obligation, in order, that refuted (or found malformed):
       the obligations run in order and only the first witness is kept. */
    int owner = -1;
    for (int i = 0; i < VERIFY_N_OBLIGATIONS && owner < 0; i++)
        if (r->ob[i].status == VERIFY_REFUTED || r->ob[i].status == VERIFY_MALFORMED)
            owner = i;
    cJSON *w = r->witness_json ? cJSON_Parse(r->witness_json) : NULL;
    const cJSON *wt = cJSON_GetObjectItemCaseSensitive(w, "task");
    const cJSON *wts = cJSON_GetObjectItemCaseSensitive(w, "tasks");
    bool first = true;
    for (int i = 0; i < VERIFY_N_OBLIGATIONS; i++) {
        const verify_ob_result *o = &r->ob[i];
        if (o->status == VERIFY_PROVED || o->status == VERIFY_SKIPPED)
            continue;
        /* UNKNOWN is an error too: it is never safe to launch */
        printf("%s{\"ruleId\": \"%s\", \"level\": \"error\", \"message\": {\"text\": ",
               first ? "" : ", ", verify_obligation_name((verify_obligation)i));
        char msg[700];
        snprintf(msg, sizeof msg, "%s: %s", verify_verdict_name(o->status), o->detail);
        cmd_put_json_string(stdout, msg);
        printf("}, \"locations\": [{\"physicalLocation\": {\"artifactLocation\": {\"uri\": ");
        cmd_put_json_string(stdout, file);
        printf("}}");
        if (i == owner && (cJSON_IsNumber(wt) || cJSON_IsArray(wts))) {
            /* the task(s) at fault, as logical locations */
            printf(", \"logicalLocations\": [");
            int k = 0;
            if (cJSON_IsNumber(wt))
                printf("{\"name\": \"task %d\", \"kind\": \"object\"}", wt->valueint), k++;
            for (const cJSON *e = cJSON_IsArray(wts) ? wts->child : NULL; e; e = e->next)
                if (cJSON_IsNumber(e))
                    printf("%s{\"name\": \"task %d\", \"kind\": \"object\"}", k++ ? ", " : "",
                           e->valueint);
            printf("]");
        }
        printf("}]");
        if (i == owner)
            printf(", \"properties\": {\"witness_kind\": \"%s\"}", r->witness_kind);
        printf("}");
        first = false;
    }
    cJSON_Delete(w);
    printf("], \"properties\": {\"verdict\": \"%s\", \"program_sha256\": \"%s\"}}]}\n",
           verify_verdict_name(r->verdict), r->program_sha256);
}

/* A few lines a person reads: the witness's kind, the tasks, buffers and page it names, how
 * long the interleaving that reaches it is; the whole object goes to --witness or --format
 * json (it can be megabytes). */
static void print_witness_summary(const verify_result *r, const char *witness_path)
{
    cJSON *w = cJSON_Parse(r->witness_json);
    printf("witness: %s", r->witness_kind);
    const char *keys[] = {"task", "tasks", "label", "labels", "buffers", "buffer", "page", "pos",
                          "element", "finished"};
    for (size_t i = 0; w && i < sizeof keys / sizeof keys[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(w, keys[i]);
        if (!v || cJSON_IsNull(v))
            continue;
        char *t = cJSON_PrintUnformatted(v);
        if (t)
            printf(", %s %.160s", keys[i], t);
        free(t);
    }
    const cJSON *il = cJSON_GetObjectItemCaseSensitive(w, "interleaving");
    const cJSON *run = il ? cJSON_GetObjectItemCaseSensitive(il, "run")
                          : cJSON_GetObjectItemCaseSensitive(w, "prefix");
    if (cJSON_IsArray(run))
        printf(", reached after %d tasks finish", cJSON_GetArraySize(run));
    printf("\n");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(w, "message");
    if (cJSON_IsString(m))
        printf("  %s\n", m->valuestring);
    if (witness_path)
        printf("  full witness (replayable with amk run --replay): %s\n", witness_path);
    else
        printf("  full witness: --witness FILE (replay it with amk run --replay) or --format json\n");
    cJSON_Delete(w);
}

static void print_text(const char *file, const verify_result *r, const char *witness_path)
{
    printf("amk-verify %s  program %s  sha256 %.16s  z3 %s\n", AMK_TOOL_VERSION, file,
           r->program_sha256, r->z3_version);
    for (int i = 0; i < VERIFY_N_OBLIGATIONS; i++) {
        const verify_ob_result *o = &r->ob[i];
        printf("  %d. %-10s %-9s %8.3f s  %3lld Z3 queries  %s\n", i + 1,
               verify_obligation_name((verify_obligation)i), verify_verdict_name(o->status),
               o->seconds, (long long)o->solver_queries, o->detail);
    }
    printf("verdict: %s in %.3f s\n", verify_verdict_name(r->verdict), r->seconds);
    if (r->witness_json)
        print_witness_summary(r, witness_path);
}

int cmd_verify(int argc, char **argv)
{
    const char *file = NULL, *target = NULL, *target_file = NULL, *format = "text";
    const char *cert = NULL, *witness = NULL, *plan = NULL, *plan_out = NULL;
    verify_opts o;
    verify_opts_default(&o);
    o.deadline_s = 300;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double start = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
    o.progress = print_progress;
    o.progress_arg = &start;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return AMK_EXIT_OK;
        } else if (!strcmp(a, "--version")) {
            char z3[64];
            verify_z3_version(z3);
            printf("amk-verify %s (IR %s, Z3 %s)\n", AMK_TOOL_VERSION, AMK_IR_VERSION, z3);
            return AMK_EXIT_OK;
        } else if (!strcmp(a, "--target") && has) {
            target = argv[++i];
        } else if (!strcmp(a, "--target-file") && has) {
            target_file = argv[++i];
        } else if (!strcmp(a, "--format") && has) {
            format = argv[++i];
        } else if (!strcmp(a, "--json")) {
            format = "json";
        } else if (!strcmp(a, "--cert") && has) {
            cert = argv[++i];
        } else if (!strcmp(a, "--witness") && has) {
            witness = argv[++i];
        } else if (!strcmp(a, "--timeout-ms") && has) {
            char *end;
            long long v = strtoll(argv[++i], &end, 10);
            if (*end || v < 1 || v > 3600000) {
                fprintf(stderr, "amk-verify: --timeout-ms must be an integer in [1, 3600000]\n");
                return AMK_EXIT_MALFORMED;
            }
            o.timeout_ms = v;
        } else if (!strcmp(a, "--rlimit") && has) {
            char *end;
            long long v = strtoll(argv[++i], &end, 10);
            if (*end || v < 1 || v > 4000000000LL) {
                fprintf(stderr, "amk-verify: --rlimit must be an integer in [1, 4000000000]\n");
                return AMK_EXIT_MALFORMED;
            }
            o.rlimit = v;
        } else if (!strcmp(a, "--deadline-s") && has) {
            char *end;
            double v = strtod(argv[++i], &end);
            if (*end || !(v >= 0 && v <= 1e6)) {
                fprintf(stderr, "amk-verify: --deadline-s must be a number of seconds in [0, 1e6]\n");
                return AMK_EXIT_MALFORMED;
            }
            o.deadline_s = v;
        } else if (!strcmp(a, "--plan") && has) {
            plan = argv[++i];
            if (strcmp(plan, "amk-loader")) {
                fprintf(stderr, "amk-verify: --plan must be amk-loader\n");
                return AMK_EXIT_MALFORMED;
            }
        } else if (!strcmp(a, "--plan-out") && has) {
            plan_out = argv[++i];
        } else if (!strcmp(a, "--queue-order") && has) {
            const char *v = argv[++i];
            if (!strcmp(v, "list"))
                o.queue_order = IR_ORDER_LIST;
            else if (!strcmp(v, "topo"))
                o.queue_order = IR_ORDER_TOPO;
            else {
                fprintf(stderr, "amk-verify: --queue-order must be list or topo\n");
                return AMK_EXIT_MALFORMED;
            }
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "amk-verify: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return AMK_EXIT_MALFORMED;
        } else if (!file) {
            file = a;
        } else {
            fprintf(stderr, "amk-verify: more than one PROGRAM given\n");
            return AMK_EXIT_MALFORMED;
        }
    }
    if (plan_out && !plan) {
        fprintf(stderr, "amk-verify: --plan-out needs --plan amk-loader\n");
        return AMK_EXIT_MALFORMED;
    }
    if (!file || (target && target_file) ||
        (strcmp(format, "text") && strcmp(format, "json") && strcmp(format, "sarif"))) {
        fprintf(stderr, "amk-verify: %s\n", !file ? "PROGRAM is required"
                : target && target_file ? "give --target or --target-file, not both"
                : "--format must be text, json or sarif");
        usage(stderr);
        return AMK_EXIT_MALFORMED;
    }
    bool json = strcmp(format, "text") != 0;
    ir_error err = {0};
    ir_target tf;
    if (target) {
        o.target = ir_target_builtin(target);
        if (!o.target) {
            ir_fail(&err, IR_ERR_MALFORMED, "--target", "unknown target '%s' (built in: h100, "
                    "h200, a100, b200, rtx5090, l4, l40s, a10g, t4)", target);
            goto fail;
        }
    } else if (target_file) {
        if (ir_target_read_file(target_file, &tf, &err) != IR_OK)
            goto fail;
        o.target = &tf;
    }
    ir_program *p;
    if (ir_read_file(file, NULL, &p, &err) != IR_OK)
        goto fail;
    if (plan) {
        const ir_target *pt = o.target ? o.target : p->has_target ? &p->target : NULL;
        if (!pt) {
            ir_fail(&err, IR_ERR_MALFORMED, "target", "--plan amk-loader needs a target: the "
                    "program has none and no --target was given");
        } else if (ir_amk_loader_plan(p, pt, &err) == IR_OK && plan_out) {
            ir_write_file(p, plan_out, &err);
        }
        if (err.status != IR_OK) {
            ir_program_free(p);
            goto fail;
        }
    }
    verify_result r;
    if (verify_program(p, &o, &r, &err) != IR_OK) {
        ir_program_free(p);
        goto fail;
    }
    ir_program_free(p);
    if (cert && r.certificate_json && !write_text(cert, r.certificate_json, &err))
        cmd_print_error("amk-verify", &err);
    if (witness && r.witness_json && !write_text(witness, r.witness_json, &err))
        cmd_print_error("amk-verify", &err);
    if (!strcmp(format, "json"))
        print_json(file, &r, cert);
    else if (!strcmp(format, "sarif"))
        print_sarif(file, &r);
    else
        print_text(file, &r, witness && r.witness_json ? witness : NULL);
    if (cert && !r.certificate_json)
        fprintf(stderr, "amk-verify: no certificate written: verdict is %s\n",
                verify_verdict_name(r.verdict));
    int code = (int)r.verdict;
    verify_result_free(&r);
    verify_release_memory();
    return code;
fail:
    if (json)
        cmd_print_error_json(&err);
    cmd_print_error("amk-verify", &err);
    return AMK_EXIT_MALFORMED;
}

static void cert_usage(FILE *f)
{
    fprintf(f, "usage: amk cert check CERT.json PROGRAM.json [--json]\n"
               "Re-checks a PROVED certificate against a program without Z3: the program hash, the\n"
               "recorded obligations, the finish order (replayed against every wait and queue) and\n"
               "the occupancy evidence. exit: 0 valid, 1 invalid, 2 unreadable input or usage.\n");
}

int cmd_cert(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            cert_usage(stdout);
            return AMK_EXIT_OK;
        }
    bool json = argc == 5 && !strcmp(argv[4], "--json");
    if ((argc != 4 && !json) || strcmp(argv[1], "check")) {
        cert_usage(stderr);
        return AMK_EXIT_MALFORMED;
    }
    ir_error err = {0};
    size_t len;
    char *text = NULL;
    ir_program *p = NULL;
    if (ir_read_text_file(argv[2], IR_MAX_FILE_BYTES, &text, &len, &err) != IR_OK ||
        ir_read_file(argv[3], NULL, &p, &err) != IR_OK) {
        free(text);
        if (json)
            cmd_print_error_json(&err);
        cmd_print_error("amk cert check", &err);
        return AMK_EXIT_MALFORMED;
    }
    ir_status s = verify_cert_check(text, len, p, &err);
    free(text);
    ir_program_free(p);
    if (s != IR_OK)
        cmd_error_in_file(&err, argv[2]);     /* the certificate file, then the field */
    if (json) {
        if (s == IR_OK)
            printf("{\"status\": \"VALID\"}\n");
        else
            cmd_print_error_json(&err);
    }
    if (s != IR_OK) {
        cmd_print_error("amk cert check", &err);
        return s == IR_ERR_MALFORMED ? AMK_EXIT_REFUTED : AMK_EXIT_MALFORMED;
    }
    if (!json)
        printf("certificate %s: VALID for %s\n", argv[2], argv[3]);
    return AMK_EXIT_OK;
}
