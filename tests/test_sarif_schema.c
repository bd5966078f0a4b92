/*
 * test_sarif_schema.c - every SARIF log the project writes validates against the official OASIS
 * SARIF 2.1.0 JSON schema (vendored in tests/data/sarif/ with its license): amk-verify on a
 * PROVED, a REFUTED (deadlock, race, residency, bounds), a MALFORMED, an unparsable, a missing
 * and an UNKNOWN (deadline) input, and lint-kernel on every good and bad artifact. The schema
 * check runs tests/sarif_validate.py (python3-jsonschema, installed by make deps).
 */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/capture.h"

#define SCHEMA "tests/data/sarif/sarif-schema-2.1.0.json"

static const char *bin(const char *env, const char *fallback)
{
    const char *b = getenv(env);
    return b && *b ? b : fallback;
}

/* Run a shell command; its exit status (-1 when it did not exit normally). */
#define sh run_shell

static char dir[64];

static void make_dir(void)
{
    snprintf(dir, sizeof dir, "/tmp/amk-sarif-%d", (int)getpid());
    cr_assert_eq(sh("rm -rf %s && mkdir -p %s", dir, dir), 0);
}

/* Validate the named logs (paths relative to dir); the validator's report goes to the test log. */
static void assert_valid(const char *files)
{
    int rc = sh("cd %s && python3 %s/tests/sarif_validate.py %s/" SCHEMA " %s 1>&2", dir,
                getenv("PWD"), getenv("PWD"), files);
    cr_assert_eq(rc, 0, "schema validation failed (exit %d) for: %s", rc, files);
}

/* The verdict that amk-verify's exit code says: the SARIF must exist and be non-empty. */
static void verify_sarif(const char *program, const char *extra, const char *out, int want_rc)
{
    int rc = sh("%s %s --format sarif %s >%s/%s 2>/dev/null", bin("AMK_VERIFY_BIN",
                "build/amk-verify"), program, extra, dir, out);
    cr_assert_eq(rc, want_rc, "%s %s: exit %d, expected %d", program, extra, rc, want_rc);
    cr_assert_eq(sh("test -s %s/%s", dir, out), 0, "%s is empty", out);
}

Test(sarif_schema, amk_verify_logs_validate_for_every_verdict, .timeout = 600)
{
    make_dir();
    const char *amk = bin("AMK_BIN", "build/amk");
    cr_assert_eq(sh("%s lower --model toy --target h100 -o %s/toy.json 2>/dev/null", amk, dir), 0);
    static const char *const mutants[] = {"cross_queue_deadlock", "dropped_wait",
                                          "smem_over_cap", "tile_oob_last_position",
                                          "page_shared_across_live_ranges"};
    char files[2048] = "proved.sarif malformed.sarif junk.sarif missing.sarif unknown.sarif";
    char prog[256];
    snprintf(prog, sizeof prog, "%s/toy.json", dir);
    verify_sarif(prog, "", "proved.sarif", 0);
    verify_sarif("tests/data/malformed/duplicate_key.json", "", "malformed.sarif", 2);
    verify_sarif("tests/data/malformed/binary_junk.json", "", "junk.sarif", 2);
    verify_sarif("/nonexistent/program.json", "", "missing.sarif", 2);
    verify_sarif(prog, "--deadline-s 0.000000001", "unknown.sarif", 3);
    for (size_t i = 0; i < sizeof mutants / sizeof *mutants; i++) {
        cr_assert_eq(sh("%s mutate %s/toy.json --kind %s --seed 1 -o %s/%s.json 2>/dev/null", amk,
                        dir, mutants[i], dir, mutants[i]), 0, "mutate %s", mutants[i]);
        char mp[256], out[128];
        snprintf(mp, sizeof mp, "%s/%s.json", dir, mutants[i]);
        snprintf(out, sizeof out, "%s.sarif", mutants[i]);
        verify_sarif(mp, "", out, 1);
        strcat(files, " ");
        strcat(files, out);
    }
    assert_valid(files);
    /* an unreadable program is a SARIF log with one error on the file, not another document */
    for (int i = 0; i < 3; i++) {
        const char *f[] = {"malformed.sarif", "junk.sarif", "missing.sarif"};
        cr_assert_eq(sh("grep -q '\"ruleId\": \"input\", \"level\": \"error\"' %s/%s && "
                        "grep -q '\"verdict\": \"MALFORMED\"' %s/%s", dir, f[i], dir, f[i]), 0,
                     "%s", f[i]);
    }
    sh("rm -rf %s", dir);
}

Test(sarif_schema, lint_kernel_logs_validate_for_good_and_bad_artifacts, .timeout = 300)
{
    make_dir();
    const char *amk = bin("AMK_BIN", "build/amk");
    /* exit 1: some artifacts fail; the log still has to be a valid SARIF document */
    int rc = sh("%s lint-kernel --format sarif --no-compile tests/data/lint/good/*.json "
                "tests/data/lint/bad/*.json >%s/lint.sarif 2>/dev/null", amk, dir);
    cr_assert_eq(rc, 1, "lint-kernel over good and bad artifacts: exit %d", rc);
    rc = sh("%s lint-kernel --format sarif --no-compile tests/data/lint/good/*.json "
            ">%s/lint_good.sarif 2>/dev/null", amk, dir);
    cr_assert_eq(rc, 0, "lint-kernel over the good artifacts: exit %d", rc);
    assert_valid("lint.sarif lint_good.sarif");
    sh("rm -rf %s", dir);
}

/* The validator is not a rubber stamp: a log that breaks the schema is refused. */
Test(sarif_schema, the_validator_refuses_a_log_that_breaks_the_schema)
{
    make_dir();
    cr_assert_eq(sh("printf '{\"version\":\"2.1.0\",\"runs\":[{\"tool\":{\"driver\":{}}}]}' "
                    ">%s/bad1.sarif", dir), 0);
    cr_assert_eq(sh("printf '{\"version\":\"2.1.0\",\"runs\":[{\"tool\":{\"driver\":"
                    "{\"name\":\"x\"}},\"results\":[{\"level\":\"fatal\",\"message\":"
                    "{\"text\":\"m\"}}]}]}' >%s/bad2.sarif", dir), 0);
    cr_assert_eq(sh("printf '{\"version\":\"2.1.0\",\"runs\":[{\"tool\":{\"driver\":"
                    "{\"name\":\"x\"}},\"results\":[{\"level\":\"error\",\"message\":"
                    "{\"text\":\"m\"}}]}]}' >%s/good.sarif", dir), 0);
    int rc = sh("cd %s && python3 %s/tests/sarif_validate.py %s/" SCHEMA " good.sarif >/dev/null",
                dir, getenv("PWD"), getenv("PWD"));
    cr_assert_eq(rc, 0);
    for (int i = 1; i <= 2; i++) {
        rc = sh("cd %s && python3 %s/tests/sarif_validate.py %s/" SCHEMA " bad%d.sarif >/dev/null",
                dir, getenv("PWD"), getenv("PWD"), i);
        cr_assert_eq(rc, 1, "bad%d.sarif: exit %d", i, rc);
    }
    sh("rm -rf %s", dir);
}
