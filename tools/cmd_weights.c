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

static const char SYNOPSIS[] =
    "usage: amk weights random --model MODEL --seed N [--dtype f32|f16|bf16] -o FILE\n"
    "       amk weights info FILE [--json]\n";
static const char ABOUT[] =
    "random: write a safetensors file with every tensor of MODEL (a preset or a Hugging\n"
    "  Face config.json) under its Hugging Face name: projections uniform with std 0.02,\n"
    "  norm weights in [0.9, 1.1]. The same model, seed and dtype give identical bytes.\n"
    "  lm_head.weight is omitted when the model ties embeddings. Default dtype bf16.\n"
    "info: validate FILE (offsets, sizes, dtypes) and list its tensors.\n";
static const char EPILOG[] = "exit: 0 ok, 2 bad usage, unreadable or malformed input.\n";

/* The --dtype words: index i names DTYPES[i % 3]. */
static const char *const DTYPE_WORDS[] = {"f32", "f16", "bf16", "F32", "F16", "BF16", NULL};
static const ir_dtype DTYPES[] = {IR_F32, IR_F16, IR_BF16};

static void say_tensors(void *arg, int done, int total)
{
    cmd_progress_say(arg, "%d of %d tensors written", done, total);
}

static int weights_random(int argc, char **argv)
{
    const char *model = NULL, *out = NULL;
    uint64_t seed = 0;
    int dtype = 2;
    const base_option opts[] = {
        BASE_STR("--model", &model, "MODEL", "preset or config.json", .required = true),
        BASE_U64("--seed", &seed, "N", "decimal or 0x hex", .required = true),
        BASE_CHOICE("--dtype", &dtype, "D", DTYPE_WORDS, "f32, f16 or bf16",
         .show_default = true),
        BASE_STR("-o", &out, "FILE", "the safetensors file to write", .required = true),
    };
    const base_cmdline cl = {.prog = "amk weights random", .synopsis = SYNOPSIS, .about = ABOUT,
                             .opts = opts, .n_opts = 4, .epilog = EPILOG};
    int rc = cmd_parse_options(&cl, argc, argv);
    if (rc != CMD_CONTINUE)
        return rc;
    lower_model m;
    ir_error err = {0};
    ir_status s = lower_model_load(model, &m, &err);
    cmd_progress pr;
    cmd_progress_begin(&pr, "amk weights");
    if (s == IR_OK)
        s = refvm_weights_random_progress(&m, seed, DTYPES[dtype % 3], out, say_tensors, &pr,
                                          &err);
    if (s != IR_OK) {
        cmd_print_error("amk weights", &err);
        return cmd_exit_for(s);
    }
    printf("wrote %s: model %s, seed %llu, dtype %s\n", out, m.name, (unsigned long long)seed,
           ir_dtype_name(DTYPES[dtype % 3]));
    return AMK_EXIT_OK;
}

static int weights_info(int argc, char **argv)
{
    const char *path = NULL;
    bool json = false;
    const base_option opts[] = {BASE_FLAG("--json", &json, "one JSON object")};
    const base_cmdline cl = {.prog = "amk weights info", .synopsis = SYNOPSIS, .about = ABOUT,
                             .opts = opts, .n_opts = 1, .pos_name = "FILE", .min_pos = 1,
                             .max_pos = 1, .pos = &path, .epilog = EPILOG};
    int rc = cmd_parse_options(&cl, argc, argv);
    if (rc != CMD_CONTINUE)
        return rc;
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
    const base_cmdline cl = {.prog = "amk weights", .synopsis = SYNOPSIS, .about = ABOUT,
                             .epilog = EPILOG};
    if (argc >= 2 && !strcmp(argv[1], "random"))
        return weights_random(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "info"))
        return weights_info(argc - 1, argv + 1);
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        cmd_print_usage(&cl, stdout);
        return AMK_EXIT_OK;
    }
    return argc < 2 ? cmd_usage_error(&cl, "random or info is required")
                    : cmd_usage_error(&cl, "unknown subcommand '%s'", argv[1]);
}
