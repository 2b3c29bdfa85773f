/*
 * pam_bench: times complete pam_start_confdir -> pam_authenticate -> pam_end
 * cycles in one process, for otpgate's benchmarks against
 * pam_google_authenticator.
 *
 *   pam_bench -c CONFDIR -s SERVICE[,SERVICE...] -u USER [-r RHOST] -n CYCLES
 *             [-a ANSWERS_FILE] [-t START -p STEP] [-P PROCS] [-o OUT]
 *
 *   -s LIST   the PAM service; with -P a comma-separated list, process p
 *             using the (p mod n)-th (several hosts' stacks at once).
 *   -a FILE   one answer per line; cycle i answers line i (mod lines). An
 *             empty or missing file answers nothing (no prompt expected).
 *   -t START  the wall clock both modules see at cycle i is START + i*STEP
 *   -p STEP   (seconds). Without -t the real clock is used.
 *   -P PROCS  fork PROCS processes that run the same cycles at the same
 *             fake times, all at once (lock contention); each cycle's
 *             answer is then the same in every process.
 *   -o OUT    per-process result lines go to OUT.<pid> (with -P)
 *
 * The fake clock: this executable defines time(), gettimeofday() and
 * clock_gettime(CLOCK_REALTIME) and exports them (-rdynamic), so the PAM
 * modules that libpam dlopen()s resolve those calls here, whatever they are
 * written in (otpgate reads SystemTime, which is clock_gettime; google-
 * authenticator calls time()). Monotonic clocks pass through to the kernel.
 *
 * Output (stdout), one line:
 *   cycles=N ok=N fail=N total_s=F per_s=F p50_ms=F p99_ms=F max_ms=F
 *   accepted=i,j,...   (cycles that returned PAM_SUCCESS; with -P only)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <security/pam_appl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long fake_now = -1; /* seconds; -1 = real clock */

static int real_clock(clockid_t id, struct timespec *ts) {
    return (int)syscall(SYS_clock_gettime, id, ts);
}

int clock_gettime(clockid_t id, struct timespec *ts) {
    if (fake_now >= 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) {
        ts->tv_sec = (time_t)fake_now;
        ts->tv_nsec = 0;
        return 0;
    }
    return real_clock(id, ts);
}

time_t time(time_t *out) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (out)
        *out = ts.tv_sec;
    return ts.tv_sec;
}

int gettimeofday(struct timeval *tv, void *tz) {
    (void)tz;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    tv->tv_sec = ts.tv_sec;
    tv->tv_usec = (suseconds_t)(ts.tv_nsec / 1000);
    return 0;
}

static double mono_ms(void) {
    struct timespec ts;
    real_clock(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static char **answers;
static size_t n_answers;
static const char *current_answer;

static void load_answers(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) {
        perror(path);
        exit(2);
    }
    char line[256];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        answers = realloc(answers, (n_answers + 1) * sizeof *answers);
        answers[n_answers++] = strdup(line);
    }
    fclose(f);
}

/* Answers every prompt with the cycle's answer; messages are ignored. */
static int converse(int n, const struct pam_message **msg,
                    struct pam_response **resp, void *appdata) {
    (void)appdata;
    struct pam_response *r = calloc((size_t)n, sizeof *r);
    if (!r)
        return PAM_BUF_ERR;
    for (int i = 0; i < n; i++) {
        int style = msg[i]->msg_style;
        if (style == PAM_PROMPT_ECHO_OFF || style == PAM_PROMPT_ECHO_ON) {
            if (!current_answer) {
                free(r);
                return PAM_CONV_ERR;
            }
            r[i].resp = strdup(current_answer);
        }
    }
    *resp = r;
    return PAM_SUCCESS;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

struct opts {
    const char *confdir, *service, *user, *rhost, *out;
    long cycles, procs;
    long long start, step;
};

/* -s's list, split at commas; service[p % n_services] runs process p. */
static char *services[64];
static long n_services;

static void split_services(char *list) {
    for (char *s = strtok(list, ","); s; s = strtok(NULL, ",")) {
        if (n_services == (long)(sizeof services / sizeof *services)) {
            fprintf(stderr, "pam_bench: too many services\n");
            exit(2);
        }
        services[n_services++] = s;
    }
}

/* Runs the cycles; returns the number of successes. */
static long run(const struct opts *o, FILE *report) {
    double *lat = calloc((size_t)o->cycles, sizeof *lat);
    long ok = 0;
    struct pam_conv conv = {converse, NULL};
    double t0 = mono_ms();
    if (report)
        fputs("accepted=", report);
    for (long i = 0; i < o->cycles; i++) {
        if (o->start >= 0)
            fake_now = o->start + i * o->step;
        current_answer = n_answers ? answers[(size_t)i % n_answers] : NULL;
        double c0 = mono_ms();
        pam_handle_t *h = NULL;
        int rc = pam_start_confdir(o->service, o->user, &conv, o->confdir, &h);
        if (rc == PAM_SUCCESS && o->rhost)
            pam_set_item(h, PAM_RHOST, o->rhost);
        if (rc == PAM_SUCCESS)
            rc = pam_authenticate(h, 0);
        if (h)
            pam_end(h, rc);
        lat[i] = mono_ms() - c0;
        if (rc == PAM_SUCCESS) {
            ok++;
            if (report)
                fprintf(report, "%ld,", i);
        }
    }
    double total = (mono_ms() - t0) / 1e3;
    if (report)
        fputc('\n', report);
    qsort(lat, (size_t)o->cycles, sizeof *lat, cmp_double);
    long n = o->cycles;
    printf("cycles=%ld ok=%ld fail=%ld total_s=%.4f per_s=%.1f p50_ms=%.3f "
           "p99_ms=%.3f max_ms=%.3f\n",
           n, ok, n - ok, total, (double)n / total, lat[n / 2],
           lat[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1], lat[n - 1]);
    free(lat);
    return ok;
}

int main(int argc, char **argv) {
    struct opts o = {0};
    o.cycles = 100;
    o.procs = 1;
    o.start = -1;
    o.step = 30;
    int c;
    while ((c = getopt(argc, argv, "c:s:u:r:n:a:t:p:P:o:")) != -1) {
        switch (c) {
        case 'c': o.confdir = optarg; break;
        case 's': split_services(optarg); break;
        case 'u': o.user = optarg; break;
        case 'r': o.rhost = optarg; break;
        case 'n': o.cycles = atol(optarg); break;
        case 'a': load_answers(optarg); break;
        case 't': o.start = atoll(optarg); break;
        case 'p': o.step = atoll(optarg); break;
        case 'P': o.procs = atol(optarg); break;
        case 'o': o.out = optarg; break;
        default: return 2;
        }
    }
    o.service = n_services ? services[0] : NULL;
    if (!o.confdir || !o.service || !o.user || o.cycles <= 0) {
        fprintf(stderr, "usage: pam_bench -c CONFDIR -s SERVICE -u USER -n N ...\n");
        return 2;
    }
    if (o.procs <= 1) {
        if (n_services > 1) {
            fprintf(stderr, "pam_bench: several services need -P\n");
            return 2;
        }
        return run(&o, NULL) >= 0 ? 0 : 1;
    }

    /* Contention: every process runs the same cycles; a pipe start signal
     * makes them begin together. Each writes its stats and accepted cycles
     * to OUT.<n>. */
    int go[2];
    if (pipe(go) != 0)
        return 2;
    for (long p = 0; p < o.procs; p++) {
        pid_t pid = fork();
        if (pid == 0) {
            o.service = services[p % n_services];
            close(go[1]);
            char b;
            (void)!read(go[0], &b, 1);
            char path[4096];
            snprintf(path, sizeof path, "%s.%ld", o.out ? o.out : "pam_bench", p);
            if (!freopen(path, "w", stdout))
                _exit(2);
            FILE *rep = fopen(strcat(path, ".accepted"), "w");
            run(&o, rep);
            fclose(rep);
            fflush(stdout);
            _exit(0);
        }
    }
    close(go[0]);
    double t0 = mono_ms();
    close(go[1]); /* EOF releases every child at once */
    int status, bad = 0;
    while (wait(&status) > 0)
        bad |= !WIFEXITED(status) || WEXITSTATUS(status) != 0;
    printf("wall_s=%.4f\n", (mono_ms() - t0) / 1e3);
    return bad;
}
