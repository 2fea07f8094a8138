/* The action every tool runs in the latency benchmarks: appends the wall-clock time in
 * nanoseconds to the file named by argv[1], so the measurement ends when an exec'd
 * program has run, the same for every tool. */
#include <stdio.h>
#include <time.h>

int main(int argc, char **argv) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (argc < 2) return 2;
    FILE *f = fopen(argv[1], "a");
    if (!f) return 1;
    fprintf(f, "%lld\n", (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
    return fclose(f) == 0 ? 0 : 1;
}
