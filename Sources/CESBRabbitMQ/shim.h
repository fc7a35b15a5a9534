#ifndef CESB_RABBITMQ_SHIM_H
#define CESB_RABBITMQ_SHIM_H
// librabbitmq 0.11 (Debian 12) ships <amqp.h>; 0.12 and later <rabbitmq-c/amqp.h>.
#if __has_include(<rabbitmq-c/amqp.h>)
#include <rabbitmq-c/amqp.h>
#include <rabbitmq-c/tcp_socket.h>
#include <rabbitmq-c/ssl_socket.h>
#else
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <amqp_ssl_socket.h>
#endif

// amqp_login is variadic, which Swift cannot call: a fixed-arity wrapper for PLAIN auth.
static inline amqp_rpc_reply_t cesb_amqp_login_plain(
    amqp_connection_state_t state, const char *vhost, int channel_max, int frame_max,
    int heartbeat, const char *user, const char *password) {
    return amqp_login(state, vhost, channel_max, frame_max, heartbeat,
                      AMQP_SASL_METHOD_PLAIN, user, password);
}

// amqp_cstring_bytes is a function, but building amqp_bytes_t from a pointer and a
// length is a struct literal in C; this keeps Swift call sites short.
static inline amqp_bytes_t cesb_amqp_bytes(const void *bytes, size_t len) {
    amqp_bytes_t b;
    b.len = len;
    b.bytes = (void *)bytes;
    return b;
}
#endif
