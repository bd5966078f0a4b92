/*
 * capture.h - a test helper shared by the suites that drive `amk` subcommands in-process: run
 * one with its stdout captured, and run a shell command. Header-only (each suite is one translation unit).
 */
#ifndef AMK_TESTS_CAPTURE_H
#define AMK_TESTS_CAPTURE_H

#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

/* Run fn(n, args) with stdout captured into *out (malloc'd; NULL: dropped); its exit code. */
static inline int run_captured(int (*fn)(int, char **), const char **args, int n, char **out)
{
    char tmpl[] = "/tmp/amk-test-capture-XXXXXX";
    int fd = mkstemp(tmpl);
    cr_assert(fd >= 0);
    cr_assert(n < 40, "at most 39 arguments");
    fflush(stdout);
    int saved = dup(1);
    dup2(fd, 1);
    char *argv[40];
    for (int i = 0; i < n; i++)
        argv[i] = (char *)args[i];
    argv[n] = NULL;
    int rc = fn(n, argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    off_t len = lseek(fd, 0, SEEK_END);
    lseek(fd, 0, SEEK_SET);
    char *s = calloc((size_t)len + 1, 1);
    cr_assert_not_null(s);
    cr_assert_eq(read(fd, s, (size_t)len), (ssize_t)len);
    close(fd);
    unlink(tmpl);
    if (out)
        *out = s;
    else
        free(s);
    return rc;
}

/* Run a shell command built with printf; its exit status (-1 when it did not exit normally). */
static inline int run_shell(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline int run_shell(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    cr_assert(k > 0 && (size_t)k < sizeof cmd);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#endif /* AMK_TESTS_CAPTURE_H */
