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

// The owner thread of a connection polls its socket and an eventfd that wakes it.
#include <sys/eventfd.h>

// amqp_login is variadic, which Swift cannot call: a fixed-arity wrapper for PLAIN auth.
static inline amqp_rpc_reply_t cesb_amqp_login_plain(
    amqp_connection_state_t state, const char *vhost, int channel_max, int frame_max,
    int heartbeat, const char *user, const char *password) {
    return amqp_login(state, vhost, channel_max, frame_max, heartbeat,
                      AMQP_SASL_METHOD_PLAIN, user, password);
}

// The same with client properties (a consumer announces consumer_cancel_notify in its
// capabilities table, so that the broker tells it when its queue is deleted).
static inline amqp_rpc_reply_t cesb_amqp_login_plain_with_properties(
    amqp_connection_state_t state, const char *vhost, int channel_max, int frame_max,
    int heartbeat, const amqp_table_t *properties, const char *user, const char *password) {
    return amqp_login_with_properties(state, vhost, channel_max, frame_max, heartbeat, properties,
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

// Method numbers are cast macros, which Swift does not import.
static const amqp_method_number_t CESB_BASIC_ACK = AMQP_BASIC_ACK_METHOD;
static const amqp_method_number_t CESB_BASIC_NACK = AMQP_BASIC_NACK_METHOD;
static const amqp_method_number_t CESB_BASIC_RETURN = AMQP_BASIC_RETURN_METHOD;
static const amqp_method_number_t CESB_CHANNEL_CLOSE = AMQP_CHANNEL_CLOSE_METHOD;
static const amqp_method_number_t CESB_CHANNEL_CLOSE_OK = AMQP_CHANNEL_CLOSE_OK_METHOD;
static const amqp_method_number_t CESB_CONNECTION_CLOSE = AMQP_CONNECTION_CLOSE_METHOD;
static const amqp_method_number_t CESB_CONNECTION_CLOSE_OK = AMQP_CONNECTION_CLOSE_OK_METHOD;
static const amqp_method_number_t CESB_CONNECTION_BLOCKED = AMQP_CONNECTION_BLOCKED_METHOD;
static const amqp_method_number_t CESB_CONNECTION_UNBLOCKED = AMQP_CONNECTION_UNBLOCKED_METHOD;
static const amqp_method_number_t CESB_BASIC_DELIVER = AMQP_BASIC_DELIVER_METHOD;
static const amqp_method_number_t CESB_BASIC_CANCEL = AMQP_BASIC_CANCEL_METHOD;
static const amqp_method_number_t CESB_BASIC_CANCEL_OK = AMQP_BASIC_CANCEL_OK_METHOD;
#endif
