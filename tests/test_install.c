/*
 * test_install.c - `make install PREFIX=...` gives a launcher what it needs: the binaries, the
 * shared library, the public headers and amk.pc, so that a tiny launcher built with
 * `pkg-config --cflags --libs amk` gates a program through verify_program(); and man pages
 * generated from --help.
 */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/capture.h"

#define sh run_shell

Test(install, a_pkg_config_launcher_gates_programs_through_the_installed_library, .timeout = 900)
{
    if (getenv("AMK_SANITIZED"))
        cr_skip_test("the sanitizer build does not install (make test covers it)");
    char d[64];
    snprintf(d, sizeof d, "/tmp/amk-install-%d", (int)getpid());
    sh("rm -rf %s", d);
    int rc = sh("make -s install PREFIX=%s >%s.log 2>&1", d, d);
    cr_assert_eq(rc, 0, "make install failed (exit %d); see %s.log", rc, d);
    const char *want[] = {"bin/amk", "bin/amk-verify", "lib/libamk.a", "lib/libamk.so",
                          "lib/pkgconfig/amk.pc", "include/amk/ir/amk_ir.h",
                          "include/amk/base/base.h", "include/amk/verify/verify.h",
                          "share/man/man1/amk.1", "share/man/man1/amk-verify.1"};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        cr_assert_eq(sh("test -s %s/%s", d, want[i]), 0, "%s not installed", want[i]);
    /* the man pages are the --help texts */
    cr_assert_eq(sh("grep -q '^.TH AMK-VERIFY 1' %s/share/man/man1/amk-verify.1 && "
                    "grep -q -- '--deadline-s' %s/share/man/man1/amk-verify.1 && "
                    "grep -q '^.SH \"AMK LOWER\"' %s/share/man/man1/amk.1", d, d, d), 0);

    rc = sh("export PKG_CONFIG_PATH=%s/lib/pkgconfig; cc -std=c11 -Wall -Werror "
            "$(pkg-config --cflags amk) tests/install/launcher.c -o %s/launcher "
            "$(pkg-config --libs amk) 2>%s/cc.log", d, d, d);
    cr_assert_eq(rc, 0, "the launcher does not build against the installed tree (see %s/cc.log)", d);
    /* it runs on the installed shared library, not on anything in the checkout */
    cr_assert_eq(sh("LD_LIBRARY_PATH=%s/lib ldd %s/launcher | grep -q '%s/lib/libamk.so'", d, d, d),
                 0);

    cr_assert_eq(sh("%s/bin/amk lower --model toy --target h100 -o %s/toy.json 2>/dev/null", d, d),
                 0);
    cr_assert_eq(sh("%s/bin/amk mutate %s/toy.json --kind cross_queue_deadlock --seed 1 "
                    "-o %s/dl.json 2>/dev/null", d, d, d), 0);
    cr_assert_eq(sh("LD_LIBRARY_PATH=%s/lib %s/launcher %s/toy.json >%s/out.txt", d, d, d, d), 0);
    cr_assert_eq(sh("grep -qx PROVED %s/out.txt && grep -q 'gate open' %s/out.txt", d, d), 0);
    cr_assert_eq(sh("LD_LIBRARY_PATH=%s/lib %s/launcher %s/dl.json >%s/out.txt", d, d, d, d), 1);
    cr_assert_eq(sh("grep -qx 'REFUTED deadlock' %s/out.txt && ! grep -q 'gate open' %s/out.txt",
                    d, d), 0);
    cr_assert_eq(sh("LD_LIBRARY_PATH=%s/lib %s/launcher /nonexistent.json 2>/dev/null", d, d), 2);
    sh("rm -rf %s %s.log", d, d);
}
