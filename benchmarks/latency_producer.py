"""The latency benchmark's load producer: confluent-kafka for Python (librdkafka), as a policy gateway's.

Reads lines `PARTITION<TAB>KEY<TAB>VALUE` on stdin as the benchmark writes them (PARTITION -1: the
partitioner chooses, murmur2 of the key as Java's and kafkajs's, so a keyed record lands on its owner
partition; an empty KEY: no key) and produces each with librdkafka's defaults but for the partitioner
(linger.ms 5, idempotence off, acks all). Prints one JSON line at the end: {"produced": N}; exits 1 if
any record was not delivered.

  python latency_producer.py --bootstrap HOST:PORT --topic T < lines
"""

import argparse
import json
import sys

from confluent_kafka import Producer


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    a = p.parse_args()

    producer = Producer({"bootstrap.servers": a.bootstrap, "partitioner": "murmur2_random"})
    errors = []

    def delivered(err, _msg):
        if err is not None:
            errors.append(str(err))

    produced = 0
    for line in sys.stdin.buffer:
        partition, key, value = line.rstrip(b"\n").split(b"\t", 2)
        part = int(partition)
        extra = {} if part < 0 else {"partition": part}
        while True:
            try:
                producer.produce(a.topic, value=value, key=key or None, on_delivery=delivered, **extra)
                break
            except BufferError:
                # librdkafka's local queue is full (the broker is behind): wait for deliveries, then again
                producer.poll(0.1)
        produced += 1
        producer.poll(0)
    left = producer.flush(30)
    print(json.dumps({"produced": produced}), flush=True)
    if left > 0 or errors:
        print(f"latency_producer: {left} not delivered, errors: {errors[:5]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
