"""A plain confluent-kafka consumer counting packets and bytes per flow key in a dict: what a
user would write in Python instead of the processor. Prints one JSON line: the rate from the
first record to the N-th (group join excluded) and the join time.

Bytes are the wire length from the netstream value header (little-endian u32 at offset 4)."""
import argparse
import json
import struct
import sys
import time

from confluent_kafka import Consumer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--records", type=int, required=True)
    ap.add_argument("--timeout", type=float, default=180)
    ap.add_argument("--session-timeout-ms", default="6000")
    a = ap.parse_args()
    c = Consumer({
        "bootstrap.servers": a.brokers,
        "group.id": a.group,
        "auto.offset.reset": "earliest",
        # tansu holds every fetch for the full wait: keep it short.
        "fetch.wait.max.ms": 10,
            # librdkafka's 1 s default stalls a consumer that drains its queue fast (the
            # processor and the bare consumer set 10 ms too).
            "fetch.queue.backoff.ms": 10,
        "session.timeout.ms": int(a.session_timeout_ms),
        "heartbeat.interval.ms": 1000,
    })
    c.subscribe([a.topic])
    wire_len = struct.Struct("<I").unpack_from
    flows = {}
    seen = 0
    first = None
    t0 = time.monotonic()
    deadline = t0 + a.timeout
    while seen < a.records:
        if time.monotonic() > deadline:
            print(f"only {seen} of {a.records} records within {a.timeout}s", file=sys.stderr)
            sys.exit(1)
        if first is None:
            # Until the first record, one at a time: consume() would wait to fill a batch and
            # the first record's time would come late.
            m = c.poll(0.1)
            batch = [m] if m is not None else []
        else:
            batch = c.consume(num_messages=10000, timeout=0.1)
        for m in batch:
            if m.error():
                continue
            if first is None:
                first = time.monotonic()
            (n,) = wire_len(m.value(), 4)
            k = m.key()
            e = flows.get(k)
            if e is None:
                flows[k] = [1, n]
            else:
                e[0] += 1
                e[1] += n
            seen += 1
            if seen >= a.records:
                break
    end = time.monotonic()
    c.close()
    print(json.dumps({
        "rate": (a.records - 1) / (end - first),
        "join": first - t0,
        "flows": len(flows),
        "records": seen,
    }))


if __name__ == "__main__":
    main()
