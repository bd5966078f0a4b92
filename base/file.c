/*
 * file.c - the one whole-file reader: regular files only, one size cap checked before any
 * allocation, gzip read transparently where the caller allows it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "base/base.h"

/* Say why in the caller's buffer and answer st. */
#define said(why, why_len, st, ...) (base_say(why, why_len, __VA_ARGS__), (st))

/* Open path for reading if it is a regular file no larger than max_bytes; -1 otherwise. */
static int open_regular(const char *path, size_t max_bytes, base_file_status *st, char *why,
                        size_t why_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);   /* a FIFO must not block here */
    if (fd < 0) {
        *st = said(why, why_len, BASE_FILE_CANNOT_OPEN, "cannot open: %s", strerror(errno));
        return -1;
    }
    struct stat sb = {0};
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        *st = said(why, why_len, BASE_FILE_NOT_REGULAR, "not a regular file%s",
                   S_ISDIR(sb.st_mode) ? " (a directory)" : "");
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    if ((uint64_t)sb.st_size > (uint64_t)max_bytes) {
        close(fd);
        *st = said(why, why_len, BASE_FILE_TOO_LARGE, "larger than %zu bytes (%lld)", max_bytes,
                   (long long)sb.st_size);
        return -1;
    }
    *st = BASE_FILE_OK;
    return fd;
}

/* Grow *buf so that it holds at least n + 1 bytes more room, never past max_bytes + 2 (the
 * extra byte shows that the cap was exceeded). */
static bool grow(char **buf, size_t n, size_t *cap, size_t max_bytes)
{
    if (n + 1 < *cap)
        return true;
    size_t nc = *cap ? 2 * *cap : 65536;
    if (nc > max_bytes + 2)
        nc = max_bytes + 2;
    char *nb = realloc(*buf, nc);
    if (!nb)
        return false;
    *buf = nb;
    *cap = nc;
    return true;
}

base_file_status base_read_file(const char *path, size_t max_bytes, bool gunzip, char **text,
                                size_t *len, char *why, size_t why_len)
{
    *text = NULL;
    *len = 0;
    if (why && why_len)
        why[0] = 0;
    base_file_status st;
    int fd = open_regular(path, max_bytes, &st, why, why_len);
    if (fd < 0)
        return st;
    gzFile f = NULL;
    if (gunzip && !(f = gzdopen(fd, "rb"))) {
        close(fd);
        return said(why, why_len, BASE_FILE_NO_MEMORY, "out of memory");
    }
    char *buf = NULL;
    size_t n = 0, cap = 0;
    st = BASE_FILE_OK;
    for (;;) {
        if (n > max_bytes) {
            st = said(why, why_len, BASE_FILE_TOO_LARGE, "larger than %zu bytes", max_bytes);
            break;
        }
        if (!grow(&buf, n, &cap, max_bytes)) {
            st = said(why, why_len, BASE_FILE_NO_MEMORY, "out of memory");
            break;
        }
        size_t want = cap - n - 1 < (1u << 30) ? cap - n - 1 : (1u << 30);
        int k = gunzip ? gzread(f, buf + n, (unsigned)want) : (int)read(fd, buf + n, want);
        if (k < 0) {
            int zerr = Z_ERRNO;
            const char *msg = gunzip ? gzerror(f, &zerr) : strerror(errno);
            st = said(why, why_len, BASE_FILE_READ_ERROR, "read error: %s",
                      gunzip && zerr == Z_ERRNO ? "a directory or unreadable file" : msg);
            break;
        }
        n += (size_t)k;
        if (k == 0)
            break;
    }
    if (f)
        gzclose(f);   /* closes fd too */
    else
        close(fd);
    if (st != BASE_FILE_OK) {
        free(buf);
        return st;
    }
    buf[n] = 0;
    *text = buf;
    *len = n;
    return BASE_FILE_OK;
}
