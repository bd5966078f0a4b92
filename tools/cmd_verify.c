/*
 * cmd_verify.c - `amk-verify PROGRAM ...` (also `amk verify`) and `amk cert check CERT PROGRAM`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "tools/cmd.h"
#include "verify/verify.h"

/* Progress lines on stderr, once a run has taken 2 s (short runs stay quiet). */
static void print_progress(void *arg, const char *line)
{
    double t = base_now_s() - *(const double *)arg;
    if (t >= 2.0)
        fprintf(stderr, "amk-verify: [%.0f s] %s\n", t, line);
}

typedef enum { FORMAT_TEXT, FORMAT_JSON, FORMAT_SARIF } verify_format;

typedef struct {
    const char *file, *target, *target_file, *cert, *witness, *plan_out;
    int format, queue_order, plan;   /* plan: -1 none, 0 amk-loader */
    bool json, version;
    int64_t timeout_ms, rlimit;
    double deadline_s;
} verify_args;

static const char *const FORMATS[] = {"text", "json", "sarif", NULL};
static const char *const ORDERS[] = {"list", "topo", NULL};
static const char *const PLANS[] = {"amk-loader", NULL};

static const char VERIFY_ABOUT[] =
    "Proves the program's launch plan well-formed, deadlock-free, race-free, resident on\n"
    "the target and complete (every read written first), or refutes it with a witness.\n"
    "Programs without a launch plan run one queue per sm value (--queue-order list: task\n"
    "list order, AMK's model; topo: one global topological order), each task with a null\n"
    "sm on a worker of its own: that covers every assignment AMK's loader can make.\n"
    "--plan amk-loader replaces any launch plan with the exact one AMK's loader builds\n"
    "(its topological order, its SM assignment, its threads and SMEM) and proves that;\n"
    "--plan-out writes the program with that plan (the certificate's program).\n"
    "Target: the program's own, else --target / --target-file (which override it).\n"
    "--timeout-ms and --rlimit (deterministic) bound each Z3 query; hitting either makes\n"
    "the verdict UNKNOWN. --deadline-s (0 for none) bounds the whole run: what is not\n"
    "decided by then is UNKNOWN (exit 3), the rest keeps its verdict. Runs longer than 2 s\n"
    "report progress on stderr.\n";

/* The command line into a (defaults from verify_opts_default, deadline 300 s). CMD_CONTINUE,
 * or the exit code of --help or a usage error. */
static int parse_args(int argc, char **argv, verify_args *a)
{
    verify_opts d;
    verify_opts_default(&d);
    *a = (verify_args){.format = FORMAT_TEXT, .queue_order = d.queue_order == IR_ORDER_TOPO,
                       .plan = -1, .timeout_ms = d.timeout_ms, .rlimit = d.rlimit,
                       .deadline_s = 300};
    const base_option opts[] = {
        BASE_STR("--target", &a->target, "NAME", "built-in target (h100, h200, a100, ...)"),
        BASE_STR("--target-file", &a->target_file, "F", "target JSON"),
        BASE_CHOICE("--format", &a->format, "F", FORMATS, "text, json or sarif",
                    .show_default = true),
        BASE_FLAG("--json", &a->json, "the same as --format json"),
        BASE_STR("--cert", &a->cert, "OUT.json", "write the certificate of a PROVED program"),
        BASE_STR("--witness", &a->witness, "OUT.json", "write the witness of a refutation"),
        BASE_I64("--timeout-ms", &a->timeout_ms, "N", 1, 3600000, "per Z3 query",
                 .show_default = true),
        BASE_I64("--rlimit", &a->rlimit, "N", 1, 4000000000LL, "Z3 resource limit per query",
                 .show_default = true),
        BASE_CHOICE("--queue-order", &a->queue_order, "O", ORDERS, "list or topo (programs "
                    "without a launch plan)", .show_default = true),
        BASE_CHOICE("--plan", &a->plan, "amk-loader", PLANS, "prove the plan AMK's loader "
                    "builds"),
        BASE_STR("--plan-out", &a->plan_out, "OUT.json", "write the program with that plan"),
        BASE_DOUBLE("--deadline-s", &a->deadline_s, "S", 0, 1e6, "seconds for the whole run",
                    .show_default = true),
        BASE_FLAG("--version", &a->version, "print the versions and exit"),
    };
    const base_cmdline cl = {
        .prog = "amk-verify",
        .synopsis = "usage: amk-verify PROGRAM.json [--target NAME | --target-file F]\n"
                    "                  [--format text|json|sarif] [--cert OUT.json] "
                    "[--witness OUT.json]\n"
                    "                  [--timeout-ms N] [--rlimit N] [--queue-order list|topo]\n"
                    "                  [--plan amk-loader [--plan-out OUT.json]] "
                    "[--deadline-s S]\n"
                    "       amk-verify --version | --help\n",
        .about = VERIFY_ABOUT, .opts = opts, .n_opts = sizeof opts / sizeof opts[0],
        .pos_name = "PROGRAM", .min_pos = 0, .max_pos = 1, .pos = &a->file,
        .epilog = "exit: 0 PROVED, 1 REFUTED, 2 MALFORMED or usage, 3 UNKNOWN (never safe).\n",
    };
    int rc = cmd_parse_options(&cl, argc, argv);
    if (rc != CMD_CONTINUE || a->version)
        return rc;
    if (a->json)
        a->format = FORMAT_JSON;
    if (a->plan_out && a->plan < 0)
        return cmd_usage_error(&cl, "--plan-out needs --plan amk-loader");
    if (!a->file)
        return cmd_usage_error(&cl, "PROGRAM is required");
    if (a->target && a->target_file)
        return cmd_usage_error(&cl, "give --target or --target-file, not both");
    return CMD_CONTINUE;
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

/* The head of amk-verify's SARIF log up to the opening of its results array: the tool and one
 * rule per obligation, plus "input" for a program that could not be read at all. */
static void print_sarif_head(void)
{
    printf("{\"version\": \"2.1.0\", \"$schema\": \"https://json.schemastore.org/sarif-2.1.0.json\", "
           "\"runs\": [{\"tool\": {\"driver\": {\"name\": \"amk-verify\", \"version\": \"%s\", "
           "\"rules\": [", AMK_TOOL_VERSION);
    for (int i = 0; i < VERIFY_N_OBLIGATIONS; i++)
        printf("{\"id\": \"%s\", \"shortDescription\": {\"text\": \"obligation %d: %s\"}}, ",
               verify_obligation_name((verify_obligation)i), i + 1,
               verify_obligation_name((verify_obligation)i));
    printf("{\"id\": \"input\", \"shortDescription\": {\"text\": \"the program file is "
           "readable and parses as an IR program\"}}]}}, \"results\": [");
}

/* A program that could not be read, parsed or prepared is a SARIF log too (one error result on
 * the file), so a consumer of --format sarif never meets another kind of document. */
static void print_sarif_error(const char *file, const ir_error *err)
{
    print_sarif_head();
    char msg[900];
    snprintf(msg, sizeof msg, "%s%s%s: %s", ir_status_name(err->status), err->where[0] ? " at " : "",
             err->where, err->why);
    printf("{\"ruleId\": \"input\", \"level\": \"error\", \"message\": {\"text\": ");
    cmd_put_json_string(stdout, msg);
    printf("}, \"locations\": [{\"physicalLocation\": {\"artifactLocation\": {\"uri\": ");
    cmd_put_json_string(stdout, file);
    printf("}}}]}], \"properties\": {\"verdict\": \"MALFORMED\", \"status\": \"%s\"}}]}\n",
           ir_status_name(err->status));
}

static void print_sarif(const char *file, const verify_result *r)
{
    print_sarif_head();
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

/* The target --target or --target-file names (into *tf), NULL when neither is given. */
static ir_status option_target(const verify_args *a, ir_target *tf, const ir_target **t,
                               ir_error *err)
{
    *t = NULL;
    if (a->target && !(*t = ir_target_builtin(a->target)))
        return ir_fail(err, IR_ERR_MALFORMED, "--target", "unknown target '%s' (built in: h100, "
                       "h200, a100, b200, rtx5090, l4, l40s, a10g, t4)", a->target);
    if (a->target_file) {
        ir_status s = ir_target_read_file(a->target_file, tf, err);
        if (s != IR_OK)
            return s;
        *t = tf;
    }
    return IR_OK;
}

/* --plan amk-loader: replace p's plan with AMK's loader's (and write it to --plan-out). */
static ir_status apply_plan(const verify_args *a, ir_program *p, const ir_target *t,
                            ir_error *err)
{
    const ir_target *pt = t ? t : p->has_target ? &p->target : NULL;
    if (!pt)
        return ir_fail(err, IR_ERR_MALFORMED, "target", "--plan amk-loader needs a target: the "
                       "program has none and no --target was given");
    ir_status s = ir_amk_loader_plan(p, pt, err);
    if (s == IR_OK && a->plan_out)
        s = ir_write_file(p, a->plan_out, err);
    return s;
}

/* Write --cert and --witness, print the verdict in the asked format; the exit code. */
static int report(const verify_args *a, verify_result *r)
{
    ir_error err = {0};
    if (a->cert && r->certificate_json && !write_text(a->cert, r->certificate_json, &err))
        cmd_print_error("amk-verify", &err);
    if (a->witness && r->witness_json && !write_text(a->witness, r->witness_json, &err))
        cmd_print_error("amk-verify", &err);
    if (a->format == FORMAT_JSON)
        print_json(a->file, r, a->cert);
    else if (a->format == FORMAT_SARIF)
        print_sarif(a->file, r);
    else
        print_text(a->file, r, a->witness && r->witness_json ? a->witness : NULL);
    if (a->cert && !r->certificate_json)
        fprintf(stderr, "amk-verify: no certificate written: verdict is %s\n",
                verify_verdict_name(r->verdict));
    return (int)r->verdict;
}

int cmd_verify(int argc, char **argv)
{
    verify_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc != CMD_CONTINUE)
        return rc;
    if (a.version) {
        char z3[64];
        verify_z3_version(z3);
        printf("amk-verify %s (IR %s, Z3 %s)\n", AMK_TOOL_VERSION, AMK_IR_VERSION, z3);
        return AMK_EXIT_OK;
    }
    verify_opts o;
    verify_opts_default(&o);
    o.timeout_ms = a.timeout_ms;
    o.rlimit = a.rlimit;
    o.deadline_s = a.deadline_s;
    o.queue_order = a.queue_order ? IR_ORDER_TOPO : IR_ORDER_LIST;
    double start = base_now_s();
    o.progress = print_progress;
    o.progress_arg = &start;
    ir_error err = {0};
    ir_target tf;
    ir_program *p = NULL;
    verify_result r;
    ir_status s = option_target(&a, &tf, &o.target, &err);
    if (s == IR_OK)
        s = ir_read_file(a.file, NULL, &p, &err);
    if (s == IR_OK && a.plan >= 0)
        s = apply_plan(&a, p, o.target, &err);
    if (s == IR_OK)
        s = verify_program(p, &o, &r, &err);
    ir_program_free(p);
    if (s != IR_OK) {
        if (a.format == FORMAT_SARIF)
            print_sarif_error(a.file, &err);
        else if (a.format == FORMAT_JSON)
            cmd_print_error_json(&err);
        cmd_print_error("amk-verify", &err);
        return AMK_EXIT_MALFORMED;
    }
    int code = report(&a, &r);
    verify_result_free(&r);
    verify_release_memory();
    return code;
}

int cmd_cert(int argc, char **argv)
{
    const char *pos[3];
    bool json = false;
    const base_option opts[] = {BASE_FLAG("--json", &json, "the outcome as JSON on stdout")};
    const base_cmdline cl = {
        .prog = "amk cert check",
        .synopsis = "usage: amk cert check CERT.json PROGRAM.json [--json]\n",
        .about = "Re-checks a PROVED certificate against a program without Z3: the program hash, "
                 "the\nrecorded obligations, the finish order (replayed against every wait and "
                 "queue) and\nthe occupancy evidence.\n",
        .opts = opts, .n_opts = 1, .pos_name = "check CERT.json PROGRAM.json", .min_pos = 3,
        .max_pos = 3, .pos = pos,
        .epilog = "exit: 0 valid, 1 invalid, 2 unreadable input or usage.\n",
    };
    int rc = cmd_parse_options(&cl, argc, argv);
    if (rc != CMD_CONTINUE)
        return rc;
    if (strcmp(pos[0], "check"))
        return cmd_usage_error(&cl, "unknown subcommand '%s'", pos[0]);
    const char *cert = pos[1], *program = pos[2];
    ir_error err = {0};
    size_t len;
    char *text = NULL;
    ir_program *p = NULL;
    if (ir_read_text_file(cert, IR_MAX_FILE_BYTES, &text, &len, &err) != IR_OK ||
        ir_read_file(program, NULL, &p, &err) != IR_OK) {
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
        cmd_error_in_file(&err, cert);     /* the certificate file, then the field */
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
        printf("certificate %s: VALID for %s\n", cert, program);
    return AMK_EXIT_OK;
}
