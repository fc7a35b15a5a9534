// The AMQP consume anchor of TARGETS.md: a C program on librabbitmq consuming QUEUE over
// CONSUMERS connections (one thread each, basic.qos PREFETCH), acking each message, until
// TOTAL were acked in all. Prints {"rate": messages/s}. Built by Benchmarks/amqp_consume.py;
// never committed as a binary.
//   anchor HOST PORT QUEUE TOTAL CONSUMERS PREFETCH
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *host, *queue;
static int port, prefetch;
static long total;
static atomic_long acked;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void die(const char *what) { fprintf(stderr, "anchor: %s\n", what); exit(1); }

static void *consumer(void *arg) {
    (void)arg;
    amqp_connection_state_t conn = amqp_new_connection();
    amqp_socket_t *socket = amqp_tcp_socket_new(conn);
    if (!socket || amqp_socket_open(socket, host, port)) die("connect");
    if (amqp_login(conn, "/", 0, 131072, 30, AMQP_SASL_METHOD_PLAIN, "guest", "guest").reply_type != AMQP_RESPONSE_NORMAL) die("login");
    amqp_channel_open(conn, 1);
    if (amqp_get_rpc_reply(conn).reply_type != AMQP_RESPONSE_NORMAL) die("channel");
    amqp_basic_qos(conn, 1, 0, (uint16_t)prefetch, 0);
    amqp_basic_consume(conn, 1, amqp_cstring_bytes(queue), amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
    if (amqp_get_rpc_reply(conn).reply_type != AMQP_RESPONSE_NORMAL) die("consume");
    while (atomic_load(&acked) < total) {
        amqp_envelope_t envelope;
        struct timeval timeout = {0, 200000};
        amqp_maybe_release_buffers(conn);
        amqp_rpc_reply_t reply = amqp_consume_message(conn, &envelope, &timeout, 0);
        if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && reply.library_error == AMQP_STATUS_TIMEOUT) continue;
        if (reply.reply_type != AMQP_RESPONSE_NORMAL) die("consume_message");
        if (amqp_basic_ack(conn, 1, envelope.delivery_tag, 0)) die("ack");
        amqp_destroy_envelope(&envelope);
        atomic_fetch_add(&acked, 1);
    }
    amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS);
    amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 7) die("usage: anchor HOST PORT QUEUE TOTAL CONSUMERS PREFETCH");
    host = argv[1]; port = atoi(argv[2]); queue = argv[3]; total = atol(argv[4]);
    int consumers = atoi(argv[5]); prefetch = atoi(argv[6]);
    pthread_t threads[64];
    double started = now();
    for (long i = 0; i < consumers; i++) pthread_create(&threads[i], NULL, consumer, (void *)i);
    for (int i = 0; i < consumers; i++) pthread_join(threads[i], NULL);
    double elapsed = now() - started;
    printf("{\"rate\": %.1f, \"seconds\": %.3f}\n", total / elapsed, elapsed);
    return 0;
}
