/*
 * test_lint_kernel.c - `amk lint-kernel` (bench/lint_kernel.c and tools/cmd_lint_kernel.c)
 * against the committed artifacts in tests/data/lint/: every file in good/ passes, every file
 * in bad/ fails with exactly the rule and line it was written to break. The nvcc and python3
 * checks run for real where the tools exist and are skipped (cr_skip) where they do not; fake
 * tools (shell scripts) pin the time limit and the broken-compiler case.
 *
 * Run from the repository root (as `make test` does).
 */
#include <criterion/criterion.h>

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lint/lint.h"
#include "tests/capture.h"
#include "tools/cmd.h"

#define GOOD "tests/data/lint/good/"
#define BAD "tests/data/lint/bad/"

/* ---------------------------------------------------------------- helpers */

/* Options for the static rules only: both tool checks off (they report as skipped). */
static lint_opts static_opts(void)
{
    lint_opts o;
    lint_opts_default(&o);
    o.compile = false;
    o.parse = false;
    return o;
}

static lint_report lint_with(const char *path, const lint_opts *o)
{
    lint_report r;
    ir_error err = {0};
    ir_status st = lint_file(path, o, &r, &err);
    cr_assert_eq(st, IR_OK, "%s: %s %s", path, err.where, err.why);
    return r;
}

static lint_report lint_static(const char *path)
{
    lint_opts o = static_opts();
    return lint_with(path, &o);
}

static int n_errors(const lint_report *r)
{
    int n = 0;
    for (int i = 0; i < r->n_findings; i++)
        n += r->findings[i].severity == LINT_ERROR;
    return n;
}

static const lint_finding *first_error(const lint_report *r)
{
    for (int i = 0; i < r->n_findings; i++)
        if (r->findings[i].severity == LINT_ERROR)
            return &r->findings[i];
    return NULL;
}

static const lint_finding *find_rule(const lint_report *r, lint_rule rule)
{
    for (int i = 0; i < r->n_findings; i++)
        if (r->findings[i].rule == rule)
            return &r->findings[i];
    return NULL;
}

/* The bad artifact fails with exactly one error finding: rule id and line as given. */
static void expect_only(const char *path, const char *rule_id, int line)
{
    lint_report r = lint_static(path);
    cr_assert_not(r.pass, "%s should fail", path);
    cr_assert_eq(n_errors(&r), 1, "%s: expected 1 error, got %d (first: %s %s)", path,
                 n_errors(&r), r.n_findings ? lint_rule_id(r.findings[0].rule) : "-",
                 r.n_findings ? r.findings[0].message : "-");
    const lint_finding *f = first_error(&r);
    cr_assert_str_eq(lint_rule_id(f->rule), rule_id, "%s: %s", path, f->message);
    cr_assert_eq(f->line, line, "%s: line %d, expected %d (%s)", path, f->line, line, f->message);
    lint_report_free(&r);
}

/* The good artifact passes the static rules with no error finding at all. */
static void expect_pass(const char *path)
{
    lint_report r = lint_static(path);
    const lint_finding *f = first_error(&r);
    cr_assert(r.pass, "%s should pass, got %s: %s", path, f ? lint_rule_id(f->rule) : "-",
              f ? f->message : "-");
    cr_assert_eq(n_errors(&r), 0);
    lint_report_free(&r);
}

static lint_report lint_string(const char *json, const char *path)
{
    lint_opts o = static_opts();
    lint_report r;
    ir_error err = {0};
    cr_assert_eq(lint_text(json, strlen(json), path, &o, &r, &err), IR_OK);
    return r;
}

/* An artifact text around a CUDA or Triton source, for the in-memory cases. */
static char *artifact(const char *type, const char *src, const char *inv)
{
    cJSON *o = cJSON_CreateObject(), *k = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", "t");
    cJSON_AddItemToObject(o, "kernel", k);
    cJSON_AddStringToObject(k, "kernel_type", type);
    cJSON_AddStringToObject(k, "source_code", src);
    cJSON_AddStringToObject(k, "invocation_example", inv);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    cr_assert_not_null(s);
    return s;
}

/* Lint one in-memory CUDA source (static rules) and return the report. */
static lint_report lint_cuda(const char *src, const char *inv)
{
    char *a = artifact("cuda", src, inv);
    lint_report r = lint_string(a, "t.json");
    cJSON_free(a);
    return r;
}

static lint_report lint_triton(const char *src, const char *inv)
{
    char *a = artifact("triton", src, inv);
    lint_report r = lint_string(a, "t.json");
    cJSON_free(a);
    return r;
}

/* nvcc as the linter finds it (PATH, then /usr/local/cuda/bin/nvcc), or NULL. */
static bool have_tool(const char *name, const char *fallback)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", name);
    if (system(cmd) == 0)
        return true;
    return fallback && access(fallback, X_OK) == 0;
}

static bool have_nvcc(void)
{
    return have_tool("nvcc", "/usr/local/cuda/bin/nvcc");
}

static bool have_python3(void)
{
    return system("python3 -c 'import ast' >/dev/null 2>&1") == 0;
}

/* Run cmd_lint_kernel in-process with stdout captured into a malloc'd string (*out). */
static int run_cli(char **out, int argc, char **argv)
{
    return run_captured(cmd_lint_kernel, (const char **)argv, argc, out);
}

/* A fake tool: an executable shell script with the given body, in a fresh directory. */
static void fake_tool(char *path, size_t cap, const char *body)
{
    char dir[] = "/tmp/amk-lint-fake-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, cap, "%s/nvcc", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f, "#!/bin/sh\n%s\n", body);
    fclose(f);
    chmod(path, 0755);
}

static void remove_fake_tool(const char *path)
{
    unlink(path);
    char dir[512];
    snprintf(dir, sizeof dir, "%s", path);
    *strrchr(dir, '/') = '\0';
    rmdir(dir);
}

/* ---------------------------------------------------------------- good artifacts */

Test(lint_good, cuda_vec_add_passes_every_static_rule) { expect_pass(GOOD "cuda_vec_add.json"); }
Test(lint_good, triton_add_passes_every_static_rule) { expect_pass(GOOD "triton_add.json"); }
Test(lint_good, host_words_in_cuda_comments_and_strings_are_not_code)
{
    expect_pass(GOOD "cuda_host_words_in_strings.json");
}
Test(lint_good, host_words_in_python_comments_and_strings_are_not_code)
{
    expect_pass(GOOD "triton_host_words_in_strings.json");
}
Test(lint_good, fp16_with_its_include_passes) { expect_pass(GOOD "cuda_fp16_included.json"); }
Test(lint_good, bf16_with_its_include_passes) { expect_pass(GOOD "cuda_bf16_included.json"); }
Test(lint_good, half_as_a_variable_name_needs_no_fp16_include)
{
    expect_pass(GOOD "cuda_half_as_variable.json");
}

Test(lint_good, reports_kind_and_kernel_symbols)
{
    lint_report r = lint_static(GOOD "cuda_host_words_in_strings.json");
    cr_assert_eq(r.kind, LINT_KIND_CUDA);
    cr_assert_eq(r.n_symbols, 1);
    cr_assert_str_eq(r.symbols[0], "scale");  /* past __launch_bounds__(256) */
    cr_assert_str_eq(r.name, "cuda_host_words_in_strings");
    lint_report_free(&r);
    r = lint_static(GOOD "triton_add.json");
    cr_assert_eq(r.kind, LINT_KIND_TRITON);
    cr_assert_eq(r.n_symbols, 1);
    cr_assert_str_eq(r.symbols[0], "add_kernel");
    lint_report_free(&r);
}

Test(lint_good, turned_off_tool_checks_are_reported_as_skipped_not_passed)
{
    lint_report r = lint_static(GOOD "cuda_vec_add.json");
    cr_assert(r.pass);
    cr_assert_eq(r.tool_state, LINT_TOOL_SKIPPED);
    const lint_finding *f = find_rule(&r, LINT_NVCC);
    cr_assert_not_null(f);
    cr_assert_eq(f->severity, LINT_SKIPPED);
    cr_assert(strstr(f->message, "--no-compile"), "%s", f->message);
    lint_report_free(&r);
}

/* ---------------------------------------------------------------- bad artifacts, one rule each */

Test(lint_bad, l001_trailing_comma_is_invalid_json_at_its_line)
{
    expect_only(BAD "l001_trailing_comma.json", "L001-json", 7);
}
Test(lint_bad, l001_empty_file_is_invalid_json) { expect_only(BAD "l001_empty.json", "L001-json", 1); }
Test(lint_bad, l002_unknown_top_level_key) { expect_only(BAD "l002_unknown_key.json", "L002-fields", 0); }
Test(lint_bad, l002_missing_source_code) { expect_only(BAD "l002_missing_source.json", "L002-fields", 0); }
Test(lint_bad, l002_invocation_of_the_wrong_type) { expect_only(BAD "l002_wrong_type.json", "L002-fields", 0); }
Test(lint_bad, l002_unknown_kernel_type) { expect_only(BAD "l002_bad_kernel_type.json", "L002-fields", 0); }
Test(lint_bad, l003_name_differs_from_file_name)
{
    expect_only(BAD "l003_name_mismatch.json", "L003-name", 0);
}
Test(lint_bad, l010_cuda_without_global_function)
{
    expect_only(BAD "l010_cuda_no_global.json", "L010-kernel-type", 0);
}
Test(lint_bad, l010_triton_without_jit_function)
{
    expect_only(BAD "l010_triton_no_jit.json", "L010-kernel-type", 0);
}
Test(lint_bad, l020_cuda_main) { expect_only(BAD "l020_cuda_main.json", "L020-host-code", 11); }
Test(lint_bad, l020_cuda_triple_chevron_launch)
{
    expect_only(BAD "l020_cuda_launch.json", "L020-host-code", 13);
}
Test(lint_bad, l020_cuda_device_printf_is_printing)
{
    expect_only(BAD "l020_cuda_printf.json", "L020-host-code", 7);
}
Test(lint_bad, l020_triton_main_guard)
{
    expect_only(BAD "l020_triton_main_guard.json", "L020-host-code", 16);
}
Test(lint_bad, l020_triton_grid_launch) { expect_only(BAD "l020_triton_launch.json", "L020-host-code", 17); }
Test(lint_bad, l020_triton_device_print_is_printing)
{
    expect_only(BAD "l020_triton_device_print.json", "L020-host-code", 9);
}
Test(lint_bad, l020_triton_torch_allocation)
{
    expect_only(BAD "l020_triton_torch_empty.json", "L020-host-code", 5);
}
Test(lint_bad, l020_cuda_malloc_and_device_sync_each_reported_on_their_line)
{
    lint_report r = lint_static(BAD "l020_cuda_malloc_sync.json");
    cr_assert_not(r.pass);
    cr_assert_eq(n_errors(&r), 2);
    cr_assert_eq(r.findings[0].rule, LINT_HOST_CODE);
    cr_assert_eq(r.findings[0].line, 14);
    cr_assert(strstr(r.findings[0].message, "cudaMalloc"), "%s", r.findings[0].message);
    cr_assert_eq(r.findings[1].rule, LINT_HOST_CODE);
    cr_assert_eq(r.findings[1].line, 15);
    cr_assert(strstr(r.findings[1].message, "cudaDeviceSynchronize"), "%s", r.findings[1].message);
    lint_report_free(&r);
}
Test(lint_bad, l030_half_without_cuda_fp16_include)
{
    expect_only(BAD "l030_half_no_include.json", "L030-fp16-include", 3);
}
Test(lint_bad, l031_bf16_without_cuda_bf16_include)
{
    expect_only(BAD "l031_bf16_no_include.json", "L031-bf16-include", 3);
}
Test(lint_bad, l040_blank_invocation_example)
{
    expect_only(BAD "l040_empty_invocation.json", "L040-invocation", 0);
}
Test(lint_bad, l040_invocation_example_not_naming_the_kernel)
{
    expect_only(BAD "l040_symbol_missing.json", "L040-invocation", 0);
}
Test(lint_bad, l050_artifact_is_clean_for_the_static_rules)
{
    expect_pass(BAD "l050_syntax_error.json");
}
Test(lint_bad, l051_artifact_is_clean_for_the_static_rules)
{
    expect_pass(BAD "l051_syntax_error.json");
}

/* ---------------------------------------------------------------- scanner details */

Test(lint_scan, raw_strings_and_block_comments_hide_host_words)
{
    lint_report r = lint_cuda("/* int main() { k<<<1,1>>>(); } */\n"
                              "__device__ const char *s = R\"x(printf(\"a\") main())x\";\n"
                                    "__global__ void k(int *p) { p[0] = 1'000; }\n",
                                    "k<<<1, 1>>>(p);");
    cr_assert(r.pass, "%s", r.n_findings ? r.findings[0].message : "");
    cr_assert_eq(n_errors(&r), 0);
    lint_report_free(&r);
}

Test(lint_scan, code_after_a_string_with_escaped_quote_is_still_code)
{
    lint_report r = lint_cuda("__device__ const char *s = \"a\\\"b\";\n"
                              "__global__ void k(int *p) { printf(\"%d\", p[0]); }\n",
                                    "k<<<1, 1>>>(p);");
    cr_assert_eq(n_errors(&r), 1);
    cr_assert_eq(r.findings[0].rule, LINT_HOST_CODE);
    cr_assert_eq(r.findings[0].line, 2);
    lint_report_free(&r);
}

Test(lint_scan, cuda_launch_api_and_torch_allocation_are_host_code)
{
    lint_report r = lint_cuda("__global__ void k(float *p) {}\n"
                              "void go(float *p) { cudaLaunchKernel((void *)k, 1, 1, 0, 0, 0); }\n"
                                    "void mk() { auto t = torch::empty({4}); }\n",
                                    "k<<<1, 1>>>(p);");
    cr_assert_eq(n_errors(&r), 2);
    cr_assert_eq(r.findings[0].line, 2);
    cr_assert(strstr(r.findings[0].message, "kernel launch"), "%s", r.findings[0].message);
    cr_assert_eq(r.findings[1].line, 3);
    cr_assert(strstr(r.findings[1].message, "torch::empty"), "%s", r.findings[1].message);
    lint_report_free(&r);
}

Test(lint_scan, triton_docstring_spanning_lines_keeps_line_numbers)
{
    lint_report r = lint_triton("import triton\n"
                                "'''print(1)\n"
                                      "main()\n"
                                      "'''\n"
                                      "@triton.jit\n"
                                      "def k(p):\n"
                                      "    torch.cuda.synchronize()\n",
                                      "k[(1,)](p)");
    cr_assert_eq(n_errors(&r), 1);
    cr_assert_eq(r.findings[0].rule, LINT_HOST_CODE);
    cr_assert_eq(r.findings[0].line, 7);
    cr_assert(strstr(r.findings[0].message, "torch.cuda.synchronize"), "%s", r.findings[0].message);
    lint_report_free(&r);
}

Test(lint_scan, bare_half_type_needs_the_fp16_include)
{
    lint_report r = lint_cuda("__global__ void k(half *p)\n{ p[0] = p[1]; }\n",
                              "k<<<1, 1>>>(p);");
    cr_assert_eq(n_errors(&r), 1);
    cr_assert_eq(r.findings[0].rule, LINT_FP16_INCLUDE);
    cr_assert_eq(r.findings[0].line, 1);
    lint_report_free(&r);
}

Test(lint_scan, commented_out_include_does_not_count)
{
    lint_report r = lint_cuda("// #include <cuda_fp16.h>\n"
                              "__global__ void k(__half *p) { p[0] = p[1]; }\n",
                                    "k<<<1, 1>>>(p);");
    cr_assert_eq(n_errors(&r), 1);
    cr_assert_eq(r.findings[0].rule, LINT_FP16_INCLUDE);
    cr_assert_eq(r.findings[0].line, 2);
    lint_report_free(&r);
}

Test(lint_scan, several_kernels_any_one_in_the_invocation_is_enough)
{
    lint_report r = lint_cuda("template <int N> __global__ void first(int *p) {}\n"
                              "__global__ void second(int *p) {}\n",
                                    "second<<<1, 1>>>(p);");
    cr_assert_eq(r.n_symbols, 2);
    cr_assert_str_eq(r.symbols[0], "first");
    cr_assert_str_eq(r.symbols[1], "second");
    cr_assert_eq(n_errors(&r), 0);
    lint_report_free(&r);
    /* a longer identifier containing the name is not a mention */
    r = lint_cuda("__global__ void k(int *p) {}\n", "kk<<<1, 1>>>(p);");
    cr_assert_eq(n_errors(&r), 1);
    cr_assert_eq(r.findings[0].rule, LINT_INVOCATION);
    lint_report_free(&r);
}

Test(lint_scan, host_code_findings_are_capped_with_a_count)
{
    char src[8192] = "__global__ void k(int *p) {\n";
    for (int i = 0; i < LINT_MAX_PER_RULE + 5; i++)
        strcat(src, "printf(\"x\");\n");
    strcat(src, "}\n");
    lint_report r = lint_cuda(src, "k<<<1, 1>>>(p);");
    cr_assert_eq(n_errors(&r), LINT_MAX_PER_RULE + 1);
    cr_assert(strstr(r.findings[r.n_findings - 1].message, "5 more"), "%s",
              r.findings[r.n_findings - 1].message);
    lint_report_free(&r);
}

/* ---------------------------------------------------------------- JSON shape and bad bytes */

Test(lint_json, nul_escape_in_a_string_is_refused)
{
    lint_report r = lint_string("{\"name\": \"t\", \"kernel\": {\"kernel_type\": \"cuda\", "
                                    "\"source_code\": \"__global__ void k() {}\\u0000 int main() {}\", "
                                    "\"invocation_example\": \"k<<<1,1>>>();\"}}",
                                    "t.json");
    cr_assert_not(r.pass);
    cr_assert_eq(first_error(&r)->rule, LINT_FIELDS);
    lint_report_free(&r);
}

Test(lint_json, top_level_array_and_trailing_data_fail)
{
    lint_report r = lint_string("[1, 2]", "t.json");
    cr_assert_eq(n_errors(&r), 1);
    cr_assert_eq(first_error(&r)->rule, LINT_FIELDS);
    lint_report_free(&r);
    r = lint_string("{}\n{}", "t.json");
    cr_assert_eq(first_error(&r)->rule, LINT_JSON);
    cr_assert_eq(first_error(&r)->line, 2);
    lint_report_free(&r);
}

Test(lint_json, name_is_not_checked_for_files_not_named_dot_json)
{
    lint_report r = lint_static(GOOD "cuda_vec_add.json");
    cr_assert(r.pass);
    lint_report_free(&r);
    char *a = artifact("cuda", "__global__ void k() {}\n", "k<<<1, 1>>>();");
    r = lint_string(a, "dir/artifact.txt");
    cr_assert(r.pass);
    lint_report_free(&r);
    r = lint_string(a, "dir/other.json");
    cr_assert_eq(first_error(&r)->rule, LINT_NAME);
    lint_report_free(&r);
    cJSON_free(a);
}

Test(lint_json, every_prefix_of_an_artifact_is_handled_without_crashing)
{
    FILE *f = fopen(GOOD "cuda_host_words_in_strings.json", "rb");
    cr_assert_not_null(f);
    static char text[16384];
    size_t n = fread(text, 1, sizeof text, f);
    fclose(f);
    lint_opts o = static_opts();
    for (size_t len = 0; len < n; len++) {
        lint_report r;
        cr_assert_eq(lint_text(text, len, "p.json", &o, &r, NULL), IR_OK);
        /* the object only closes in the last few bytes */
        if (len + 2 < n)
            cr_assert_not(r.pass, "prefix of %zu bytes passed", len);
        lint_report_free(&r);
    }
}

Test(lint_json, unreadable_paths_are_io_errors)
{
    lint_report r;
    ir_error err = {0};
    cr_assert_eq(lint_file("tests/data/lint/no_such_file.json", NULL, &r, &err), IR_ERR_IO);
    cr_assert_str_eq(err.where, "tests/data/lint/no_such_file.json");
    cr_assert_not(r.pass);
    lint_report_free(&r);
    cr_assert_eq(lint_file("tests/data/lint", NULL, &r, &err), IR_ERR_IO);
    lint_report_free(&r);
}

/* ---------------------------------------------------------------- tool checks */

Test(lint_tools, nvcc_compiles_a_good_cuda_kernel)
{
    if (!have_nvcc())
        cr_skip("nvcc not installed");
    lint_opts o;
    lint_opts_default(&o);
    lint_report r = lint_with(GOOD "cuda_fp16_included.json", &o);
    cr_assert(r.pass, "%s", r.n_findings ? r.findings[0].message : "");
    cr_assert_eq(r.tool_state, LINT_TOOL_PASSED);
    cr_assert_eq(r.n_findings, 0);
    lint_report_free(&r);
}

Test(lint_tools, nvcc_syntax_error_fails_l050_with_nvcc_message_and_line)
{
    if (!have_nvcc())
        cr_skip("nvcc not installed");
    lint_opts o;
    lint_opts_default(&o);
    lint_report r = lint_with(BAD "l050_syntax_error.json", &o);
    cr_assert_not(r.pass);
    cr_assert_eq(r.tool_state, LINT_TOOL_FAILED);
    cr_assert_eq(n_errors(&r), 1);
    const lint_finding *f = first_error(&r);
    cr_assert_str_eq(lint_rule_id(f->rule), "L050-nvcc");
    cr_assert_eq(f->line, 8);
    cr_assert(strstr(f->message, "kernel.cu(8): error"), "%s", f->message);
    lint_report_free(&r);
}

Test(lint_tools, missing_fp16_include_also_fails_nvcc)
{
    if (!have_nvcc())
        cr_skip("nvcc not installed");
    lint_opts o;
    lint_opts_default(&o);
    lint_report r = lint_with(BAD "l030_half_no_include.json", &o);
    cr_assert_eq(n_errors(&r), 2);
    cr_assert_eq(r.findings[0].rule, LINT_FP16_INCLUDE);
    cr_assert_eq(r.findings[1].rule, LINT_NVCC);
    cr_assert(strstr(r.findings[1].message, "__half"), "%s", r.findings[1].message);
    lint_report_free(&r);
}

Test(lint_tools, python_parses_a_good_triton_kernel)
{
    if (!have_python3())
        cr_skip("python3 not installed");
    lint_opts o;
    lint_opts_default(&o);
    lint_report r = lint_with(GOOD "triton_add.json", &o);
    cr_assert(r.pass);
    cr_assert_eq(r.tool_state, LINT_TOOL_PASSED);
    cr_assert_eq(r.n_findings, 0);
    lint_report_free(&r);
}

Test(lint_tools, python_syntax_error_fails_l051_at_its_line)
{
    if (!have_python3())
        cr_skip("python3 not installed");
    lint_opts o;
    lint_opts_default(&o);
    lint_report r = lint_with(BAD "l051_syntax_error.json", &o);
    cr_assert_not(r.pass);
    cr_assert_eq(r.tool_state, LINT_TOOL_FAILED);
    cr_assert_eq(n_errors(&r), 1);
    const lint_finding *f = first_error(&r);
    cr_assert_str_eq(lint_rule_id(f->rule), "L051-triton-parse");
    cr_assert_eq(f->line, 7);
    lint_report_free(&r);
}

Test(lint_tools, missing_nvcc_and_python_are_skipped_never_passed)
{
    lint_opts o;
    lint_opts_default(&o);
    o.nvcc = "/nonexistent/bin/nvcc";
    o.python = "";
    lint_report r = lint_with(GOOD "cuda_vec_add.json", &o);
    cr_assert(r.pass);
    cr_assert_eq(r.tool_state, LINT_TOOL_SKIPPED);
    const lint_finding *f = find_rule(&r, LINT_NVCC);
    cr_assert_not_null(f);
    cr_assert_eq(f->severity, LINT_SKIPPED);
    cr_assert(strstr(f->message, "/nonexistent/bin/nvcc"), "%s", f->message);
    lint_report_free(&r);
    /* a source that would not parse still is not called broken without python3 */
    r = lint_with(BAD "l051_syntax_error.json", &o);
    cr_assert(r.pass);
    cr_assert_eq(r.tool_state, LINT_TOOL_SKIPPED);
    f = find_rule(&r, LINT_TRITON_PARSE);
    cr_assert_not_null(f);
    cr_assert_eq(f->severity, LINT_SKIPPED);
    lint_report_free(&r);
}

Test(lint_tools, a_compiler_past_its_time_limit_is_killed_and_fails)
{
    char tool[512];
    fake_tool(tool, sizeof tool, "sleep 30");
    lint_opts o;
    lint_opts_default(&o);
    o.nvcc = tool;
    o.compile_timeout_s = 1;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    lint_report r = lint_with(GOOD "cuda_vec_add.json", &o);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    remove_fake_tool(tool);
    cr_assert_lt(t1.tv_sec - t0.tv_sec, 10);
    cr_assert_not(r.pass);
    cr_assert_eq(r.tool_state, LINT_TOOL_FAILED);
    const lint_finding *f = first_error(&r);
    cr_assert_eq(f->rule, LINT_NVCC);
    cr_assert(strstr(f->message, "within 1 s"), "%s", f->message);
    lint_report_free(&r);
}

Test(lint_tools, a_compiler_that_rejects_everything_is_a_skip_not_a_kernel_failure)
{
    char tool[512];
    fake_tool(tool, sizeof tool, "echo 'nvcc fatal : no host compiler' >&2; exit 1");
    lint_opts o;
    lint_opts_default(&o);
    o.nvcc = tool;
    lint_report r = lint_with(GOOD "cuda_vec_add.json", &o);
    remove_fake_tool(tool);
    cr_assert(r.pass);
    cr_assert_eq(r.tool_state, LINT_TOOL_SKIPPED);
    const lint_finding *f = find_rule(&r, LINT_NVCC);
    cr_assert_eq(f->severity, LINT_SKIPPED);
    cr_assert(strstr(f->message, "no host compiler"), "%s", f->message);
    lint_report_free(&r);
}

/* ---------------------------------------------------------------- the command */

Test(lint_cli, exit_codes)
{
    char *good[] = {"lint-kernel", "--no-compile", GOOD "cuda_vec_add.json", GOOD "triton_add.json"};
    cr_assert_eq(run_cli(NULL, 4, good), 0);
    char *bad[] = {"lint-kernel", "--no-compile", GOOD "cuda_vec_add.json", BAD "l020_cuda_main.json"};
    cr_assert_eq(run_cli(NULL, 4, bad), 1);
    char *missing[] = {"lint-kernel", "--no-compile", BAD "l020_cuda_main.json", "tests/data/lint/nope.json"};
    cr_assert_eq(run_cli(NULL, 4, missing), 2);
    char *none[] = {"lint-kernel", "--no-compile"};
    cr_assert_eq(run_cli(NULL, 2, none), 2);
    char *both[] = {"lint-kernel", "--json", "--sarif", GOOD "cuda_vec_add.json"};
    cr_assert_eq(run_cli(NULL, 4, both), 2);
    char *unknown[] = {"lint-kernel", "--fast", GOOD "cuda_vec_add.json"};
    cr_assert_eq(run_cli(NULL, 3, unknown), 2);
    char *help[] = {"lint-kernel", "--help"};
    char *out = NULL;
    cr_assert_eq(run_cli(&out, 2, help), 0);
    cr_assert(strstr(out, "L051-triton-parse"), "%s", out);
    free(out);
}

Test(lint_cli, text_output_shows_verdicts_lines_and_skips)
{
    char *argv[] = {"lint-kernel", "--no-compile", GOOD "cuda_vec_add.json", BAD "l020_cuda_launch.json"};
    char *out = NULL;
    cr_assert_eq(run_cli(&out, 4, argv), 1);
    cr_assert(strstr(out, "PASS " GOOD "cuda_vec_add.json"), "%s", out);
    cr_assert(strstr(out, "FAIL " BAD "l020_cuda_launch.json"), "%s", out);
    cr_assert(strstr(out, "L020-host-code kernel.source_code:13:"), "%s", out);
    cr_assert(strstr(out, "skipped L050-nvcc"), "%s", out);
    cr_assert(strstr(out, "2 artifacts: 1 PASS, 1 FAIL, 0 unreadable; 2 checks skipped"), "%s", out);
    free(out);
}

Test(lint_cli, json_output_is_one_document_with_findings)
{
    char *argv[] = {"lint-kernel", "--json", "--no-compile", BAD "l020_triton_main_guard.json",
                    "tests/data/lint/nope.json"};
    char *out = NULL;
    cr_assert_eq(run_cli(&out, 5, argv), 2);
    cJSON *doc = cJSON_Parse(out);
    cr_assert_not_null(doc, "%s", out);
    cJSON *arts = cJSON_GetObjectItem(doc, "artifacts");
    cr_assert_eq(cJSON_GetArraySize(arts), 2);
    cJSON *a0 = cJSON_GetArrayItem(arts, 0);
    cr_assert_str_eq(cJSON_GetObjectItem(a0, "verdict")->valuestring, "FAIL");
    cr_assert_str_eq(cJSON_GetObjectItem(a0, "kernel_type")->valuestring, "triton");
    cJSON *fs = cJSON_GetObjectItem(a0, "findings");
    cJSON *f0 = cJSON_GetArrayItem(fs, 0);
    cr_assert_str_eq(cJSON_GetObjectItem(f0, "rule")->valuestring, "L020-host-code");
    cr_assert_eq(cJSON_GetObjectItem(f0, "line")->valueint, 16);
    cJSON *a1 = cJSON_GetArrayItem(arts, 1);
    cr_assert_str_eq(cJSON_GetObjectItem(a1, "verdict")->valuestring, "ERROR");
    cr_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(a1, "error"), "status")->valuestring, "IO");
    cJSON *sum = cJSON_GetObjectItem(doc, "summary");
    cr_assert_eq(cJSON_GetObjectItem(sum, "fail")->valueint, 1);
    cr_assert_eq(cJSON_GetObjectItem(sum, "unreadable")->valueint, 1);
    cJSON_Delete(doc);
    free(out);
}

/* --format is spelled as amk-verify spells it: the same documents as --json and --sarif. */
Test(lint_cli, format_option_gives_the_same_output_as_the_flags)
{
    const char *kinds[][2] = {{"json", "--json"}, {"sarif", "--sarif"}};
    for (int k = 0; k < 2; k++) {
        char *a[] = {"lint-kernel", "--format", (char *)kinds[k][0], "--no-compile",
                     BAD "l020_cuda_printf.json"};
        char *b[] = {"lint-kernel", (char *)kinds[k][1], "--no-compile", BAD "l020_cuda_printf.json"};
        char *oa = NULL, *ob = NULL;
        cr_assert_eq(run_cli(&oa, 5, a), 1);
        cr_assert_eq(run_cli(&ob, 4, b), 1);
        cr_assert_str_eq(oa, ob, "--format %s", kinds[k][0]);
        free(oa);
        free(ob);
    }
    char *bad[] = {"lint-kernel", "--format", "xml", BAD "l020_cuda_printf.json"};
    char *out = NULL;
    cr_assert_eq(run_cli(&out, 4, bad), 2);
    free(out);
}

Test(lint_cli, sarif_output_is_a_2_1_0_log_with_results_and_skips)
{
    char *argv[] = {"lint-kernel", "--sarif", "--no-compile", BAD "l020_cuda_printf.json"};
    char *out = NULL;
    cr_assert_eq(run_cli(&out, 4, argv), 1);
    cJSON *doc = cJSON_Parse(out);
    cr_assert_not_null(doc, "%s", out);
    cr_assert_str_eq(cJSON_GetObjectItem(doc, "version")->valuestring, "2.1.0");
    cr_assert(cJSON_IsString(cJSON_GetObjectItem(doc, "$schema")));
    cJSON *run = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "runs"), 0);
    cJSON *driver = cJSON_GetObjectItem(cJSON_GetObjectItem(run, "tool"), "driver");
    cr_assert_str_eq(cJSON_GetObjectItem(driver, "name")->valuestring, "amk lint-kernel");
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(driver, "rules")), LINT_N_RULES);
    cJSON *results = cJSON_GetObjectItem(run, "results");
    cr_assert_eq(cJSON_GetArraySize(results), 2);
    cJSON *r0 = cJSON_GetArrayItem(results, 0);
    cr_assert_str_eq(cJSON_GetObjectItem(r0, "ruleId")->valuestring, "L020-host-code");
    cr_assert_str_eq(cJSON_GetObjectItem(r0, "level")->valuestring, "error");
    cJSON *phys = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(r0, "locations"), 0),
                                      "physicalLocation");
    cr_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(phys, "artifactLocation"), "uri")->valuestring,
                     BAD "l020_cuda_printf.json");
    cr_assert_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(phys, "region"), "startLine")->valueint, 7);
    cJSON *r1 = cJSON_GetArrayItem(results, 1);
    cr_assert_str_eq(cJSON_GetObjectItem(r1, "ruleId")->valuestring, "L050-nvcc");
    cr_assert_str_eq(cJSON_GetObjectItem(r1, "kind")->valuestring, "open");
    cr_assert_str_eq(cJSON_GetObjectItem(r1, "level")->valuestring, "none");
    cJSON_Delete(doc);
    free(out);
}

Test(lint_cli, built_binary_reports_the_same_exit_codes)
{
    const char *bin = getenv("AMK_BIN");
    if (!bin || !*bin)
        cr_skip("AMK_BIN not set (run through make test)");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s lint-kernel --no-compile %s >/dev/null 2>&1", bin, GOOD "cuda_vec_add.json");
    int st = system(cmd);
    cr_assert_eq(WEXITSTATUS(st), 0);
    snprintf(cmd, sizeof cmd, "%s lint-kernel --no-compile %s >/dev/null 2>&1", bin, BAD "l040_symbol_missing.json");
    st = system(cmd);
    cr_assert_eq(WEXITSTATUS(st), 1);
    snprintf(cmd, sizeof cmd, "%s lint-kernel tests/data/lint/nope.json >/dev/null 2>&1", bin);
    st = system(cmd);
    cr_assert_eq(WEXITSTATUS(st), 2);
}
