/*
 * corpus.c - the proof regression corpus's recipe file (proofs/corpus.txt), read whole and checked
 * line by line before anything is generated or verified: a line it cannot understand is refused
 * with its number, never skipped.
 *
 * A line: NAME KIND ARGS... EXPECT WITNESS [--opt=VALUE...], '#' to the end of a line a comment.
 *   KIND lower  ARGS = MODEL CONFIG          KIND mutate ARGS = BASE FAMILY SEED
 *   KIND files  ARGS = GLOB                  KIND file   ARGS = PATH
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "proofs/proofs.h"

void proofs_corpus_free(proofs_corpus *c)
{
    free(c->recipes);
    free(c->text);
    memset(c, 0, sizeof *c);
}

static bool valid_verdict(const char *v)
{
    return !strcmp(v, "PROVED") || !strcmp(v, "REFUTED") || !strcmp(v, "MALFORMED") ||
           !strcmp(v, "UNKNOWN") || !strcmp(v, "NOSITE");
}

bool proofs_valid_name(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '-' || *s == '_'))
            return false;
    return true;
}

/* The kind named by word and the number of ARGS it takes; false for an unknown kind. */
static bool kind_of(const char *word, proofs_recipe_kind *k, int *n_args)
{
    static const struct {
        const char *word;
        proofs_recipe_kind kind;
        int n_args;
    } K[] = {{"lower", PROOFS_LOWER, 2}, {"mutate", PROOFS_MUTATE, 3}, {"files", PROOFS_FILES, 1},
             {"file", PROOFS_FILE, 1}};
    for (size_t i = 0; i < sizeof K / sizeof K[0]; i++)
        if (!strcmp(word, K[i].word)) {
            *k = K[i].kind;
            *n_args = K[i].n_args;
            return true;
        }
    return false;
}

/* Fill r from the fields f[0..nf) of line lineno (pointers into the corpus's own text). */
static ir_status read_recipe(char **f, int nf, int lineno, proofs_recipe *r, ir_error *err)
{
    memset(r, 0, sizeof *r);
    r->line = lineno;
    int k = 2;   /* the options start at the first field beginning with "--" after the kind */
    while (k < nf && strncmp(f[k], "--", 2))
        k++;
    for (int i = k; i < nf; i++)
        r->opts[r->n_opts++] = f[i];
    int n_args = 0;
    if (k < 4 || !kind_of(f[1], &r->kind, &n_args) || k != 4 + n_args ||
        !valid_verdict(f[k - 2]) || !proofs_valid_name(f[0]))
        return ir_fail(err, IR_ERR_MALFORMED, "corpus", "line %d: expected NAME "
                       "lower|mutate|files|file ARGS EXPECT WITNESS with a plain NAME and EXPECT "
                       "one of PROVED, REFUTED, MALFORMED, UNKNOWN, NOSITE", lineno);
    r->name = f[0];
    for (int i = 0; i < n_args; i++)
        r->args[i] = f[2 + i];
    r->verdict = f[k - 2];
    r->witness = f[k - 1];
    if (r->kind == PROOFS_MUTATE &&
        (!base_parse_u64(r->args[2], &r->seed) || !proofs_mutation_find(r->args[1]) ||
         !proofs_valid_name(r->args[0])))
        return ir_fail(err, IR_ERR_MALFORMED, "corpus", "line %d: unknown family '%.60s', bad "
                       "base or bad seed", lineno, r->args[1]);
    for (int i = 0; i < r->n_opts; i++)   /* every field after the first option is one too */
        if (strncmp(r->opts[i], "--", 2) || !r->opts[i][2] || r->opts[i][2] == '=')
            return ir_fail(err, IR_ERR_MALFORMED, "corpus", "line %d: option '%.60s' is not "
                           "--name or --name=VALUE", lineno, r->opts[i]);
    return IR_OK;
}

/* Split line (NUL-terminated, modified in place) into at most PROOFS_MAX_FIELDS + 1 fields. */
static int split(char *line, char **f)
{
    char *hash = strchr(line, '#');
    if (hash)
        *hash = 0;
    int nf = 0;
    char *save = NULL;
    for (char *tok = strtok_r(line, " \t\r", &save); tok && nf <= PROOFS_MAX_FIELDS;
         tok = strtok_r(NULL, " \t\r", &save))
        f[nf++] = tok;
    return nf;
}

ir_status proofs_corpus_parse(const char *text, size_t len, proofs_corpus *c, ir_error *err)
{
    memset(c, 0, sizeof *c);
    if (!(c->text = malloc(len + 1)))
        return ir_fail(err, IR_ERR_NOMEM, "corpus", "out of memory");
    memcpy(c->text, text, len);
    c->text[len] = 0;
    if (memchr(c->text, 0, len))
        return ir_fail(err, IR_ERR_MALFORMED, "corpus", "a NUL byte in the text");
    int cap = 0, lineno = 0;
    ir_status s = IR_OK;
    for (char *at = c->text; s == IR_OK && *at;) {
        char *nl = strchr(at, '\n');
        if (nl)
            *nl = 0;
        lineno++;
        char *line = at;
        at = nl ? nl + 1 : at + strlen(at);
        if (strlen(line) > PROOFS_MAX_LINE) {
            s = ir_fail(err, IR_ERR_MALFORMED, "corpus", "line %d: longer than %d characters",
                        lineno, PROOFS_MAX_LINE);
            break;
        }
        char *f[PROOFS_MAX_FIELDS + 1];
        int nf = split(line, f);
        if (nf == 0)
            continue;
        if (nf < 5 || nf > PROOFS_MAX_FIELDS) {
            s = ir_fail(err, IR_ERR_MALFORMED, "corpus", "line %d: wrong number of fields", lineno);
            break;
        }
        if (c->n == cap) {
            cap = cap ? 2 * cap : 64;
            proofs_recipe *nr = realloc(c->recipes, sizeof *nr * (size_t)cap);
            if (!nr) {
                s = ir_fail(err, IR_ERR_NOMEM, "corpus", "out of memory");
                break;
            }
            c->recipes = nr;
        }
        s = read_recipe(f, nf, lineno, &c->recipes[c->n], err);
        if (s == IR_OK)
            c->n++;
    }
    if (s == IR_OK && c->n == 0)
        s = ir_fail(err, IR_ERR_MALFORMED, "corpus", "no cases: the corpus names no program");
    if (s != IR_OK)
        proofs_corpus_free(c);
    return s;
}
