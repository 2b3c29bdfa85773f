/* What a fresh process (sshd forks + execs per connection) pays to load
 * pam_otpgate.so: fork + exec this program N times; the child dlopen()s the
 * module (RTLD_NOW, as libpam does) and exits. The same loop without the
 * dlopen is the baseline; the difference of the medians is the load cost.
 * The child links libpam, as sshd does, so only the module's own load
 * (its file, its libraries, its relocations, its constructors) is counted.
 * Usage: dlopen N MODULE.so            (parent: prints medians in µs)
 *        dlopen --child MODULE.so|-    (child: loads, or not with "-") */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <security/pam_appl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double inner_us; /* the child's own dlopen() time, last run */

static double run_once(const char *self, const char *module) {
    int fd[2];
    if (pipe(fd) != 0) exit(1);
    double t = now_us();
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        execl(self, self, "--child", module, (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    char buf[64] = "0";
    ssize_t got = read(fd[0], buf, sizeof buf - 1);
    buf[got > 0 ? got : 1] = 0;
    close(fd[0]);
    inner_us = atof(buf);
    int st;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "child failed for %s\n", module);
        exit(1);
    }
    return now_us() - t;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--child") == 0) {
        /* Keep libpam linked (as in sshd): reference one symbol. */
        volatile void *keep = (void *)pam_strerror;
        (void)keep;
        if (strcmp(argv[2], "-") == 0) return 0;
        double t = now_us();
        void *h = dlopen(argv[2], RTLD_NOW);
        if (!h) { fprintf(stderr, "%s\n", dlerror()); return 1; }
        /* The dlopen() call alone, timed inside the child: far less noisy
         * than the fork + exec round trip on a shared machine. */
        printf("%.1f\n", now_us() - t);
        return dlsym(h, "pam_sm_authenticate") ? 0 : 1;
    }
    if (argc != 3) { fprintf(stderr, "usage: %s N MODULE.so\n", argv[0]); return 2; }
    int n = atoi(argv[1]);
    double *base = calloc(n, sizeof *base), *load = calloc(n, sizeof *load);
    double *inner = calloc(n, sizeof *inner);
    for (int i = 0; i < n; i++) { /* alternate, so drift hits both */
        base[i] = run_once("/proc/self/exe", "-");
        load[i] = run_once("/proc/self/exe", argv[2]);
        inner[i] = inner_us;
    }
    qsort(inner, n, sizeof *inner, cmp);
    qsort(base, n, sizeof *base, cmp);
    qsort(load, n, sizeof *load, cmp);
    printf("n=%d exec median %.0f us, exec+dlopen median %.0f us (difference %.0f us); "
           "dlopen() call median %.0f us\n",
           n, base[n / 2], load[n / 2], load[n / 2] - base[n / 2], inner[n / 2]);
    return 0;
}
