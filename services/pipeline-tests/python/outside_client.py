#!/usr/bin/env python3
"""An outside client of the order contract.

Written with confluent-kafka (librdkafka's Python binding) and the `jsonschema` package, and
none of the project's code, so that it sees the contract the way another team's service would:
from the README and the JSON Schema alone.

  outside_client.py produce  --bootstrap B --topic T --valid N --max-order-bytes M
      Produces N minimal valid orders (exactly the required fields: no restaurant, no
      delivery address) and one message of each poison kind, acks=all and idempotent, and
      prints one JSON line per message: {"kind", "order_id", "partition", "offset"}.
      "kind" is "valid" or the dead-letter reason the contract gives for that poison.

  outside_client.py validate --bootstrap B --topic T --count N --schema PATH
      Reads N messages from the beginning of T and checks each against the JSON Schema
      (formats included), its headers and its key. Prints one JSON summary line; exits 1 if
      any message breaks the contract.
"""

import argparse
import json
import sys
import time
import uuid
from datetime import datetime, timezone

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from jsonschema import Draft202012Validator, FormatChecker

MENU = [("PIZ-MAR", "Pizza Margherita", 950), ("SAL-CES", "Salade César", 1150), ("DES-TIR", "Tiramisu", 400)]


def minimal_order(index):
    """An order with exactly the fields the contract requires."""
    quantity = 1 + index % 3
    sku, name, price = MENU[index % len(MENU)]
    return {
        "schema_version": 1,
        "order_id": str(uuid.uuid4()),
        "customer_id": f"outside-customer-{index % 7}",
        "created_at": datetime.now(timezone.utc).isoformat(),
        "items": [{"sku": sku, "name": name, "quantity": quantity, "unit_price_cents": price}],
        "total_cents": quantity * price,
        "currency": "EUR" if index % 2 else "USD",
    }


def poison_messages(max_order_bytes):
    """(reason the contract gives, value bytes or None) for every way to get an order wrong."""

    def edited(change):
        order = minimal_order(1)
        change(order)
        return json.dumps(order).encode()

    too_large = minimal_order(2)
    too_large["padding"] = "x" * (max_order_bytes + 1)
    return [
        ("tombstone", None),
        ("empty", b""),
        ("too-large", json.dumps(too_large).encode()),
        ("invalid-utf8", b'{"order": "\xff\xfe"}'),
        ("not-json", b"order #12: two pizzas"),
        ("unknown-schema-version", edited(lambda o: o.update(schema_version=2))),
        ("invalid-field", edited(lambda o: o.pop("customer_id"))),
        ("no-items", edited(lambda o: o.update(items=[], total_cents=0))),
        ("non-positive-quantity", edited(lambda o: o["items"][0].update(quantity=0))),
        ("negative-price", edited(lambda o: o["items"][0].update(unit_price_cents=-1))),
        ("total-mismatch", edited(lambda o: o.update(total_cents=o["total_cents"] + 1))),
    ]


def produce(args):
    producer = Producer(
        {"bootstrap.servers": args.bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5}
    )
    reports = []

    def on_delivery(kind, order_id):
        def report(err, msg):
            if err is not None:
                sys.exit(f"delivery of a {kind} message failed: {err}")
            reports.append({"kind": kind, "order_id": order_id, "partition": msg.partition(), "offset": msg.offset()})

        return report

    headers = [("content-type", b"application/json"), ("schema-version", b"1")]
    for index in range(args.valid):
        order = minimal_order(index)
        producer.produce(
            args.topic,
            key=order["customer_id"],
            value=json.dumps(order).encode(),
            headers=headers,
            on_delivery=on_delivery("valid", order["order_id"]),
        )
    for kind, value in poison_messages(args.max_order_bytes):
        producer.produce(args.topic, key=b"outside-poison", value=value, on_delivery=on_delivery(kind, None))
    remaining = producer.flush(30)
    if remaining:
        sys.exit(f"{remaining} messages not acknowledged within 30 s")
    for report in reports:
        print(json.dumps(report))


def validate(args):
    with open(args.schema, encoding="utf-8") as schema_file:
        validator = Draft202012Validator(json.load(schema_file), format_checker=FormatChecker())
    consumer = Consumer(
        {"bootstrap.servers": args.bootstrap, "group.id": f"outside-validator-{uuid.uuid4()}", "enable.auto.commit": False}
    )
    partitions = consumer.list_topics(args.topic, timeout=10).topics[args.topic].partitions
    consumer.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in partitions])
    problems, seen = [], 0
    deadline = time.monotonic() + 60
    while seen < args.count and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        if msg.error():
            sys.exit(f"reading {args.topic}: {msg.error()}")
        seen += 1
        where = f"{msg.topic()}/{msg.partition()}@{msg.offset()}"
        try:
            order = json.loads(msg.value())
        except ValueError as err:
            problems.append(f"{where}: not JSON: {err}")
            continue
        problems.extend(f"{where}: {error.json_path}: {error.message}" for error in validator.iter_errors(order))
        headers = {key: value for key, value in (msg.headers() or [])}
        if headers.get("content-type") != b"application/json" or headers.get("schema-version") != b"1":
            problems.append(f"{where}: headers {headers!r}")
        if msg.key() is None or msg.key().decode() != order.get("customer_id"):
            problems.append(f"{where}: key {msg.key()!r} is not the customer_id")
    consumer.close()
    if seen < args.count:
        problems.append(f"only {seen} of {args.count} messages arrived within 60 s")
    print(json.dumps({"validated": seen, "problems": problems}))
    return 1 if problems else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    produce_args = commands.add_parser("produce")
    produce_args.add_argument("--bootstrap", required=True)
    produce_args.add_argument("--topic", required=True)
    produce_args.add_argument("--valid", type=int, required=True)
    produce_args.add_argument("--max-order-bytes", type=int, required=True)
    validate_args = commands.add_parser("validate")
    validate_args.add_argument("--bootstrap", required=True)
    validate_args.add_argument("--topic", required=True)
    validate_args.add_argument("--count", type=int, required=True)
    validate_args.add_argument("--schema", required=True)
    args = parser.parse_args()
    if args.command == "produce":
        produce(args)
        return 0
    return validate(args)


if __name__ == "__main__":
    sys.exit(main())
