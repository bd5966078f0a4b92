/*
 * test_proofs.c - the proof regression corpus: every mutation family, applied to a lowered toy
 * program, gets exactly the witness kind its table names from verify_program; mutations are
 * reproducible and refuse programs without a site; the corpus recipe names every family; and
 * `amk proofs` fails on a wrong expectation and writes it into the JUnit report.
 */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lower/lower.h"
#include "proofs/proofs.h"
#include "verify/verify.h"

/* The toy preset for h100 under a ScheduleConfig file (NULL: the default config). */
static ir_program *lower_toy(const char *config)
{
    lower_model m;
    ir_config c;
    ir_error err = {0};
    cr_assert_eq(lower_model_preset("toy", &m, &err), IR_OK);
    if (config)
        cr_assert_eq(lower_config_read_file(config, &c, &err), IR_OK, "%s", err.why);
    else
        ir_config_default(&c);
    lower_opts o;
    lower_opts_default(&o);
    ir_program *p = NULL;
    cr_assert_eq(lower_program(&m, &c, ir_target_builtin("h100"), &o, &p, &err), IR_OK, "%s", err.why);
    ir_config_free(&c);
    return p;
}

static char *to_json(const ir_program *p)
{
    char *text;
    size_t n;
    ir_error err = {0};
    cr_assert_eq(ir_write_json(p, &text, &n, &err), IR_OK);
    return text;
}

/* Verdict and witness kind of p (kind "" when none). */
static verify_verdict verdict_of(const ir_program *p, char kind[32])
{
    verify_opts o;
    verify_opts_default(&o);
    verify_result r;
    ir_error err = {0};
    cr_assert_eq(verify_program(p, &o, &r, &err), IR_OK, "%s", err.why);
    snprintf(kind, 32, "%s", r.witness_kind);
    verify_verdict v = r.verdict;
    verify_result_free(&r);
    return v;
}

/* The families whose sites need several tiles per projection run on the tiled toy. */
static const char *TILED = "tests/data/lower/full.json";

/* wrong_kv_slot needs a program lowered for one position (constant KV slot), as AMK writes
 * them; our decode-loop programs have none. It is checked on AMK's own programs below. */
static bool one_position_only(const char *family) { return !strcmp(family, "wrong_kv_slot"); }

Test(proofs, every_family_gives_its_witness_kind_on_the_tiled_toy)
{
    ir_program *base = lower_toy(TILED);
    char kind[32];
    cr_assert_eq(verdict_of(base, kind), VERIFY_PROVED, "the base itself must be safe");
    for (int i = 0; i < proofs_mutation_count(); i++) {
        const proofs_mutation *f = proofs_mutation_at(i);
        if (one_position_only(f->name))
            continue;
        for (uint64_t seed = 1; seed <= 2; seed++) {
            char *text = to_json(base);
            ir_program *m = NULL;
            ir_error err = {0};
            cr_assert_eq(ir_read_json(text, strlen(text), NULL, &m, &err), IR_OK);
            free(text);
            cr_assert_eq(proofs_mutate(m, f->name, seed, &err), IR_OK, "%s: %s", f->name, err.why);
            verify_verdict v = verdict_of(m, kind);
            if (f->witness_kind[0]) {
                cr_expect_eq(v, VERIFY_REFUTED, "%s seed %d: verdict %s", f->name, (int)seed,
                             verify_verdict_name(v));
                cr_expect_str_eq(kind, f->witness_kind, "%s seed %d", f->name, (int)seed);
            } else {
                cr_expect_eq(v, VERIFY_PROVED, "%s seed %d: a harmless change must stay PROVED, "
                             "got %s (%s)", f->name, (int)seed, verify_verdict_name(v), kind);
            }
            ir_program_free(m);
        }
    }
    ir_program_free(base);
    verify_release_memory();
}

Test(proofs, same_program_family_and_seed_give_the_same_mutant)
{
    ir_program *a = lower_toy(TILED), *b = lower_toy(TILED);
    ir_error err = {0};
    for (int i = 0; i < proofs_mutation_count(); i++) {
        const char *name = proofs_mutation_at(i)->name;
        if (one_position_only(name))
            continue;
        ir_program *x = lower_toy(TILED), *y = lower_toy(TILED);
        cr_assert_eq(proofs_mutate(x, name, 7, &err), IR_OK, "%s", name);
        cr_assert_eq(proofs_mutate(y, name, 7, &err), IR_OK, "%s", name);
        char *tx = to_json(x), *ty = to_json(y), *tb = to_json(a);
        cr_expect_str_eq(tx, ty, "%s is not reproducible", name);
        cr_expect_str_neq(tx, tb, "%s changed nothing", name);
        free(tx);
        free(ty);
        free(tb);
        ir_program_free(x);
        ir_program_free(y);
    }
    ir_program_free(a);
    ir_program_free(b);
}

Test(proofs, single_tile_toy_has_no_site_for_tile_families)
{
    const char *need_tiles[] = {"overlapping_tiles", "partial_wait_racing", "partial_wait_harmless"};
    for (size_t i = 0; i < sizeof need_tiles / sizeof need_tiles[0]; i++) {
        ir_program *p = lower_toy(NULL);
        char *before = to_json(p);
        ir_error err = {0};
        cr_expect_eq(proofs_mutate(p, need_tiles[i], 1, &err), IR_ERR_UNSUPPORTED, "%s", need_tiles[i]);
        char *after = to_json(p);
        cr_expect_str_eq(before, after, "%s must leave a refused program untouched", need_tiles[i]);
        free(before);
        free(after);
        ir_program_free(p);
    }
}

Test(proofs, unknown_family_is_malformed_and_plan_families_need_a_plan)
{
    ir_program *p = lower_toy(NULL);
    ir_error err = {0};
    cr_expect_eq(proofs_mutate(p, "no_such_family", 1, &err), IR_ERR_MALFORMED);
    cr_expect_str_eq(err.where, "--kind");
    cr_expect_null(proofs_mutation_find("no_such_family"));
    cr_expect_null(proofs_mutation_at(proofs_mutation_count()));
    cr_expect_null(proofs_mutation_at(-1));
    ir_plan_free(&p->plan);
    p->has_plan = false;
    cr_expect_eq(proofs_mutate(p, "smem_over_cap", 1, &err), IR_ERR_UNSUPPORTED);
    cr_expect_str_eq(err.where, "launch_plan");
    cr_expect_eq(proofs_mutate(p, "kv_read_before_append", 1, &err), IR_ERR_UNSUPPORTED);
    cr_expect_str_eq(err.where, "launch_plan");
    ir_program_free(p);
}

/* AMK's own programs (no launch plan, one position): the families that only edit tasks apply,
 * each refuted with its witness kind, and the same seed gives the same mutant. */
Test(proofs, families_apply_to_amks_plan_less_programs)
{
    const char *fams[] = {"cross_queue_deadlock", "threshold_above_producers", "dropped_wait",
                          "overlapping_tiles", "page_shared_across_live_ranges", "wrong_kv_slot"};
    for (size_t i = 0; i < sizeof fams / sizeof fams[0]; i++) {
        ir_program *m = NULL, *again = NULL;
        ir_error err = {0};
        cr_assert_eq(ir_read_file("tests/amk_corpus/toy_nt32_p7.json", NULL, &m, &err), IR_OK, "%s", err.why);
        cr_assert_eq(ir_read_file("tests/amk_corpus/toy_nt32_p7.json", NULL, &again, &err), IR_OK);
        cr_assert_not(m->has_plan);
        cr_assert_eq(proofs_mutate(m, fams[i], 3, &err), IR_OK, "%s: %s", fams[i], err.why);
        cr_assert_eq(proofs_mutate(again, fams[i], 3, &err), IR_OK);
        char *a = to_json(m), *b = to_json(again);
        cr_expect_str_eq(a, b, "%s is not reproducible", fams[i]);
        free(a);
        free(b);
        char kind[32];
        verify_verdict v = verdict_of(m, kind);
        cr_expect_eq(v, VERIFY_REFUTED, "%s: %s", fams[i], verify_verdict_name(v));
        cr_expect_str_eq(kind, proofs_mutation_find(fams[i])->witness_kind, "%s", fams[i]);
        ir_program_free(m);
        ir_program_free(again);
    }
    verify_release_memory();
}

/* A tile sharing its out counter with siblings: waiting for one producer of it would be met by
 * a sibling, so self_wait must wait for all of them (itself included) to deadlock. */
Test(proofs, self_wait_on_a_shared_counter_still_deadlocks)
{
    ir_program *p = lower_toy(TILED);
    ir_error err = {0};
    bool shared = false;
    for (uint64_t seed = 0; seed < 16; seed++) {
        ir_program *m = lower_toy(TILED);
        cr_assert_eq(proofs_mutate(m, "self_wait", seed, &err), IR_OK);
        for (int32_t i = 0; i < m->n_tasks; i++) {
            const ir_task *t = &m->tasks[i];
            if (t->n_waits == p->tasks[i].n_waits)
                continue;
            int64_t np = 0;
            for (int32_t j = 0; j < m->n_tasks; j++)
                np += m->tasks[j].out_counter == t->out_counter;
            cr_expect_eq(t->waits[t->n_waits - 1].counter, t->out_counter);
            cr_expect_eq(t->waits[t->n_waits - 1].threshold, np);
            shared = shared || np > 1;
        }
        char kind[32];
        cr_expect_eq(verdict_of(m, kind), VERIFY_REFUTED, "seed %d", (int)seed);
        cr_expect_str_eq(kind, "deadlock", "seed %d", (int)seed);
        ir_program_free(m);
    }
    cr_expect(shared, "no seed hit a tile with siblings; the test lost its point");
    ir_program_free(p);
    verify_release_memory();
}

/* The mutants that change a position expression stay readable: the value at the program's
 * position agrees with the expression, and the only failure is at the last position. */
Test(proofs, tile_oob_last_position_fails_only_at_the_last_position)
{
    ir_program *p = lower_toy(NULL);
    ir_error err = {0};
    cr_assert_eq(proofs_mutate(p, "tile_oob_last_position", 1, &err), IR_OK);
    char *text = to_json(p);
    ir_program *q = NULL;
    cr_assert_eq(ir_read_json(text, strlen(text), NULL, &q, &err), IR_OK, "%s", err.why);
    free(text);
    verify_opts o;
    verify_opts_default(&o);
    verify_result r;
    cr_assert_eq(verify_program(q, &o, &r, &err), IR_OK);
    cr_expect_str_eq(r.witness_kind, "bounds");
    cJSON *w = cJSON_Parse(r.witness_json);
    cr_assert_not_null(w);
    const cJSON *pos = cJSON_GetObjectItemCaseSensitive(w, "pos");
    cr_assert(cJSON_IsNumber(pos));
    cr_expect_eq((int64_t)pos->valuedouble, q->decode.max_seq - 1, "out of bounds at pos %g",
                 pos->valuedouble);
    cJSON_Delete(w);
    verify_result_free(&r);
    ir_program_free(q);
    ir_program_free(p);
    verify_release_memory();
}

/* The recipe must cover every family: a new family without corpus lines would go unchecked. */
Test(proofs, corpus_recipe_names_every_family_with_its_expectation)
{
    FILE *f = fopen("proofs/corpus.txt", "r");
    cr_assert_not_null(f, "run from the repository root");
    int seen[64] = {0};
    cr_assert_leq(proofs_mutation_count(), 64);
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        char name[256], kind[32], base[256], fam[128], verdict[32], witness[64];
        unsigned long long seed;
        if (sscanf(line, "%255s %31s %255s %127s %llu %31s %63s", name, kind, base, fam, &seed,
                   verdict, witness) != 7 || strcmp(kind, "mutate") || !strcmp(verdict, "NOSITE"))
            continue;
        if (strstr(line, " --"))
            continue;   /* the same family under other amk-verify options (another queue order) */
        const proofs_mutation *m = proofs_mutation_find(fam);
        cr_assert_not_null(m, "unknown family %s in the corpus", fam);
        cr_expect_str_eq(verdict, m->witness_kind[0] ? "REFUTED" : "PROVED", "%s", name);
        cr_expect_str_eq(witness, m->witness_kind[0] ? m->witness_kind : "-", "%s", name);
        seen[m - proofs_mutation_at(0)]++;
    }
    fclose(f);
    for (int i = 0; i < proofs_mutation_count(); i++)
        cr_expect_geq(seen[i], 2, "family %s has %d corpus lines", proofs_mutation_at(i)->name, seen[i]);
}

/* Run `amk proofs` on a two-line corpus; returns its exit code. */
static int run_proofs(const char *bin, const char *vbin, const char *dir, const char *corpus_text)
{
    char corpus[512], cmd[2048];
    snprintf(corpus, sizeof corpus, "%s/corpus.txt", dir);
    FILE *f = fopen(corpus, "w");
    cr_assert_not_null(f);
    fputs(corpus_text, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s proofs --corpus %s --dir %s --verify %s >%s/out.txt 2>&1", bin,
             corpus, dir, vbin, dir);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

Test(proofs, runner_fails_on_a_wrong_expectation_and_reports_it_in_junit)
{
    const char *bin = getenv("AMK_BIN"), *vbin = getenv("AMK_VERIFY_BIN");
    if (!bin || !vbin)
        cr_skip("AMK_BIN / AMK_VERIFY_BIN not set (run through make test)");
    char dir[] = "/tmp/amk_proofs_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char junit[600];
    snprintf(junit, sizeof junit, "%s/junit.xml", dir);

    cr_expect_eq(run_proofs(bin, vbin, dir,
                            "toy lower toy default PROVED -\n"
                            "toy.sw mutate toy self_wait 1 REFUTED deadlock\n"
                            "toy.ot mutate toy overlapping_tiles 1 NOSITE -\n"), 0);
    const char *x = slurp(junit);
    cr_expect(strstr(x, "tests=\"3\" failures=\"0\""), "%s", x);

    /* The same mutant, expected with the wrong witness kind: exit 1, a failure element. */
    cr_expect_eq(run_proofs(bin, vbin, dir,
                            "toy lower toy default PROVED -\n"
                            "toy.sw mutate toy self_wait 1 REFUTED race\n"), 1);
    x = slurp(junit);
    cr_expect(strstr(x, "tests=\"2\" failures=\"1\""), "%s", x);
    cr_expect(strstr(x, "<failure message=\"witness kind differs\">expected REFUTED/race, got "
                        "REFUTED/deadlock</failure>"), "%s", x);
    char out[600];
    snprintf(out, sizeof out, "%s/out.txt", dir);
    cr_expect(strstr(slurp(out), "1 passed, 1 failed"));

    /* A corpus line it cannot understand is a usage error, not a pass. */
    cr_expect_eq(run_proofs(bin, vbin, dir, "toy lower toy\n"), 2);
    cr_expect_eq(run_proofs(bin, vbin, dir, "toy mutate nothing no_such_family 1 REFUTED race\n"), 2);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}

/* The corpus is read whole before anything runs: every line of the real corpus reads, and each
 * kind of bad line is refused with its line number. */
Test(proofs, corpus_parser_reads_the_corpus_and_names_the_bad_line)
{
    char *text = NULL;
    size_t len = 0;
    ir_error err = {0};
    cr_assert_eq(ir_read_text_file("proofs/corpus.txt", IR_MAX_FILE_BYTES, &text, &len, &err),
                 IR_OK);
    proofs_corpus c;
    cr_assert_eq(proofs_corpus_parse(text, len, &c, &err), IR_OK, "%s", err.why);
    cr_assert_gt(c.n, 100);
    int mut = 0;
    for (int i = 0; i < c.n; i++)
        if (c.recipes[i].kind == PROOFS_MUTATE) {
            mut++;
            cr_assert_not_null(proofs_mutation_find(c.recipes[i].args[1]));
        }
    cr_assert_gt(mut, 50);
    proofs_corpus_free(&c);
    free(text);
    static const struct {
        const char *text, *why;
    } bad[] = {
        {"a lower toy default PROVED -\nb bogus x y PROVED -\n", "line 2: expected NAME"},
        {"a lower toy default MAYBE -\n", "line 1: expected NAME"},
        {"a/b lower toy default PROVED -\n", "line 1: expected NAME"},
        {"# only\n\nm mutate base no_such_family 1 REFUTED race\n", "line 3: unknown family"},
        {"m mutate base self_wait -1 REFUTED deadlock\n", "line 1: unknown family"},
        {"x files\n", "line 1: wrong number of fields"},
        {"# nothing but comments\n", "no cases"},
        {"a lower toy default PROVED - --=x\n", "line 1: option '--=x' is not"},
        {"a lower toy default PROVED - --plan y\n", "line 1: option 'y' is not"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err = (ir_error){0};
        cr_assert_eq(proofs_corpus_parse(bad[i].text, strlen(bad[i].text), &c, &err),
                     IR_ERR_MALFORMED, "accepted: %s", bad[i].text);
        cr_assert_not_null(strstr(err.why, bad[i].why), "\"%s\" for %s", err.why, bad[i].text);
        proofs_corpus_free(&c);
    }
    /* options: --name=VALUE and bare flags both read */
    const char *ok = "a file x.json PROVED - --queue-order=topo --plan=amk-loader\n";
    cr_assert_eq(proofs_corpus_parse(ok, strlen(ok), &c, &err), IR_OK, "%s", err.why);
    cr_assert_eq(c.recipes[0].n_opts, 2);
    cr_assert_str_eq(c.recipes[0].opts[1], "--plan=amk-loader");
    proofs_corpus_free(&c);
}
