"""quixstreams: a stateful per-key count of packets and bytes (RocksDB state, one entry per flow
key), the streaming-framework way to do what the processor does. Prints one JSON line: the rate
from the first record to the N-th (group join excluded) and the join time.

--no-changelog turns off quixstreams' changelog topics (state recovery); by default they are on,
as quixstreams ships."""
import argparse
import json
import struct
import sys
import tempfile
import time

from quixstreams import Application


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--records", type=int, required=True)
    ap.add_argument("--timeout", type=float, default=180)
    ap.add_argument("--session-timeout-ms", default="6000")
    ap.add_argument("--no-changelog", action="store_true")
    a = ap.parse_args()
    state_dir = tempfile.mkdtemp(prefix="quix-bench-")
    app = Application(
        broker_address=a.brokers,
        consumer_group=a.group,
        auto_offset_reset="earliest",
        consumer_extra_config={
            # tansu holds every fetch for the full wait: keep it short.
            "fetch.wait.max.ms": 10,
            # librdkafka's 1 s default stalls a consumer that drains its queue fast (the
            # processor and the bare consumer set 10 ms too).
            "fetch.queue.backoff.ms": 10,
            "session.timeout.ms": int(a.session_timeout_ms),
            "heartbeat.interval.ms": 1000,
        },
        state_dir=state_dir,
        use_changelog_topics=not a.no_changelog,
        loglevel="WARNING",
        # The input topic exists; never create it.
        auto_create_topics=True,
    )
    topic = app.topic(a.topic, key_deserializer="bytes", value_deserializer="bytes")
    sdf = app.dataframe(topic)
    wire_len = struct.Struct("<I").unpack_from
    st = {"seen": 0, "first": None, "end": None}
    t0 = time.monotonic()
    deadline = t0 + a.timeout

    def count(value, state):
        if st["first"] is None:
            st["first"] = time.monotonic()
        (n,) = wire_len(value, 4)
        c = state.get("c", None)
        if c is None:
            c = [0, 0]
        c[0] += 1
        c[1] += n
        state.set("c", c)
        st["seen"] += 1
        if st["seen"] == a.records:
            st["end"] = time.monotonic()
            app.stop()
        elif st["seen"] % 10000 == 0 and time.monotonic() > deadline:
            app.stop()

    sdf.update(count, stateful=True)
    app.run()
    if st["end"] is None:
        print(f"only {st['seen']} of {a.records} records within {a.timeout}s", file=sys.stderr)
        sys.exit(1)
    print(json.dumps({
        "rate": (a.records - 1) / (st["end"] - st["first"]),
        "join": st["first"] - t0,
        "records": st["seen"],
        "changelog": not a.no_changelog,
    }))


if __name__ == "__main__":
    main()
