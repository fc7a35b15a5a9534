#!/usr/bin/env python3
"""A TCP proxy that can stall, standing in for a broker that stops answering.

  stall_proxy.py LISTEN_PORT TARGET_HOST TARGET_PORT [CERT_PEM KEY_PEM]
With a certificate and key it terminates TLS on the listening side (a TLS broker).
SIGUSR1 stalls every connection (bytes stay in the kernel buffers, sockets stay open; new
connections are accepted but get nothing); SIGUSR2 resumes. Prints "ready" once listening.
"""
import os, signal, socket, ssl, sys, threading

flowing = threading.Event()
flowing.set()

def pump(source, target):
    try:
        while True:
            flowing.wait()
            data = source.recv(65536)
            if not data:
                break
            flowing.wait()
            target.sendall(data)
    except OSError:
        pass
    for s in (source, target):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

def main():
    listen_port, host, port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    tls = None
    if len(sys.argv) > 5:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(sys.argv[4], sys.argv[5])
    # The parent may start us with signals blocked or ignored; take them back.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM})
    signal.signal(signal.SIGUSR1, lambda *_: flowing.clear())
    signal.signal(signal.SIGUSR2, lambda *_: flowing.set())
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", listen_port))
    server.listen(128)
    # Python runs signal handlers on the main thread only: never block it for long.
    server.settimeout(0.1)
    print("ready", flush=True)
    while True:
        try:
            client, _ = server.accept()
        except socket.timeout:
            continue
        client.settimeout(None)
        if tls:
            try:
                client.settimeout(5)
                client = tls.wrap_socket(client, server_side=True)
                client.settimeout(None)
            except (OSError, ssl.SSLError):
                client.close()
                continue
        try:
            upstream = socket.create_connection((host, port))
        except OSError:
            client.close()
            continue
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=pump, args=(a, b), daemon=True).start()

if __name__ == "__main__":
    main()
