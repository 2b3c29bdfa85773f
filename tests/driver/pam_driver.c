/*
 * pam_driver: runs one PAM operation through the real libpam with a scripted
 * conversation, for otpgate's end-to-end tests and benchmarks.
 *
 *   pam_driver [-c CONFDIR] [-r RHOST] [-t TTY] [-s] [-o OP] [-n COUNT]
 *              [-a ANSWER]... [-f FILE]... SERVICE USER
 *
 *   -c CONFDIR  read the service from CONFDIR (pam_start_confdir), not /etc/pam.d
 *   -r RHOST    set PAM_RHOST;  -t TTY  set PAM_TTY
 *   -e NAME=VALUE  put NAME in the PAM environment (pam_putenv), as sshd
 *               puts SSH_AUTH_INFO_0 there; -F NAME=FILE: the value is the
 *               contents of FILE (up to 2 MiB)
 *   -s          pass PAM_SILENT
 *   -o OP       authenticate (default), setcred, acct_mgmt, open_session,
 *               close_session, chauthtok; given several times, the operations
 *               run in order on one handle (as an application that keeps its
 *               handle does), each followed by its ENV and RESULT lines
 *   -n COUNT    run the whole thing COUNT times (benchmarks; answers restart)
 *   -a ANSWER   the next answer to a prompt (in order)
 *   -f FILE     the next answer is the contents of FILE (up to 2 MiB)
 *   -q          quiet: print only the RESULT lines
 *
 *   pam_driver -L MODULE.so SYMBOL...
 *
 *   dlopen()s MODULE.so (RTLD_NOW, as libpam does) and prints "FOUND <sym>"
 *   or "MISSING <sym>" for each SYMBOL.
 *
 * Output, one line each: "PROMPT_ECHO_OFF <text>", "PROMPT_ECHO_ON <text>",
 * "ERROR_MSG <text>", "TEXT_INFO <text>", "NO_ANSWER" (script exhausted:
 * the conversation fails), "ENV <name=value>" (the PAM environment after
 * the operation), and last "RESULT <code> <NAME>". Exit status 0 when PAM
 * was run, 2 on a usage or setup error.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <security/pam_appl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_ANSWERS 64
#define MAX_FILE (2 * 1024 * 1024)

static char *answers[MAX_ANSWERS];
static int n_answers;
static int next_answer;
static int quiet;

static const char *const names[] = {
    "PAM_SUCCESS", "PAM_OPEN_ERR", "PAM_SYMBOL_ERR", "PAM_SERVICE_ERR",
    "PAM_SYSTEM_ERR", "PAM_BUF_ERR", "PAM_PERM_DENIED", "PAM_AUTH_ERR",
    "PAM_CRED_INSUFFICIENT", "PAM_AUTHINFO_UNAVAIL", "PAM_USER_UNKNOWN",
    "PAM_MAXTRIES", "PAM_NEW_AUTHTOK_REQD", "PAM_ACCT_EXPIRED",
    "PAM_SESSION_ERR", "PAM_CRED_UNAVAIL", "PAM_CRED_EXPIRED", "PAM_CRED_ERR",
    "PAM_NO_MODULE_DATA", "PAM_CONV_ERR", "PAM_AUTHTOK_ERR",
    "PAM_AUTHTOK_RECOVERY_ERR", "PAM_AUTHTOK_LOCK_BUSY",
    "PAM_AUTHTOK_DISABLE_AGING", "PAM_TRY_AGAIN", "PAM_IGNORE", "PAM_ABORT",
    "PAM_AUTHTOK_EXPIRED", "PAM_MODULE_UNKNOWN", "PAM_BAD_ITEM",
    "PAM_CONV_AGAIN", "PAM_INCOMPLETE",
};

static void show(const char *kind, const char *text) {
    if (quiet)
        return;
    /* One line per message: newlines inside a message become "\n". */
    printf("%s ", kind);
    for (const char *p = text ? text : ""; *p; p++) {
        if (*p == '\n')
            fputs("\\n", stdout);
        else
            putchar(*p);
    }
    putchar('\n');
}

static int converse(int n, const struct pam_message **msg,
                    struct pam_response **resp, void *appdata) {
    (void)appdata;
    if (n <= 0 || n > PAM_MAX_NUM_MSG)
        return PAM_CONV_ERR;
    struct pam_response *r = calloc((size_t)n, sizeof *r);
    if (!r)
        return PAM_BUF_ERR;
    for (int i = 0; i < n; i++) {
        int style = msg[i]->msg_style;
        if (style == PAM_PROMPT_ECHO_OFF || style == PAM_PROMPT_ECHO_ON) {
            show(style == PAM_PROMPT_ECHO_OFF ? "PROMPT_ECHO_OFF" : "PROMPT_ECHO_ON",
                 msg[i]->msg);
            if (next_answer >= n_answers) {
                show("NO_ANSWER", "");
                for (int j = 0; j < i; j++)
                    free(r[j].resp);
                free(r);
                return PAM_CONV_ERR;
            }
            r[i].resp = strdup(answers[next_answer++]);
            if (!r[i].resp) {
                for (int j = 0; j < i; j++)
                    free(r[j].resp);
                free(r);
                return PAM_BUF_ERR;
            }
        } else if (style == PAM_ERROR_MSG) {
            show("ERROR_MSG", msg[i]->msg);
        } else if (style == PAM_TEXT_INFO) {
            show("TEXT_INFO", msg[i]->msg);
        } else {
            free(r);
            return PAM_CONV_ERR;
        }
    }
    *resp = r;
    return PAM_SUCCESS;
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(MAX_FILE + 1);
    if (!buf) {
        fclose(f);
        return NULL;
    }
    size_t n = fread(buf, 1, MAX_FILE, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static int usage(void) {
    fprintf(stderr, "usage: pam_driver [-c CONFDIR] [-r RHOST] [-t TTY] [-s] [-q] "
                    "[-e NAME=VALUE]... [-F NAME=FILE]... "
                    "[-o OP] [-n COUNT] [-a ANSWER]... [-f FILE]... SERVICE USER\n");
    return 2;
}

static int check_symbols(int argc, char **argv) {
    void *so = dlopen(argv[2], RTLD_NOW | RTLD_LOCAL);
    if (!so) {
        fprintf(stderr, "pam_driver: dlopen: %s\n", dlerror());
        return 2;
    }
    for (int i = 3; i < argc; i++)
        printf("%s %s\n", dlsym(so, argv[i]) ? "FOUND" : "MISSING", argv[i]);
    dlclose(so);
    return 0;
}

/* One PAM operation on `h`; -1 for an unknown name. */
static int run_op(pam_handle_t *h, const char *op, int flags) {
    if (!strcmp(op, "authenticate"))
        return pam_authenticate(h, flags);
    if (!strcmp(op, "setcred"))
        return pam_setcred(h, flags | PAM_ESTABLISH_CRED);
    if (!strcmp(op, "acct_mgmt"))
        return pam_acct_mgmt(h, flags);
    if (!strcmp(op, "open_session"))
        return pam_open_session(h, flags);
    if (!strcmp(op, "close_session"))
        return pam_close_session(h, flags);
    if (!strcmp(op, "chauthtok"))
        return pam_chauthtok(h, flags);
    return -1;
}

/* The PAM environment, then the RESULT line. */
static void print_result(pam_handle_t *h, int rc) {
    char **env = pam_getenvlist(h);
    if (env) {
        for (char **e = env; *e; e++) {
            show("ENV", *e);
            free(*e);
        }
        free(env);
    }
    const char *name = rc >= 0 && rc < (int)(sizeof names / sizeof *names)
                           ? names[rc] : "UNKNOWN";
    printf("RESULT %d %s\n", rc, name);
    fflush(stdout);
}

int main(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "-L"))
        return check_symbols(argc, argv);
    const char *confdir = NULL, *rhost = NULL, *tty = NULL;
    char *envs[MAX_ANSWERS];
    int n_envs = 0;
    const char *ops[MAX_ANSWERS] = {"authenticate"};
    int flags = 0, count = 1, n_ops = 0, c;
    while ((c = getopt(argc, argv, "c:r:t:e:F:so:n:a:f:q")) != -1) {
        switch (c) {
        case 'c': confdir = optarg; break;
        case 'r': rhost = optarg; break;
        case 't': tty = optarg; break;
        case 's': flags |= PAM_SILENT; break;
        case 'o':
            if (n_ops >= MAX_ANSWERS)
                return usage();
            ops[n_ops++] = optarg;
            break;
        case 'n': count = atoi(optarg); break;
        case 'e':
        case 'F': {
            char *eq = strchr(optarg, '=');
            if (n_envs >= MAX_ANSWERS || !eq)
                return usage();
            if (c == 'e') {
                envs[n_envs++] = optarg;
                break;
            }
            char *value = read_file(eq + 1);
            size_t name_len = (size_t)(eq - optarg) + 1;
            char *entry = value ? malloc(name_len + strlen(value) + 1) : NULL;
            if (!entry) {
                fprintf(stderr, "pam_driver: cannot read %s\n", eq + 1);
                return 2;
            }
            memcpy(entry, optarg, name_len);
            strcpy(entry + name_len, value);
            free(value);
            envs[n_envs++] = entry;
            break;
        }
        case 'q': quiet = 1; break;
        case 'a':
        case 'f':
            if (n_answers >= MAX_ANSWERS)
                return usage();
            answers[n_answers] = c == 'a' ? strdup(optarg) : read_file(optarg);
            if (!answers[n_answers]) {
                fprintf(stderr, "pam_driver: cannot read %s\n", optarg);
                return 2;
            }
            n_answers++;
            break;
        default: return usage();
        }
    }
    if (argc - optind != 2 || count < 1)
        return usage();
    if (n_ops == 0)
        n_ops = 1;
    const char *service = argv[optind], *user = argv[optind + 1];
    struct pam_conv conv = {converse, NULL};

    for (int round = 0; round < count; round++) {
        pam_handle_t *h = NULL;
        next_answer = 0;
        int rc = pam_start_confdir(service, user, &conv, confdir, &h);
        if (rc != PAM_SUCCESS) {
            fprintf(stderr, "pam_driver: pam_start_confdir: %d\n", rc);
            return 2;
        }
        if (rhost && pam_set_item(h, PAM_RHOST, rhost) != PAM_SUCCESS)
            return 2;
        if (tty && pam_set_item(h, PAM_TTY, tty) != PAM_SUCCESS)
            return 2;
        for (int i = 0; i < n_envs; i++)
            if (pam_putenv(h, envs[i]) != PAM_SUCCESS)
                return 2;
        for (int i = 0; i < n_ops; i++) {
            rc = run_op(h, ops[i], flags);
            if (rc < 0)
                return usage();
            print_result(h, rc);
        }
        pam_end(h, rc);
    }
    return 0;
}
