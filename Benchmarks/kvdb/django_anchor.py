#!/usr/bin/env python3
"""The Python anchor: redis-py and Django's own Paginator over the same list, through a
lazy sequence (len = LLEN, slice = LRANGE), a fresh Paginator per page.
  django_anchor.py PORT KEY PAGES"""
import json, sys, time
import redis
from django.conf import settings

settings.configure(USE_I18N=False)
from django.core.paginator import Paginator  # noqa: E402

class RedisList:
    def __init__(self, client, key):
        self.client, self.key = client, key
    def __len__(self):
        return self.client.llen(self.key)
    def __getitem__(self, s):
        return self.client.lrange(self.key, s.start, s.stop - 1)

def main():
    port, key, pages = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    client = redis.Redis(port=port)
    num_pages = Paginator(RedisList(client, key), 25).num_pages
    started = time.monotonic()
    for index in range(pages):
        page = Paginator(RedisList(client, key), 25).page(index % num_pages + 1)
        assert len(page.object_list) == 25
    elapsed = time.monotonic() - started
    print(json.dumps({"pages": pages, "seconds": round(elapsed, 4), "rate": round(pages / elapsed, 1)}))

if __name__ == "__main__":
    main()
