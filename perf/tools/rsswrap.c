/* rsswrap OUTFILE LABEL PROGRAM ARGS...
 *
 * Runs PROGRAM, forwards SIGTERM and SIGINT to it, and when it exits appends
 * "LABEL <peak RSS in KiB>" to OUTFILE, then exits with PROGRAM's status.
 * Used around the harness adapters by perf/run: GNU time dies on the
 * harness's SIGTERM before writing, and a wrapper with a large memory
 * footprint would leak it into the child's ru_maxrss (Linux counts the
 * parent's memory at fork). This one is about 1 MiB.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static pid_t child;

static void forward(int sig) {
    if (child > 0) kill(child, sig);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: rsswrap OUTFILE LABEL PROGRAM ARGS...\n");
        return 2;
    }
    child = fork();
    if (child < 0) { perror("fork"); return 1; }
    if (child == 0) {
        execvp(argv[3], argv + 3);
        perror("exec");
        _exit(127);
    }
    struct sigaction sa = {0};
    sa.sa_handler = forward;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    int status = 0;
    struct rusage ru;
    while (wait4(child, &status, 0, &ru) < 0) {}
    FILE *f = fopen(argv[1], "a");
    if (f) {
        fprintf(f, "%s %ld\n", argv[2], ru.ru_maxrss);
        fclose(f);
    }
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}
