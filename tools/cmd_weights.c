/*
 * cmd_weights.c - `amk weights`: write deterministic random weights for any model shape, and
 * list the tensors of a safetensors file (after the reader's full validation).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lower/lower.h"
#include "refvm/refvm.h"
#include "tools/cmd.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: amk weights random --model MODEL --seed N [--dtype f32|f16|bf16] -o FILE\n"
            "       amk weights info FILE [--json]\n"
            "\n"
            "random: write a safetensors file with every tensor of MODEL (a preset or a Hugging\n"
            "  Face config.json) under its Hugging Face name: projections uniform with std 0.02,\n"
            "  norm weights in [0.9, 1.1]. The same model, seed and dtype give identical bytes.\n"
            "  lm_head.weight is omitted when the model ties embeddings. Default dtype bf16.\n"
            "info: validate FILE (offsets, sizes, dtypes) and list its tensors.\n"
            "\n"
            "exit: 0 ok, 2 bad usage, unreadable or malformed input.\n");
}

static bool parse_dtype(const char *s, ir_dtype *out)
{
    if (!strcmp(s, "f32") || !strcmp(s, "F32"))
        *out = IR_F32;
    else if (!strcmp(s, "f16") || !strcmp(s, "F16"))
        *out = IR_F16;
    else if (!strcmp(s, "bf16") || !strcmp(s, "BF16"))
        *out = IR_BF16;
    else
        return false;
    return true;
}

static int weights_random(int argc, char **argv)
{
    const char *model = NULL, *out = NULL, *seed_s = NULL;
    ir_dtype dtype = IR_BF16;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return AMK_EXIT_OK;
        } else if (!strcmp(a, "--model") && v) {
            model = v;
            i++;
        } else if (!strcmp(a, "--seed") && v) {
            seed_s = v;
            i++;
        } else if (!strcmp(a, "-o") && v) {
            out = v;
            i++;
        } else if (!strcmp(a, "--dtype") && v) {
            if (!parse_dtype(v, &dtype)) {
                fprintf(stderr, "amk weights: --dtype must be f32, f16 or bf16, got '%s'\n", v);
                return AMK_EXIT_MALFORMED;
            }
            i++;
        } else {
            fprintf(stderr, "amk weights random: unknown or incomplete argument '%s'\n", a);
            usage(stderr);
            return AMK_EXIT_MALFORMED;
        }
    }
    if (!model || !out || !seed_s) {
        fprintf(stderr, "amk weights random: --model, --seed and -o are required\n");
        usage(stderr);
        return AMK_EXIT_MALFORMED;
    }
    char *end;
    unsigned long long seed = strtoull(seed_s, &end, 0);
    if (!*seed_s || *end || seed_s[0] == '-') {
        fprintf(stderr, "amk weights random: --seed must be a non-negative integer, got '%s'\n",
                seed_s);
        return AMK_EXIT_MALFORMED;
    }
    lower_model m;
    ir_error err = {0};
    ir_status s = lower_model_load(model, &m, &err);
    if (s == IR_OK)
        s = refvm_weights_random(&m, (uint64_t)seed, dtype, out, &err);
    if (s != IR_OK) {
        cmd_print_error("amk weights", &err);
        return cmd_exit_for(s);
    }
    printf("wrote %s: model %s, seed %llu, dtype %s\n", out, m.name, seed, ir_dtype_name(dtype));
    return AMK_EXIT_OK;
}

static int weights_info(int argc, char **argv)
{
    const char *path = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = true;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return AMK_EXIT_OK;
        } else if (!path && argv[i][0] != '-')
            path = argv[i];
        else {
            fprintf(stderr, "amk weights info: unexpected argument '%s'\n", argv[i]);
            return AMK_EXIT_MALFORMED;
        }
    }
    if (!path) {
        usage(stderr);
        return AMK_EXIT_MALFORMED;
    }
    refvm_st *st;
    ir_error err = {0};
    ir_status s = refvm_st_open(path, &st, &err);
    if (s != IR_OK) {
        if (json)
            cmd_print_error_json(&err);
        else
            cmd_print_error("amk weights", &err);
        return cmd_exit_for(s);
    }
    uint64_t bytes = 0;
    if (json)
        printf("{\"file\": ");
    if (json) {
        cmd_put_json_string(stdout, path);
        printf(", \"tensors\": [");
    }
    for (int i = 0; i < st->n; i++) {
        const refvm_tensor *t = &st->tensors[i];
        bytes += t->end - t->begin;
        if (json) {
            printf("%s{\"name\": ", i ? ", " : "");
            cmd_put_json_string(stdout, t->name);
            printf(", \"dtype\": \"%s\", \"shape\": [", t->st_dtype);
            for (int k = 0; k < t->rank; k++)
                printf("%s%lld", k ? ", " : "", (long long)t->shape[k]);
            printf("]}");
        } else {
            printf("%-56s %-5s [", t->name, t->st_dtype);
            for (int k = 0; k < t->rank; k++)
                printf("%s%lld", k ? ", " : "", (long long)t->shape[k]);
            printf("]\n");
        }
    }
    if (json)
        printf("], \"n_tensors\": %d, \"data_bytes\": %llu}\n", st->n, (unsigned long long)bytes);
    else
        printf("%d tensors, %llu data bytes\n", st->n, (unsigned long long)bytes);
    refvm_st_close(st);
    return AMK_EXIT_OK;
}

int cmd_weights(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? AMK_EXIT_MALFORMED : AMK_EXIT_OK;
    }
    if (!strcmp(argv[1], "random"))
        return weights_random(argc - 1, argv + 1);
    if (!strcmp(argv[1], "info"))
        return weights_info(argc - 1, argv + 1);
    fprintf(stderr, "amk weights: unknown subcommand '%s'\n", argv[1]);
    usage(stderr);
    return AMK_EXIT_MALFORMED;
}
