#!/usr/bin/env python3
"""The Python consume anchor of TARGETS.md: one pika BlockingConnection consumer with
basic.qos PREFETCH, acking each message, until TOTAL were acked. Prints {"rate": …}.
  pika_anchor.py HOST PORT QUEUE TOTAL PREFETCH"""
import json, sys, time
import pika

def main():
    host, port, queue, total, prefetch = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    connection = pika.BlockingConnection(pika.ConnectionParameters(host=host, port=port))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=prefetch)
    acked = 0
    started = time.monotonic()

    def on_message(channel, method, properties, body):
        nonlocal acked
        channel.basic_ack(method.delivery_tag)
        acked += 1
        if acked >= total:
            channel.stop_consuming()

    channel.basic_consume(queue, on_message)
    channel.start_consuming()
    elapsed = time.monotonic() - started
    connection.close()
    print(json.dumps({"rate": total / elapsed, "seconds": elapsed}))

if __name__ == "__main__":
    main()
