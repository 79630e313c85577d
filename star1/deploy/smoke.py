"""`helm test`'s check, run in the cluster: this image's star1 starts, and the artifact store takes a write, a
read and a delete with the pod's credentials. `python -m star1.deploy.smoke s3://bucket/prefix` prints what it
did and exits 0, or 7 (infrastructure) naming the store and what failed; 2 for a store URI it cannot use."""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
import uuid

from star1.exits import Exit


def check_store(uri: str) -> str:
    """Write, read back and delete one small object under `<uri>/_smoke/`; returns its URL. Raises OSError."""
    from star1.store import Store

    store = Store.from_uri(uri, endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)
    rel = f"_smoke/{socket.gethostname()}-{uuid.uuid4().hex[:8]}.txt"
    body = f"star1 smoke test {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n".encode()
    store.write_bytes(rel, body)
    try:
        back = store.read_bytes(rel)
        if back != body:
            raise OSError(f"{store.url(rel)} read back {len(back)} bytes, not the {len(body)} written")
    finally:
        store.delete(rel)
    if store.exists(rel):
        raise OSError(f"{store.url(rel)} is still there after delete")
    return store.url(rel)


def main(argv: list[str] | None = None) -> int:
    import star1

    p = argparse.ArgumentParser(prog="python -m star1.deploy.smoke", description=__doc__)
    p.add_argument("store", help="the artifact store, e.g. s3://star1/runs")
    args = p.parse_args(argv)
    print(f"star1 {star1.__version__}, python {sys.version.split()[0]}")
    try:
        url = check_store(args.store)
    except ValueError as e:
        print(f"smoke: {e}", file=sys.stderr)
        return Exit.CONFIG
    except OSError as e:
        print(f"smoke: the store {args.store} failed a write/read/delete: {e}", file=sys.stderr)
        return Exit.INFRA
    print(f"store {args.store}: wrote, read back and deleted {url}")
    return Exit.OK


if __name__ == "__main__":
    sys.exit(main())
