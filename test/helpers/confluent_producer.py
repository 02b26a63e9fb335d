"""Produce policy decisions with confluent-kafka for Python, a client this project did not write.

Reads decisions as NDJSON on stdin and produces each, in order, with a SerializingProducer: the key is
the decision's agent_id (no key for an anonymous decision), the value is serialized by confluent-kafka's
own AvroSerializer or JSONSerializer, which register the schema under --subject and write Confluent's
framing (0x00, 4-byte schema id, payload). Prints one JSON line: {"produced": N, "schema_id": ID}.

  python confluent_producer.py --bootstrap HOST:PORT --registry URL --topic T \
      --format avro|json --schema FILE --subject SUBJECT < decisions.ndjson

Used by test/integration/kafka-registry.test.ts; needs `confluent-kafka[avro,json]`.
"""

import argparse
import json
import struct
import sys

from confluent_kafka import SerializingProducer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.serialization import StringSerializer


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--registry", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--format", choices=["avro", "json"], required=True)
    p.add_argument("--schema", required=True, help="the .avsc or JSON Schema file to register")
    p.add_argument("--subject", required=True)
    a = p.parse_args()

    with open(a.schema, encoding="utf-8") as f:
        schema_str = f.read()
    registry = SchemaRegistryClient({"url": a.registry})
    # the subject is named outright: the default strategy differs between client versions
    conf = {"auto.register.schemas": True, "subject.name.strategy": lambda _ctx, _record_name: a.subject}
    if a.format == "avro":
        fields = [f["name"] for f in json.loads(schema_str)["fields"]]

        def to_dict(d, _ctx):
            # every field of the record: an optional one the decision lacks is null
            return {name: d.get(name) for name in fields}

        value_serializer = AvroSerializer(registry, schema_str, to_dict, conf)
    else:
        value_serializer = JSONSerializer(schema_str, registry, None, conf)

    producer = SerializingProducer({
        "bootstrap.servers": a.bootstrap,
        "key.serializer": StringSerializer("utf_8"),
        "value.serializer": value_serializer,
        "enable.idempotence": True,
        "linger.ms": 5,
    })
    errors = []
    schema_id = None

    def delivered(err, msg):
        nonlocal schema_id
        if err is not None:
            errors.append(str(err))
        elif schema_id is None:
            schema_id = struct.unpack(">bI", msg.value()[:5])[1]

    produced = 0
    for line in sys.stdin:
        if line.strip() == "":
            continue
        d = json.loads(line)
        producer.produce(a.topic, key=d.get("agent_id"), value=d, on_delivery=delivered)
        produced += 1
        producer.poll(0)
    left = producer.flush(30)
    if left > 0 or errors:
        print(f"confluent_producer: {left} not delivered, errors: {errors[:5]}", file=sys.stderr)
        return 1
    print(json.dumps({"produced": produced, "schema_id": schema_id}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
