/*
 * ir_out.c - writing an output file without losing what was there: a regular file (or nothing)
 * is replaced atomically through a temporary file beside it; anything else (a device such as
 * /dev/null, a FIFO) is written through as it is; a symlink is followed, so the link stays and
 * its target is replaced; "-" is standard output.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ir/amk_ir.h"

ir_status ir_out_open(ir_out *o, const char *path, ir_error *err)
{
    memset(o, 0, sizeof *o);
    if (!strcmp(path, "-")) {
        o->f = stdout;
        o->is_stdout = true;
        return IR_OK;
    }
    /* A symlink is followed: its target is what gets replaced. */
    char real[PATH_MAX];
    struct stat st;
    const char *target = path;
    bool dangling = false;
    if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
        if (realpath(path, real))
            target = real;
        else
            dangling = true;      /* written through: the link's target is created */
    }
    bool exists = stat(target, &st) == 0;
    o->path = strdup(target);
    if (!o->path)
        return ir_fail(err, IR_ERR_NOMEM, path, "out of memory");
    if (dangling || (exists && !S_ISREG(st.st_mode))) {
        if (S_ISDIR(st.st_mode)) {
            free(o->path);
            o->path = NULL;
            return ir_fail(err, IR_ERR_IO, path, "is a directory");
        }
        o->f = fopen(target, "wb");    /* a device or FIFO: written through, never replaced */
        if (!o->f) {
            ir_status s = ir_fail(err, IR_ERR_IO, path, "cannot write: %s", strerror(errno));
            free(o->path);
            o->path = NULL;
            return s;
        }
        return IR_OK;
    }
    size_t n = strlen(target);
    o->tmp = malloc(n + 16);
    if (!o->tmp) {
        free(o->path);
        o->path = NULL;
        return ir_fail(err, IR_ERR_NOMEM, path, "out of memory");
    }
    snprintf(o->tmp, n + 16, "%s.tmp.XXXXXX", target);
    int fd = mkstemp(o->tmp);
    if (fd < 0) {
        ir_status s = ir_fail(err, IR_ERR_IO, path, "cannot write beside it: %s", strerror(errno));
        ir_out_abort(o);
        return s;
    }
    /* the replacement keeps the old file's mode, or gets the usual one for a new file */
    mode_t mode;
    if (exists) {
        mode = st.st_mode & 07777;
    } else {
        mode_t mask = umask(0);
        umask(mask);
        mode = 0666 & ~mask;
    }
    if (fchmod(fd, mode) != 0 || !(o->f = fdopen(fd, "wb"))) {
        ir_status s = ir_fail(err, IR_ERR_IO, path, "cannot write: %s", strerror(errno));
        close(fd);
        ir_out_abort(o);
        return s;
    }
    return IR_OK;
}

ir_status ir_out_commit(ir_out *o, ir_error *err)
{
    ir_status s = IR_OK;
    if (o->is_stdout) {
        if (fflush(stdout) != 0 || ferror(stdout))
            s = ir_fail(err, IR_ERR_IO, "-", "cannot write to standard output");
        memset(o, 0, sizeof *o);
        return s;
    }
    bool ok = !ferror(o->f);
    ok = fclose(o->f) == 0 && ok;
    o->f = NULL;
    if (!ok || (o->tmp && rename(o->tmp, o->path) != 0))
        s = ir_fail(err, IR_ERR_IO, o->path, "write failed: %s", strerror(errno));
    ir_out_abort(o);
    return s;
}

ir_status ir_out_write(const char *path, const void *data, size_t n, ir_error *err)
{
    ir_out o;
    ir_status s = ir_out_open(&o, path, err);
    if (s != IR_OK)
        return s;
    if (fwrite(data, 1, n, o.f) != n) {
        s = ir_fail(err, IR_ERR_IO, path, "write failed: %s", strerror(errno));
        ir_out_abort(&o);
        return s;
    }
    return ir_out_commit(&o, err);
}

void ir_out_abort(ir_out *o)
{
    if (o->f && !o->is_stdout)
        fclose(o->f);
    if (o->tmp)
        unlink(o->tmp);          /* after a commit the name is gone already: harmless */
    free(o->tmp);
    free(o->path);
    memset(o, 0, sizeof *o);
}
