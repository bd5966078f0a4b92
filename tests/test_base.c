/*
 * test_base.c - the base layer: strict parsers refuse what atoi would take, the string builder
 * keeps long and many appends intact, the whole-file reader refuses non-regular and oversized
 * files before allocating and reads gzip transparently.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "base/base.h"

Test(base_parse, i64_takes_whole_decimal_strings_in_range_only)
{
    int64_t v = 7;
    cr_assert(base_parse_i64("42", 0, 100, &v));
    cr_assert_eq(v, 42);
    cr_assert(base_parse_i64("-5", -10, 10, &v));
    cr_assert_eq(v, -5);
    const char *bad[] = {"", " 1", "1 ", "12x", "0x10", "101", "-11", "99999999999999999999", "1e3"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        v = 7;
        cr_assert(!base_parse_i64(bad[i], -10, 100, &v), "accepted \"%s\"", bad[i]);
        cr_assert_eq(v, 7, "\"%s\" changed the output", bad[i]);
    }
    int k = 0;
    cr_assert(!base_parse_int("3000000000", 0, 2147483647, &k));
    cr_assert(base_parse_int("2147483647", 0, 2147483647, &k));
    cr_assert_eq(k, 2147483647);
}

Test(base_parse, u64_takes_decimal_and_hex_seeds_without_sign_or_overflow)
{
    uint64_t v = 0;
    cr_assert(base_parse_u64("18446744073709551615", &v));
    cr_assert_eq(v, UINT64_MAX);
    cr_assert(base_parse_u64("0x2a", &v));
    cr_assert_eq(v, 42);
    cr_assert(!base_parse_u64("18446744073709551616", &v));
    cr_assert(!base_parse_u64("-1", &v));
    cr_assert(!base_parse_u64("0x", &v));
    cr_assert(!base_parse_u64("12 ", &v));
}

Test(base_parse, double_refuses_non_finite_and_out_of_range)
{
    double d = 0;
    cr_assert(base_parse_double("0.25", 0, 1, &d));
    cr_assert_float_eq(d, 0.25, 0);
    cr_assert(!base_parse_double("inf", 0, 1e308, &d));
    cr_assert(!base_parse_double("nan", -1, 1, &d));
    cr_assert(!base_parse_double("1e400", 0, 1e308, &d));
    cr_assert(!base_parse_double("2", 0, 1, &d));
    cr_assert(!base_parse_double("0.5x", 0, 1, &d));
}

Test(base_parse, i32_list_reads_every_item_and_refuses_gaps_and_junk)
{
    int n = 0;
    int32_t *v = base_parse_i32_list("1,22,333", 0, 1000, &n);
    cr_assert_not_null(v);
    cr_assert_eq(n, 3);
    cr_assert_eq(v[0], 1);
    cr_assert_eq(v[1], 22);
    cr_assert_eq(v[2], 333);
    free(v);
    const char *bad[] = {"", ",", "1,", ",1", "1,,2", "1, 2", "1,x", "1,1001", "-1", "4294967296"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        cr_assert_null(base_parse_i32_list(bad[i], 0, 1000, &n), "accepted \"%s\"", bad[i]);
}

Test(base_sb, keeps_many_and_long_appends_in_order)
{
    base_sb b = {0};
    for (int i = 0; i < 10000; i++)
        base_sb_fmt(&b, "%d,", i);
    char big[5000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    base_sb_fmt(&b, "[%s]", big);
    base_sb_put(&b, "xyz", 2);
    size_t len = 0;
    char *s = base_sb_take(&b, &len);
    cr_assert_not_null(s);
    cr_assert_eq(len, strlen(s));
    cr_assert(strncmp(s, "0,1,2,", 6) == 0);
    cr_assert(strstr(s, "9999,[aaaa") != NULL);
    cr_assert_eq(s[len - 3], ']');
    cr_assert_str_eq(s + len - 2, "xy");
    cr_assert_null(b.s);
    free(s);
    base_sb empty = {0};
    s = base_sb_take(&empty, &len);
    cr_assert_str_eq(s, "");
    cr_assert_eq(len, 0);
    free(s);
}

static char *tmp_path(const char *name)
{
    static char p[256];
    snprintf(p, sizeof p, "/tmp/amk_test_base_%d_%s", (int)getpid(), name);
    return p;
}

Test(base_file, reads_plain_and_gzip_and_refuses_what_is_not_a_regular_file)
{
    char *text = NULL, why[256];
    size_t len = 0;
    const char *p = tmp_path("plain");
    FILE *f = fopen(p, "w");
    fputs("{\"a\":1}", f);
    fclose(f);
    cr_assert_eq(base_read_file(p, 100, true, &text, &len, why, sizeof why), BASE_FILE_OK);
    cr_assert_str_eq(text, "{\"a\":1}");
    cr_assert_eq(len, 7);
    free(text);
    /* over the cap by size: refused before reading */
    cr_assert_eq(base_read_file(p, 6, true, &text, &len, why, sizeof why), BASE_FILE_TOO_LARGE);
    cr_assert_null(text);
    cr_assert(strstr(why, "larger than 6 bytes") != NULL, "%s", why);
    unlink(p);

    const char *g = tmp_path("gz");
    gzFile z = gzopen(g, "wb");
    for (int i = 0; i < 1000; i++)
        gzputs(z, "0123456789");
    gzclose(z);
    cr_assert_eq(base_read_file(g, 20000, true, &text, &len, why, sizeof why), BASE_FILE_OK);
    cr_assert_eq(len, 10000);
    cr_assert(strncmp(text + 9990, "0123456789", 10) == 0);
    free(text);
    /* a small compressed file may not expand past the cap */
    cr_assert_eq(base_read_file(g, 5000, true, &text, &len, why, sizeof why), BASE_FILE_TOO_LARGE);
    /* without gunzip the bytes come as they are (the gzip magic first) */
    cr_assert_eq(base_read_file(g, 20000, false, &text, &len, why, sizeof why), BASE_FILE_OK);
    cr_assert_eq((unsigned char)text[0], 0x1f);
    cr_assert_eq((unsigned char)text[1], 0x8b);
    free(text);
    unlink(g);

    cr_assert_eq(base_read_file("/tmp", 100, true, &text, &len, why, sizeof why),
                 BASE_FILE_NOT_REGULAR);
    cr_assert(strstr(why, "directory") != NULL);
    cr_assert_eq(base_read_file("/dev/zero", 100, true, &text, &len, why, sizeof why),
                 BASE_FILE_NOT_REGULAR);
    const char *fifo = tmp_path("fifo");
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    cr_assert_eq(base_read_file(fifo, 100, true, &text, &len, why, sizeof why),
                 BASE_FILE_NOT_REGULAR);   /* and it did not block */
    unlink(fifo);
    cr_assert_eq(base_read_file("/nonexistent/x", 100, true, &text, &len, why, sizeof why),
                 BASE_FILE_CANNOT_OPEN);
    cr_assert(strstr(why, "No such file") != NULL, "%s", why);
}

Test(base_clock, is_monotonic_and_comparators_order)
{
    double t0 = base_now_s(), t1 = base_now_s();
    cr_assert(t1 >= t0);
    double d[] = {3, -1, 2.5, 0};
    qsort(d, 4, sizeof *d, base_cmp_double);
    cr_assert(d[0] == -1 && d[1] == 0 && d[2] == 2.5 && d[3] == 3);
    int64_t v[] = {INT64_MAX, INT64_MIN, 0};
    qsort(v, 3, sizeof *v, base_cmp_i64);
    cr_assert(v[0] == INT64_MIN && v[1] == 0 && v[2] == INT64_MAX);
}
