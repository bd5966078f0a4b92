/*
 * test_options.c - the table-driven option parser of base/: every value type in both the
 * "--name VALUE" and "--name=VALUE" forms, the strict refusals with messages that name the
 * option and what it accepts, positionals and their count, repeated options, --help, and the
 * usage text printed from the same table.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "base/base.h"

static const char *const COLORS[] = {"red", "green", "blue", NULL};

/* One command line with one option of every type; parse() runs it on a list of words. */
typedef struct {
    bool flag;
    const char *str, *pos[2];
    const char *many_v[3];
    base_opt_strings many;
    int i, choice, n_pos;
    int64_t big;
    uint64_t seed;
    double d;
} fixture;

static base_opts_status parse(fixture *f, const char **words, int n, char *err, size_t len)
{
    *f = (fixture){.i = 5, .big = -1, .seed = 7, .d = 0.5, .choice = 1};
    f->many = (base_opt_strings){.v = f->many_v, .cap = 3};
    const base_option opts[] = {
        BASE_FLAG("--flag", &f->flag, "a flag"),
        BASE_STR("-o", &f->str, "FILE", "a string ('-': stdout)"),
        BASE_STRS("--many", &f->many, "S", "given up to 3 times"),
        BASE_INT("--int", &f->i, "N", 1, 1000000, "an int", .show_default = true),
        BASE_I64("--big", &f->big, "N", 0, 0, "any int64"),
        BASE_U64("--seed", &f->seed, "N", "a seed", .show_default = true),
        BASE_DOUBLE("--tol", &f->d, "X", 0, INFINITY, "a number >= 0", .show_default = true),
        BASE_CHOICE("--color", &f->choice, "C", COLORS, "a color\nsecond line",
                    .show_default = true),
    };
    const base_cmdline cl = {.prog = "amk test", .synopsis = "usage: amk test A [B]\n",
                             .opts = opts, .n_opts = 8, .pos_name = "A", .min_pos = 1,
                             .max_pos = 2, .pos = f->pos, .n_pos = &f->n_pos};
    char *argv[32];
    argv[0] = "test";
    for (int k = 0; k < n; k++)
        argv[k + 1] = (char *)words[k];
    return base_opts_parse(&cl, n + 1, argv, err, len);
}

#define PARSE(f, err, ...)                                                                     \
    parse((f), (const char *[]){__VA_ARGS__}, sizeof((const char *[]){__VA_ARGS__}) /          \
          sizeof(const char *), (err), sizeof(err))

Test(options, every_type_parses_in_the_space_and_equals_forms)
{
    fixture f;
    char err[300];
    cr_assert_eq(PARSE(&f, err, "p", "--flag", "-o", "-", "--int", "42", "--big=-9000000000",
                       "--seed", "0x10", "--tol=1e-3", "--color", "blue", "q"), BASE_OPTS_OK,
                 "%s", err);
    cr_assert(f.flag);
    cr_assert_str_eq(f.str, "-");
    cr_assert_eq(f.i, 42);
    cr_assert_eq(f.big, -9000000000LL);
    cr_assert_eq(f.seed, 16);
    cr_assert_float_eq(f.d, 1e-3, 1e-12);
    cr_assert_eq(f.choice, 2);
    cr_assert_eq(f.n_pos, 2);
    cr_assert_str_eq(f.pos[0], "p");
    cr_assert_str_eq(f.pos[1], "q");
    cr_assert_eq(PARSE(&f, err, "--int=7", "-o=out.json", "--seed=12", "--color=red", "p"),
                 BASE_OPTS_OK, "%s", err);
    cr_assert_eq(f.i, 7);
    cr_assert_str_eq(f.str, "out.json");
    cr_assert_eq(f.seed, 12);
    cr_assert_eq(f.choice, 0);
}

Test(options, defaults_stay_when_an_option_is_absent)
{
    fixture f;
    char err[300];
    cr_assert_eq(PARSE(&f, err, "p"), BASE_OPTS_OK, "%s", err);
    cr_assert(!f.flag);
    cr_assert_null(f.str);
    cr_assert_eq(f.i, 5);
    cr_assert_eq(f.seed, 7);
    cr_assert_eq(f.choice, 1);
    cr_assert_eq(f.n_pos, 1);
}

Test(options, range_errors_name_the_option_and_what_it_accepts)
{
    fixture f;
    char err[300];
    cr_assert_eq(PARSE(&f, err, "p", "--int", "x"), BASE_OPTS_ERROR);
    cr_assert_str_eq(err, "--int: expected an integer in [1, 1000000], got 'x'");
    cr_assert_eq(PARSE(&f, err, "p", "--int", "0"), BASE_OPTS_ERROR);
    cr_assert_str_eq(err, "--int: expected an integer in [1, 1000000], got '0'");
    cr_assert_eq(PARSE(&f, err, "p", "--int=12x"), BASE_OPTS_ERROR, "trailing junk");
    cr_assert_str_eq(err, "--int: expected an integer in [1, 1000000], got '12x'");
    cr_assert_eq(PARSE(&f, err, "p", "--big", "1.5"), BASE_OPTS_ERROR);
    cr_assert_str_eq(err, "--big: expected an integer, got '1.5'");
    cr_assert_eq(PARSE(&f, err, "p", "--seed", "-1"), BASE_OPTS_ERROR, "no sign on a seed");
    cr_assert_str_eq(err, "--seed: expected an unsigned 64-bit integer (decimal or 0x hex), "
                          "got '-1'");
    cr_assert_eq(PARSE(&f, err, "p", "--tol", "-0.5"), BASE_OPTS_ERROR);
    cr_assert_str_eq(err, "--tol: expected a number >= 0, got '-0.5'");
    cr_assert_eq(PARSE(&f, err, "p", "--tol", "nan"), BASE_OPTS_ERROR);
    cr_assert_eq(PARSE(&f, err, "p", "--color", "pink"), BASE_OPTS_ERROR);
    cr_assert_str_eq(err, "--color: expected one of red, green, blue, got 'pink'");
}

Test(options, missing_value_unknown_option_and_flag_with_value_are_refused)
{
    fixture f;
    char err[300];
    cr_assert_eq(PARSE(&f, err, "p", "--int"), BASE_OPTS_ERROR);
    cr_assert_str_eq(err, "--int needs a value (N)");
    cr_assert_eq(PARSE(&f, err, "p", "--bogus", "1"), BASE_OPTS_ERROR);
    cr_assert_str_eq(err, "unknown option '--bogus'");
    cr_assert_eq(PARSE(&f, err, "p", "--in", "1"), BASE_OPTS_ERROR, "no prefix matching");
    cr_assert_eq(PARSE(&f, err, "p", "--flag=1"), BASE_OPTS_ERROR);
    cr_assert_str_eq(err, "--flag takes no value, got '--flag=1'");
}

Test(options, repeated_options_keep_the_last_value_or_collect_every_one)
{
    fixture f;
    char err[300];
    cr_assert_eq(PARSE(&f, err, "p", "--int", "3", "--int", "4"), BASE_OPTS_OK, "%s", err);
    cr_assert_eq(f.i, 4);
    cr_assert_eq(PARSE(&f, err, "p", "--many", "a", "--many=b"), BASE_OPTS_OK, "%s", err);
    cr_assert_eq(f.many.n, 2);
    cr_assert_str_eq(f.many.v[0], "a");
    cr_assert_str_eq(f.many.v[1], "b");
    cr_assert_eq(PARSE(&f, err, "p", "--many", "a", "--many", "b", "--many", "c", "--many", "d"),
                 BASE_OPTS_ERROR);
    cr_assert_str_eq(err, "--many: given more than 3 times");
}

Test(options, positional_count_is_checked_and_double_dash_ends_options)
{
    fixture f;
    char err[300];
    cr_assert_eq(PARSE(&f, err, "--flag"), BASE_OPTS_ERROR);
    cr_assert_str_eq(err, "A is required");
    cr_assert_eq(PARSE(&f, err, "a", "b", "c"), BASE_OPTS_ERROR);
    cr_assert(strstr(err, "unexpected argument 'c'"), "%s", err);
    cr_assert_eq(PARSE(&f, err, "--", "--flag"), BASE_OPTS_OK, "%s", err);
    cr_assert(!f.flag);
    cr_assert_str_eq(f.pos[0], "--flag");
    cr_assert_eq(PARSE(&f, err, "-"), BASE_OPTS_OK, "a lone '-' is positional");
    cr_assert_str_eq(f.pos[0], "-");
}

Test(options, help_wins_and_stores_nothing_but_not_as_a_value)
{
    fixture f;
    char err[300];
    cr_assert_eq(PARSE(&f, err, "--int", "9", "--bogus", "-h"), BASE_OPTS_HELP);
    cr_assert_eq(PARSE(&f, err, "--help"), BASE_OPTS_HELP, "before the positional count");
    cr_assert_eq(f.i, 5, "nothing stored");
    cr_assert_eq(PARSE(&f, err, "p", "-o", "--help"), BASE_OPTS_OK, "a value, not --help");
    cr_assert_str_eq(f.str, "--help");
    cr_assert_eq(PARSE(&f, err, "p", "--", "--help"), BASE_OPTS_OK, "after --: positional");
}

Test(options, required_options_are_named_when_absent)
{
    const char *w = NULL;
    const base_option opts[] = {BASE_STR("--weights", &w, "FILE", "weights", .required = true)};
    const base_cmdline cl = {.prog = "amk x", .opts = opts, .n_opts = 1};
    char *argv[] = {"x", NULL};
    char err[200];
    cr_assert_eq(base_opts_parse(&cl, 1, argv, err, sizeof err), BASE_OPTS_ERROR);
    cr_assert_str_eq(err, "--weights is required");
}

Test(options, usage_text_comes_from_the_table_with_defaults)
{
    fixture f = {.i = 5, .seed = 7, .d = 0.5, .choice = 1};
    const base_option opts[] = {
        BASE_FLAG("--flag", &f.flag, "a flag"),
        BASE_INT("--int", &f.i, "N", 1, 10, "an int", .show_default = true),
        BASE_U64("--seed", &f.seed, "N", "a seed", .show_default = true),
        BASE_DOUBLE("--tol", &f.d, "X", 0, 1, "a number", .show_default = true),
        BASE_CHOICE("--color", &f.choice, "C", COLORS, "a color\nsecond line",
                    .show_default = true),
    };
    const base_cmdline cl = {.prog = "amk test", .synopsis = "usage: amk test A\n",
                             .about = "What it does.\n", .opts = opts, .n_opts = 5,
                             .epilog = "exit: 0 ok\n"};
    base_sb b = {0};
    base_opts_usage(&cl, &b);
    cr_assert(!b.oom);
    cr_assert_str_eq(b.s, "usage: amk test A\n"
                          "\n"
                          "What it does.\n"
                          "\n"
                          "  --flag             a flag\n"
                          "  --int N            an int (default 5)\n"
                          "  --seed N           a seed (default 7)\n"
                          "  --tol X            a number (default 0.5)\n"
                          "  --color C          a color\n"
                          "                     second line (default green)\n"
                          "\n"
                          "exit: 0 ok\n");
    base_sb_free(&b);
}

/* ---------------------------------------------------------------- the commands' usage errors */

#include <cjson/cJSON.h>

#include "tests/capture.h"
#include "tools/cmd.h"

/* A usage error of a command asked for JSON (--json or --format json) still prints one JSON
 * error record on stdout, so a script that parses stdout never meets an empty or text answer. */
Test(cmd_usage, a_usage_error_under_json_prints_one_json_error_record)
{
    struct {
        int (*fn)(int, char **);
        const char *args[8];
        int n;
    } cases[] = {
        {cmd_bench, {"bench", "p.json", "--json"}, 3},
        {cmd_launch, {"launch", "p.json", "--json"}, 3},
        {cmd_run, {"run", "p.json", "--weights", "w", "--prompt", "1", "--steps", "0"}, 8},
        {cmd_verify, {"amk-verify", "--format", "json", "--bogus"}, 4},
        {cmd_lint_kernel, {"lint-kernel", "--json"}, 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *args[10];
        int n = cases[i].n;
        for (int k = 0; k < n; k++)
            args[k] = cases[i].args[k];
        if (i == 2)
            args[n++] = "--json";
        char *out = NULL;
        int rc = run_captured(cases[i].fn, args, n, &out);
        cr_assert_eq(rc, AMK_EXIT_MALFORMED, "case %zu: exit %d", i, rc);
        cJSON *o = cJSON_Parse(out);
        cr_assert_not_null(o, "case %zu: stdout is not JSON: \"%s\"", i, out);
        cr_assert_str_eq(cJSON_GetObjectItem(o, "status")->valuestring, "MALFORMED");
        cr_assert_str_eq(cJSON_GetObjectItem(o, "where")->valuestring, "usage");
        cJSON_Delete(o);
        free(out);
    }
    /* without --json the usage error stays on stderr */
    const char *plain[] = {"bench", "p.json"};
    char *out = NULL;
    cr_assert_eq(run_captured(cmd_bench, plain, 2, &out), AMK_EXIT_MALFORMED);
    cr_assert_str_eq(out, "");
    free(out);
}

/* Long commands report progress on stderr: silent for the first 2 s, then one line a second. */
Test(cmd_usage, progress_is_quiet_at_first_then_one_line_a_second)
{
    char tmpl[] = "/tmp/amk-test-progress-XXXXXX";
    int fd = mkstemp(tmpl);
    cr_assert(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    cmd_progress p;
    cmd_progress_begin(&p, "amk test");
    cmd_progress_say(&p, "early");          /* under 2 s: nothing */
    p.start -= 3;                           /* as if 3 s had passed */
    cmd_progress_say(&p, "step %d", 1);     /* printed */
    cmd_progress_say(&p, "step %d", 2);     /* within the same second: nothing */
    p.last -= 1.5;
    cmd_progress_say(&p, "step %d", 3);     /* a second later: printed */
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char buf[512] = "";
    cr_assert_geq(pread(fd, buf, sizeof buf - 1, 0), 0);
    close(fd);
    unlink(tmpl);
    cr_assert_null(strstr(buf, "early"));
    cr_assert_not_null(strstr(buf, "amk test: [3 s] step 1\n"), "%s", buf);
    cr_assert_null(strstr(buf, "step 2"));
    cr_assert_not_null(strstr(buf, "step 3"), "%s", buf);
}
