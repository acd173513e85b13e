#!/usr/bin/env python3
"""Seed-style Python clients: what the project's seed demos' users would have written.

The benchmark (deploy/bench.sh) compares the services against these, on the same broker and
with the same librdkafka settings (passed in as JSON by the benchmark, taken from the services'
own configuration), written the plain way with confluent-kafka: a dict and json.dumps per
order, a delivery callback per message; json.loads, per-item statistics and an explicit offset
store per message.

  seed_clients.py produce --config JSON --topic T --count N [--rate PER_SECOND]
      Prints {"delivered", "failed", "payload_bytes", "elapsed_ms"} at the end.
  seed_clients.py consume --config JSON --topic T --count N [--latency]
      Prints {"event": "ready"} once it owns partitions, then {"count", "elapsed_ms",
      "created_ms", "latencies_ms"}: first to last message, and with --latency, per message in
      the order handled, its CreateTime and now - CreateTime (parallel lists; the benchmark
      leaves out the orders created during the producer's start-up).
"""

import argparse
import json
import random
import sys
import time
import uuid
from collections import defaultdict
from datetime import datetime, timezone

from confluent_kafka import Consumer, Producer

MENU = [
    ("PIZ-MAR", "Pizza Margherita", 950),
    ("PIZ-PEP", "Pizza Pepperoni", 1150),
    ("PIZ-4FR", "Pizza Quatre Fromages", 1290),
    ("BUR-CLA", "Burger Classique", 1090),
    ("BUR-VEG", "Burger Végétarien", 1050),
    ("SUS-SAU", "Sushi Saumon (8)", 1390),
    ("RAM-TON", "Ramen Tonkotsu", 1250),
    ("SAL-CES", "Salade César", 890),
    ("TAC-BOE", "Tacos Bœuf", 850),
    ("CRE-JAM", "Crêpe Jambon Fromage", 750),
    ("FRI-MAI", "Frites Maison", 390),
    ("BOI-COL", "Cola 33 cl", 250),
    ("DES-TIR", "Tiramisu", 550),
]
RESTAURANTS = ["Chez Luigi", "Le Burger du Coin", "Sakura Sushi", "Ramen Ya", "Taco Loco"]
CITIES = [("75011", "Paris"), ("69002", "Lyon"), ("13001", "Marseille"), ("33000", "Bordeaux")]


def make_order():
    customer = 1 + int(random.random() ** 2 * 300)
    items = []
    for sku, name, price in random.sample(MENU, random.randint(1, 4)):
        quantity = random.randint(4, 10) if random.random() < 0.1 else random.randint(1, 3)
        items.append({"sku": sku, "name": name, "quantity": quantity, "unit_price_cents": price})
    postal_code, city = CITIES[customer % len(CITIES)]
    return {
        "schema_version": 1,
        "order_id": str(uuid.uuid4()),
        "customer_id": f"customer-{customer}",
        "created_at": datetime.now(timezone.utc).isoformat(),
        "restaurant": random.choice(RESTAURANTS),
        "delivery_address": {"street": f"{customer % 97} rue de la Paix", "postal_code": postal_code, "city": city},
        "items": items,
        "total_cents": sum(item["quantity"] * item["unit_price_cents"] for item in items),
        "currency": "EUR",
    }


def produce(args, config):
    producer = Producer(config)
    counts = {"delivered": 0, "failed": 0}
    sizes = 0

    def on_delivery(err, _msg):
        counts["failed" if err else "delivered"] += 1

    started = time.monotonic()
    for i in range(args.count):
        if args.rate:
            due = started + i / args.rate
            while time.monotonic() < due:
                producer.poll(max(0.0, due - time.monotonic()))
        order = make_order()
        value = json.dumps(order).encode()
        sizes += len(value)
        while True:
            try:
                producer.produce(args.topic, key=order["customer_id"], value=value, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    left = producer.flush(60)
    print(json.dumps({
        "delivered": counts["delivered"],
        "failed": counts["failed"] + left,
        "payload_bytes": sizes // max(1, args.count),
        "elapsed_ms": (time.monotonic() - started) * 1000.0,
    }), flush=True)
    return 0 if counts["delivered"] == args.count else 1


def consume(args, config):
    ready = []
    consumer = Consumer(config)
    consumer.subscribe([args.topic], on_assign=lambda _c, partitions: ready.append(len(partitions)))
    orders = 0
    revenue = 0
    per_customer = defaultdict(int)
    per_item = defaultdict(int)
    created = []
    latencies = []
    first = None
    announced = False
    while orders < args.count:
        msg = consumer.poll(0.1)
        if not announced and any(ready):
            announced = True
            print(json.dumps({"event": "ready"}), flush=True)
        if msg is None:
            continue
        if msg.error():
            print(f"consumer error: {msg.error()}", file=sys.stderr)
            continue
        if first is None:
            first = time.monotonic()
        order = json.loads(msg.value())
        revenue += order["total_cents"]
        per_customer[order["customer_id"]] += 1
        for item in order["items"]:
            per_item[item["sku"]] += item["quantity"]
        if args.latency:
            created_at = msg.timestamp()[1]
            created.append(created_at)
            latencies.append(int(time.time() * 1000) - created_at)
        consumer.store_offsets(message=msg)
        orders += 1
    elapsed = time.monotonic() - first if first is not None else 0.0
    consumer.commit(asynchronous=False)
    consumer.close()
    print(json.dumps({
        "count": orders,
        "elapsed_ms": elapsed * 1000.0,
        "created_ms": created,
        "latencies_ms": latencies,
    }), flush=True)
    return 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["produce", "consume"])
    parser.add_argument("--config", required=True, help="librdkafka properties as a JSON object")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--latency", action="store_true")
    args = parser.parse_args()
    config = json.loads(args.config)
    return produce(args, config) if args.mode == "produce" else consume(args, config)


if __name__ == "__main__":
    sys.exit(main())
