#!/usr/bin/env python3
"""An AMQP peer independent of SwiftESB (pika), for tests and benchmarks.

  amqp_peer.py declare QUEUE [--exchange X [--type direct] --key K] [--transient] [--max-priority N] [--max-length N]
  amqp_peer.py get QUEUE [--max N]      # JSON array of messages (body, properties, headers), acked
  amqp_peer.py count QUEUE              # messages ready in QUEUE
  amqp_peer.py bodies QUEUE             # JSON array of every body in QUEUE (consumed, fast)
  amqp_peer.py delete QUEUE [--exchange X]
  amqp_peer.py publish QUEUE --body B [--count N] [--numbered] [--header K=V ...] [--transient]
                                        # confirmed, to the default exchange; --numbered: bodies B0, B1, …
With declare, --dead-letter DLQ also declares DLQ and dead-letters QUEUE's rejects into it.
The broker is ESB_AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/%2F).
"""
import argparse, base64, json, os, sys
import struct
import pika
import pika.data

# pika 1.x decodes a double header ('d') through long(), truncating 2.5 to 2; read it whole.
_decode_value = pika.data.decode_value
def _decode_value_keeping_doubles(encoded, offset):
    if encoded[offset:offset + 1] == b'd':
        return struct.unpack_from('>d', encoded, offset + 1)[0], offset + 9
    return _decode_value(encoded, offset)
pika.data.decode_value = _decode_value_keeping_doubles

def connect():
    return pika.BlockingConnection(pika.URLParameters(os.environ.get("ESB_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")))

def plain(value):
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value

def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["declare", "get", "count", "delete", "bodies", "publish"])
    parser.add_argument("queue")
    parser.add_argument("--exchange")
    parser.add_argument("--type", default="direct")
    parser.add_argument("--key")
    parser.add_argument("--transient", action="store_true")
    parser.add_argument("--max-priority", type=int)
    parser.add_argument("--max-length", type=int, help="with reject-publish overflow: the broker nacks what does not fit")
    parser.add_argument("--max", type=int, default=1_000_000)
    parser.add_argument("--dead-letter")
    parser.add_argument("--body", default="")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--numbered", action="store_true")
    parser.add_argument("--deep-header", type=int, default=0, help="a header 'deep' of arrays nested N levels")
    args = parser.parse_args()
    connection = connect()
    channel = connection.channel()
    if args.command == "declare":
        arguments = {}
        if args.max_priority:
            arguments["x-max-priority"] = args.max_priority
        if args.max_length is not None:
            arguments.update({"x-max-length": args.max_length, "x-overflow": "reject-publish"})
        if args.dead_letter:
            channel.queue_declare(args.dead_letter, durable=not args.transient)
            arguments.update({"x-dead-letter-exchange": "", "x-dead-letter-routing-key": args.dead_letter})
        channel.queue_declare(args.queue, durable=not args.transient, arguments=arguments or None)
        if args.exchange:
            channel.exchange_declare(args.exchange, exchange_type=args.type, durable=not args.transient)
            channel.queue_bind(args.queue, args.exchange, routing_key=args.key or args.queue)
        print("ok")
    elif args.command == "count":
        print(channel.queue_declare(args.queue, passive=True).method.message_count)
    elif args.command == "bodies":
        expected = channel.queue_declare(args.queue, passive=True).method.message_count
        channel.basic_qos(prefetch_count=1000)
        bodies = []
        if expected:
            for method, _, body in channel.consume(args.queue, auto_ack=True, inactivity_timeout=3):
                if method is None:
                    break
                bodies.append(plain(body))
                if len(bodies) >= expected:
                    break
            channel.cancel()
        json.dump(bodies, sys.stdout)
    elif args.command == "publish":
        channel.confirm_delivery()
        headers = dict(h.split("=", 1) for h in args.header)
        if args.deep_header:
            deep = "bottom"
            for _ in range(args.deep_header):
                deep = [deep]
            headers["deep"] = deep
        properties = pika.BasicProperties(delivery_mode=1 if args.transient else 2, headers=headers or None)
        for number in range(args.count):
            body = f"{args.body}{number}" if args.numbered else args.body
            channel.basic_publish("", args.queue, body.encode(), properties, mandatory=True)
        print("ok")
    elif args.command == "delete":
        channel.queue_delete(args.queue)
        if args.exchange:
            channel.exchange_delete(args.exchange)
        print("ok")
    else:
        messages = []
        while len(messages) < args.max:
            method, properties, body = channel.basic_get(args.queue, auto_ack=True)
            if method is None:
                break
            props = {k: plain(getattr(properties, k)) for k in (
                "content_type", "content_encoding", "delivery_mode", "priority", "correlation_id", "reply_to",
                "expiration", "message_id", "timestamp", "type", "user_id", "app_id") if getattr(properties, k) is not None}
            messages.append({"body": plain(body), "routing_key": method.routing_key, "exchange": method.exchange,
                             "properties": props, "headers": plain(properties.headers or {})})
        json.dump(messages, sys.stdout)
    connection.close()

if __name__ == "__main__":
    main()
