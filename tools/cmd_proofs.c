/*
 * cmd_proofs.c - `amk proofs`: the proof regression suite. Reads the corpus recipe
 * (proofs/corpus.txt), regenerates every program it names (lowered presets, their mutants),
 * runs the amk-verify binary on each with --format json, and compares the verdict and witness
 * kind with the recipe's expectation. Prints a table and a summary, writes a JUnit report.
 *
 * Recipe lines (blank lines and '#' comments skipped), fields separated by spaces:
 *   NAME lower MODEL CONFIG          EXPECT WITNESS   CONFIG: "default" or a ScheduleConfig file
 *   NAME mutate BASE FAMILY SEED     EXPECT WITNESS   BASE: the NAME of an earlier case
 *   NAME files GLOB                  EXPECT WITNESS   one case per file, named NAME/file
 *   NAME file FILE                   EXPECT WITNESS   FILE (gzip or not) copied to DIR/NAME.json,
 *                                                     so that later lines can mutate it
 * Fields after WITNESS that start with "--" are passed to amk-verify, an "=" splitting an option
 * from its value ("--queue-order=topo").
 * EXPECT is PROVED, REFUTED, MALFORMED or UNKNOWN (the amk-verify exit code), or NOSITE for a
 * mutation the base program offers no site for; WITNESS is the witness kind, "-" for none or
 * "*" for any.
 */
#include <errno.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "lower/lower.h"
#include "proofs/proofs.h"
#include "tools/cmd.h"

#define PROOFS_MAX_OUT ((size_t)64 << 20)   /* largest amk-verify report read back */

/* One checked program and what happened to it. */
typedef struct {
    char name[160];
    char expect[64];          /* "REFUTED/deadlock" */
    char got[64];
    double seconds;
    bool pass;
    char why[400];            /* on failure */
} proofs_case;

typedef struct {
    const char *dir, *verify_bin;
    int64_t timeout_ms;
    const char *const *opts;  /* the current line's extra amk-verify options */
    int n_opts;
    proofs_case *cases;
    int n, cap;
} proofs_run;

static proofs_case *add_case(proofs_run *r, const char *name, const char *verdict,
                             const char *witness)
{
    if (r->n == r->cap) {
        int cap = r->cap ? r->cap * 2 : 64;
        proofs_case *c = realloc(r->cases, (size_t)cap * sizeof *c);
        if (!c)
            return NULL;
        r->cases = c;
        r->cap = cap;
    }
    proofs_case *c = &r->cases[r->n++];
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name);
    snprintf(c->expect, sizeof c->expect, "%s/%s", verdict, witness);
    return c;
}

/* Mark c failed; got NULL keeps what c->got already says. */
static void fail_case(proofs_case *c, const char *got, const char *why)
{
    c->pass = false;
    if (got)
        snprintf(c->got, sizeof c->got, "%s", got);
    snprintf(c->why, sizeof c->why, "%s", why);
}

/* Run `bin file --format json --timeout-ms N`, its stdout into *out (caller frees), exit code
 * into *code (-1 when it did not exit normally). False when it could not be started. */
static bool run_verify(const proofs_run *r, const char *file, char **out, int *code)
{
    int fd[2];
    if (pipe(fd))
        return false;
    char tmo[32];
    snprintf(tmo, sizeof tmo, "%lld", (long long)r->timeout_ms);
    pid_t pid = fork();
    if (pid < 0) {
        close(fd[0]);
        close(fd[1]);
        return false;
    }
    if (pid == 0) {
        dup2(fd[1], STDOUT_FILENO);
        close(fd[0]);
        close(fd[1]);
        if (!freopen("/dev/null", "w", stderr))
            _exit(127);
        char *argv[6 + 2 * PROOFS_MAX_FIELDS + 1];
        int a = 0;
        argv[a++] = (char *)r->verify_bin;
        argv[a++] = (char *)file;
        argv[a++] = "--format";
        argv[a++] = "json";
        argv[a++] = "--timeout-ms";
        argv[a++] = tmo;
        for (int i = 0; i < r->n_opts; i++) {
            char *opt = strdup(r->opts[i]);   /* in the child only; it execs or exits */
            if (!opt)
                _exit(127);
            char *eq = strchr(opt, '=');
            if (eq)
                *eq = 0;
            argv[a++] = opt;
            if (eq)
                argv[a++] = eq + 1;
        }
        argv[a] = NULL;
        execv(r->verify_bin, argv);
        _exit(127);
    }
    close(fd[1]);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (buf && n + 1 >= cap) {
            char *nb = cap < PROOFS_MAX_OUT ? realloc(buf, cap * 2) : NULL;
            if (!nb) {
                free(buf);
                buf = NULL;
            } else {
                buf = nb;
                cap *= 2;
            }
        }
        char sink[4096];
        ssize_t k = buf ? read(fd[0], buf + n, cap - n - 1) : read(fd[0], sink, sizeof sink);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        if (buf)
            n += (size_t)k;
    }
    close(fd[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    *code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (buf)
        buf[n] = 0;
    *out = buf;
    return true;
}

static const char *verdict_of_code(int code)
{
    static const char *names[] = {"PROVED", "REFUTED", "MALFORMED", "UNKNOWN"};
    return code >= 0 && code <= 3 ? names[code] : "CRASHED";
}

/* Verify one generated or given program and record the comparison. */
static void check_program(proofs_run *r, proofs_case *c, const char *file, const char *verdict,
                          const char *witness)
{
    char *out = NULL;
    int code;
    double t0 = base_now_s();
    if (!run_verify(r, file, &out, &code)) {
        fail_case(c, "NOT-RUN", "cannot start amk-verify");
        return;
    }
    c->seconds = base_now_s() - t0;
    const char *got_verdict = verdict_of_code(code);
    char got_witness[40] = "-";
    cJSON *j = out ? cJSON_Parse(out) : NULL;
    free(out);
    const cJSON *jv = cJSON_GetObjectItemCaseSensitive(j, "verdict");
    const cJSON *jw = cJSON_GetObjectItemCaseSensitive(j, "witness_kind");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(j, "status");
    if (cJSON_IsString(jw))
        snprintf(got_witness, sizeof got_witness, "%s", jw->valuestring);
    snprintf(c->got, sizeof c->got, "%s/%s", got_verdict, got_witness);
    c->pass = true;
    if (!j || (!cJSON_IsString(jv) && !(code == AMK_EXIT_MALFORMED && cJSON_IsString(js))))
        fail_case(c, NULL, "amk-verify printed no JSON verdict or error record");
    else if (cJSON_IsString(jv) && strcmp(jv->valuestring, got_verdict))
        fail_case(c, NULL, "the JSON verdict and the exit code disagree");
    else if (strcmp(verdict, got_verdict))
        fail_case(c, NULL, "verdict differs");
    else if (strcmp(witness, "*") && strcmp(witness, got_witness))
        fail_case(c, NULL, "witness kind differs");
    cJSON_Delete(j);
}

/* Lower MODEL under CONFIG for h100 into path. */
static ir_status make_lowered(const char *model, const char *config, const char *path,
                              ir_error *err)
{
    lower_model m;
    ir_config cfg;
    ir_status s = lower_model_load(model, &m, err);
    if (s != IR_OK)
        return s;
    if (!strcmp(config, "default"))
        ir_config_default(&cfg);
    else if ((s = lower_config_read_file(config, &cfg, err)) != IR_OK)
        return s;
    lower_opts o;
    lower_opts_default(&o);
    ir_program *p = NULL;
    s = lower_program(&m, &cfg, ir_target_builtin("h100"), &o, &p, err);
    ir_config_free(&cfg);
    if (s == IR_OK)
        s = ir_write_file(p, path, err);
    ir_program_free(p);
    return s;
}

/* The program in src (gzip or not) copied byte for byte, decompressed, to path. */
static ir_status copy_program(const char *src, const char *path, ir_error *err)
{
    char *text;
    size_t n;
    ir_status s = ir_read_text_file(src, IR_MAX_FILE_BYTES, &text, &n, err);
    if (s != IR_OK)
        return s;
    s = ir_out_write(path, text, n, err);
    free(text);
    return s;
}

/* Mutate the program in base into path. */
static ir_status make_mutant(const char *base, const char *family, uint64_t seed, const char *path,
                             ir_error *err)
{
    ir_program *p = NULL;
    ir_status s = ir_read_file(base, NULL, &p, err);
    if (s == IR_OK)
        s = proofs_mutate(p, family, seed, err);
    if (s == IR_OK)
        s = ir_write_file(p, path, err);
    ir_program_free(p);
    return s;
}

/* Every program of a `files` recipe: verified one by one under NAME/FILE. */
static bool run_files(proofs_run *r, const proofs_recipe *rc, ir_error *err)
{
    glob_t g;
    if (glob(rc->args[0], 0, NULL, &g) != 0 || g.gl_pathc == 0) {
        ir_fail(err, IR_ERR_MALFORMED, "corpus", "line %d: no file matches %s", rc->line,
                rc->args[0]);
        return false;
    }
    for (size_t i = 0; i < g.gl_pathc; i++) {
        const char *base = strrchr(g.gl_pathv[i], '/');
        char name[160];
        snprintf(name, sizeof name, "%s/%s", rc->name, base ? base + 1 : g.gl_pathv[i]);
        proofs_case *c = add_case(r, name, rc->verdict, rc->witness);
        if (!c) {
            globfree(&g);
            ir_fail(err, IR_ERR_NOMEM, "", "out of memory");
            return false;
        }
        check_program(r, c, g.gl_pathv[i], rc->verdict, rc->witness);
    }
    globfree(&g);
    return true;
}

/* One recipe: generate, verify, compare. Returns false when it cannot run at all (err set). */
static bool run_recipe(proofs_run *r, const proofs_recipe *rc, ir_error *err)
{
    r->opts = rc->opts;
    r->n_opts = rc->n_opts;
    if (rc->kind == PROOFS_FILES)
        return run_files(r, rc, err);
    proofs_case *c = add_case(r, rc->name, rc->verdict, rc->witness);
    if (!c) {
        ir_fail(err, IR_ERR_NOMEM, "", "out of memory");
        return false;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.json", r->dir, rc->name);
    ir_error gen = {0};
    ir_status s;
    double t0 = base_now_s();
    if (rc->kind == PROOFS_LOWER) {
        s = make_lowered(rc->args[0], rc->args[1], path, &gen);
    } else if (rc->kind == PROOFS_FILE) {
        s = copy_program(rc->args[0], path, &gen);
    } else {
        char base[1024];
        snprintf(base, sizeof base, "%s/%s.json", r->dir, rc->args[0]);
        s = make_mutant(base, rc->args[1], rc->seed, path, &gen);
        if (!strcmp(rc->verdict, "NOSITE")) {
            c->seconds = base_now_s() - t0;
            c->pass = s == IR_ERR_UNSUPPORTED;
            snprintf(c->got, sizeof c->got, "%s",
                     s == IR_ERR_UNSUPPORTED ? "NOSITE/-" : s == IR_OK ? "MUTATED" : "ERROR");
            if (!c->pass)
                snprintf(c->why, sizeof c->why, "expected no site: %.300s",
                         s == IR_OK ? "a mutant was made" : gen.why);
            return true;
        }
    }
    if (s != IR_OK) {
        c->seconds = base_now_s() - t0;
        char why[400];
        snprintf(why, sizeof why, "generation failed: %s at %.80s: %.200s",
                 ir_status_name(gen.status), gen.where, gen.why);
        fail_case(c, "NOT-GENERATED", why);
        return true;
    }
    check_program(r, c, path, rc->verdict, rc->witness);
    c->seconds = base_now_s() - t0;
    return true;
}

static void put_xml(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

static bool write_junit(const proofs_run *r, const char *path, double total)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return false;
    int failed = 0;
    for (int i = 0; i < r->n; i++)
        failed += !r->cases[i].pass;
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n"
               "  <testsuite name=\"proofs\" tests=\"%d\" failures=\"%d\" errors=\"0\" time=\"%.3f\">\n",
            r->n, failed, total);
    for (int i = 0; i < r->n; i++) {
        const proofs_case *c = &r->cases[i];
        fprintf(f, "    <testcase classname=\"proofs\" name=\"");
        put_xml(f, c->name);
        fprintf(f, "\" time=\"%.3f\"", c->seconds);
        if (c->pass) {
            fprintf(f, "/>\n");
            continue;
        }
        fprintf(f, ">\n      <failure message=\"");
        put_xml(f, c->why);
        fprintf(f, "\">expected ");
        put_xml(f, c->expect);
        fprintf(f, ", got ");
        put_xml(f, c->got);
        fprintf(f, "</failure>\n    </testcase>\n");
    }
    fprintf(f, "  </testsuite>\n</testsuites>\n");
    return fclose(f) == 0;
}

int cmd_proofs(int argc, char **argv)
{
    const char *corpus = "proofs/corpus.txt", *junit = NULL;
    proofs_run r = {.dir = "build/proofs", .verify_bin = "build/amk-verify", .timeout_ms = 30000};
    const base_option opts[] = {
        BASE_STR("--corpus", &corpus, "FILE", "the corpus recipe", .show_default = true),
        BASE_STR("--dir", &r.dir, "DIR", "where the programs are written",
         .show_default = true),
        BASE_STR("--verify", &r.verify_bin, "AMK_VERIFY", "the amk-verify binary to run",
         .show_default = true),
        BASE_STR("--junit", &junit, "FILE", "JUnit XML report (default DIR/junit.xml)"),
        BASE_I64("--timeout-ms", &r.timeout_ms, "N", 1, 3600000,
                 "amk-verify --timeout-ms per program", .show_default = true),
    };
    const base_cmdline cl = {
        .prog = "amk proofs",
        .synopsis = "usage: amk proofs [--corpus FILE] [--dir DIR] [--verify AMK_VERIFY] "
                    "[--junit FILE]\n                  [--timeout-ms N]\n",
        .about = "Regenerates the proof regression corpus into DIR, runs AMK_VERIFY --format json\n"
                 "on every program and compares verdicts and witness kinds with the expectations.\n"
                 "Prints one row per program and 'N passed, M failed'; writes JUnit XML.\n",
        .opts = opts, .n_opts = 5,
        .epilog = "exit: 0 all as expected, 1 any difference, 2 bad corpus or usage.\n",
    };
    int rc = cmd_parse_options(&cl, argc, argv);
    if (rc != CMD_CONTINUE)
        return rc;
    char junit_default[1024];
    snprintf(junit_default, sizeof junit_default, "%s/junit.xml", r.dir);
    if (!junit)
        junit = junit_default;
    if (mkdir(r.dir, 0777) && errno != EEXIST) {
        fprintf(stderr, "amk proofs: cannot create %s: %s\n", r.dir, strerror(errno));
        return AMK_EXIT_MALFORMED;
    }
    if (access(r.verify_bin, X_OK)) {
        fprintf(stderr, "amk proofs: %s is not an executable amk-verify\n", r.verify_bin);
        return AMK_EXIT_MALFORMED;
    }
    /* the whole corpus first: a device, FIFO or directory is refused, not read forever */
    char *text = NULL;
    size_t text_len = 0;
    ir_error err = {0};
    if (ir_read_text_file(corpus, IR_MAX_FILE_BYTES, &text, &text_len, &err) != IR_OK) {
        cmd_print_error("amk proofs", &err);
        return AMK_EXIT_MALFORMED;
    }
    proofs_corpus corp;
    ir_status ps = proofs_corpus_parse(text, text_len, &corp, &err);
    free(text);
    if (ps != IR_OK) {   /* every line is checked before anything is generated */
        cmd_error_in_file(&err, corpus);
        cmd_print_error("amk proofs", &err);
        return AMK_EXIT_MALFORMED;
    }
    printf("%-56s %-30s %-30s %8s\n", "program", "expected", "got", "seconds");
    double t0 = base_now_s();
    int printed = 0;
    bool ok = true;
    for (int i = 0; ok && i < corp.n; i++) {
        ok = run_recipe(&r, &corp.recipes[i], &err);
        for (; printed < r.n; printed++) {
            const proofs_case *c = &r.cases[printed];
            printf("%-56s %-30s %-30s %8.2f%s%s\n", c->name, c->expect, c->got, c->seconds,
                   c->pass ? "" : "  FAIL: ", c->pass ? "" : c->why);
            fflush(stdout);
        }
    }
    proofs_corpus_free(&corp);
    if (!ok) {
        cmd_print_error("amk proofs", &err);
        free(r.cases);
        return AMK_EXIT_MALFORMED;
    }
    double total = base_now_s() - t0;
    int failed = 0;
    for (int i = 0; i < r.n; i++)
        failed += !r.cases[i].pass;
    if (!write_junit(&r, junit, total))
        fprintf(stderr, "amk proofs: cannot write %s\n", junit);
    printf("proofs: %.1f s, JUnit report %s\n", total, junit);
    printf("%d passed, %d failed\n", r.n - failed, failed);
    free(r.cases);
    return failed ? AMK_EXIT_REFUTED : AMK_EXIT_OK;
}
