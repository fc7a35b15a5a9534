#!/usr/bin/env python3
"""The Python anchor of TARGETS.md: pika BlockingConnection with confirm_delivery(), one
connection per sender thread, persistent 256-byte messages. Prints JSON like anchor.c.
  pika_anchor.py HOST PORT QUEUE TOTAL SENDERS"""
import json, sys, threading, time
import pika

def main():
    host, port, queue, total, senders = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    per_sender = total // senders
    latencies = []
    lock = threading.Lock()
    body = b"x" * 256
    properties = pika.BasicProperties(delivery_mode=2)

    def send():
        connection = pika.BlockingConnection(pika.ConnectionParameters(host=host, port=port))
        channel = connection.channel()
        channel.confirm_delivery()
        mine = []
        for _ in range(per_sender):
            started = time.monotonic()
            channel.basic_publish("", queue, body, properties)
            mine.append(time.monotonic() - started)
        connection.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=send) for _ in range(senders)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    latencies.sort()
    count = len(latencies)
    print(json.dumps({"messages": count, "seconds": round(elapsed, 4), "rate": round(count / elapsed, 1),
                      "p50_ms": round(latencies[count // 2] * 1000, 3), "p99_ms": round(latencies[int(count * 0.99)] * 1000, 3)}))

if __name__ == "__main__":
    main()
