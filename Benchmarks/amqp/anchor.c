// The AMQP anchor: a C program on librabbitmq publishing persistent 256-byte
// messages with publisher confirms over N connections (one thread each), keeping up to
// WINDOW messages unconfirmed per connection (1 = confirm each). Prints messages/s and the
// p50/p99 publish-to-ack latency. Built by Benchmarks/amqp.py; never committed as a binary.
// With `esb`, each message is what esbd publishes for a service's send: mandatory, with the
// headers x-esb-cid (24 characters) and x-esb-msg-id (the delivery tag, to match returns).
//   anchor HOST PORT QUEUE TOTAL CONNECTIONS WINDOW [esb]
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *host, *queue;
static int port, per_connection, window_size, esb_messages;
static double *latencies;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void die(const char *what) { fprintf(stderr, "anchor: %s\n", what); exit(1); }

static void *sender(void *arg) {
    long index = (long)arg;
    amqp_connection_state_t conn = amqp_new_connection();
    amqp_socket_t *socket = amqp_tcp_socket_new(conn);
    if (amqp_socket_open(socket, host, port)) die("connect");
    if (amqp_login(conn, "/", 0, 131072, 30, AMQP_SASL_METHOD_PLAIN, "guest", "guest").reply_type != AMQP_RESPONSE_NORMAL) die("login");
    amqp_channel_open(conn, 1);
    amqp_confirm_select(conn, 1);
    if (amqp_get_rpc_reply(conn).reply_type != AMQP_RESPONSE_NORMAL) die("confirm.select");
    char body[256];
    memset(body, 'x', sizeof body);
    amqp_basic_properties_t props;
    props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG;
    props.delivery_mode = 2;
    amqp_table_entry_t headers[2];
    headers[0].key = amqp_cstring_bytes("x-esb-cid");
    headers[0].value.kind = AMQP_FIELD_KIND_UTF8;
    headers[0].value.value.bytes = amqp_cstring_bytes("0123456789abcdef01234567");
    headers[1].key = amqp_cstring_bytes("x-esb-msg-id");
    headers[1].value.kind = AMQP_FIELD_KIND_I64;
    if (esb_messages) {
        props._flags |= AMQP_BASIC_HEADERS_FLAG;
        props.headers.num_entries = 2;
        props.headers.entries = headers;
    }
    double *sent_at = calloc(per_connection + 1, sizeof(double));
    double *mine = latencies + index * per_connection;
    int published = 0, acked = 0;
    while (acked < per_connection) {
        while (published < per_connection && published - acked < window_size) {
            sent_at[published + 1] = now();
            headers[1].value.value.i64 = published + 1;
            if (amqp_basic_publish(conn, 1, amqp_empty_bytes, amqp_cstring_bytes(queue), esb_messages, 0, &props,
                                   (amqp_bytes_t){sizeof body, body})) die("publish");
            published++;
        }
        amqp_frame_t frame;
        if (amqp_simple_wait_frame(conn, &frame) != AMQP_STATUS_OK) die("wait frame");
        if (frame.frame_type != AMQP_FRAME_METHOD) continue;
        if (frame.payload.method.id == AMQP_BASIC_ACK_METHOD) {
            amqp_basic_ack_t *ack = frame.payload.method.decoded;
            int upto = (int)ack->delivery_tag, from = ack->multiple ? acked + 1 : upto;
            double t = now();
            for (int tag = from; tag <= upto; tag++) mine[tag - 1] = t - sent_at[tag];
            acked = upto > acked ? upto : acked;
        } else if (frame.payload.method.id == AMQP_BASIC_NACK_METHOD) {
            die("nack");
        }
        amqp_maybe_release_buffers(conn);
    }
    amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS);
    amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn);
    free(sent_at);
    return NULL;
}

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc != 7 && argc != 8) die("usage: anchor HOST PORT QUEUE TOTAL CONNECTIONS WINDOW [esb]");
    host = argv[1]; port = atoi(argv[2]); queue = argv[3];
    int total = atoi(argv[4]), connections = atoi(argv[5]);
    window_size = atoi(argv[6]);
    esb_messages = argc > 7 && strcmp(argv[7], "esb") == 0;
    per_connection = total / connections;
    latencies = calloc((size_t)per_connection * connections, sizeof(double));
    pthread_t threads[connections];
    double started = now();
    for (long i = 0; i < connections; i++) pthread_create(&threads[i], NULL, sender, (void *)i);
    for (int i = 0; i < connections; i++) pthread_join(threads[i], NULL);
    double elapsed = now() - started;
    int count = per_connection * connections;
    qsort(latencies, count, sizeof(double), compare);
    printf("{\"messages\": %d, \"seconds\": %.4f, \"rate\": %.1f, \"p50_ms\": %.3f, \"p99_ms\": %.3f}\n",
           count, elapsed, count / elapsed, latencies[count / 2] * 1000, latencies[(int)(count * 0.99)] * 1000);
    return 0;
}
