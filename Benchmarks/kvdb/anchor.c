// The paginator anchor: a C loop on hiredis reading pages of 25 from a
// 10,000-item list over one connection, as a fresh paginator would (LLEN then LRANGE) or
// as one with its count cached (LRANGE alone). Prints pages/s as JSON.
//   anchor PORT KEY PAGES fresh|cached
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: anchor PORT KEY PAGES fresh|cached\n"); return 1; }
    redisContext *c = redisConnect("127.0.0.1", atoi(argv[1]));
    if (!c || c->err) { fprintf(stderr, "connect failed\n"); return 1; }
    const char *key = argv[2];
    int pages = atoi(argv[3]), fresh = strcmp(argv[4], "fresh") == 0, per_page = 25;
    long long count = 0;
    double started = now();
    for (int i = 0; i < pages; i++) {
        if (fresh || i == 0) {
            redisReply *r = redisCommand(c, "LLEN %s", key);
            count = r->integer;
            freeReplyObject(r);
        }
        long long num_pages = (count + per_page - 1) / per_page;
        long long page = i % num_pages, bottom = page * per_page;
        redisReply *r = redisCommand(c, "LRANGE %s %lld %lld", key, bottom, bottom + per_page - 1);
        if (r->elements != (size_t)per_page) { fprintf(stderr, "short page\n"); return 1; }
        freeReplyObject(r);
    }
    double elapsed = now() - started;
    printf("{\"pages\": %d, \"seconds\": %.4f, \"rate\": %.1f}\n", pages, elapsed, pages / elapsed);
    redisFree(c);
    return 0;
}
