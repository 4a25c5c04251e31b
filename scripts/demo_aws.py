"""Demo resources and traffic on the local emulator, with boto3 (installed with moto).

    demo_aws.py create            tables, bus, catch-all rule -> SQS queue
    demo_aws.py add-books N       N books, each with its outbox row, one transaction each
    demo_aws.py remove-book NAME  delete a book and write its BookRemoved outbox row
    demo_aws.py events N [SECS]   wait for N events on the queue, print them, delete them
    demo_aws.py redeliver TYPE    send the last TYPE event seen on the bus to the consumer's queue again
    demo_aws.py presentation NAME print the book's PresentationTable item (or that there is none)

Talks only to AWS_ENDPOINT_URL (set by `scripts/dev-stack env`).
"""
import json
import os
import sys
import time
import uuid

import boto3

BUS = "outbox-demo"
QUEUE = "outbox-demo-events"
EVENTS_TABLE = "EventsTable"
BOOKS_TABLE = "BooksTable"
PRESENTATION_TABLE = "PresentationTable"
IDEMPOTENCY_TABLE = "IdempotencyTable"
CONSUMER_QUEUE = "book-consumer"
BOOKS = [
    ("Team Topologies", ["Manuel Pais", "Matthew Skelton"], 2019),
    ("Accelerate", ["Nicole Forsgren", "Jez Humble", "Gene Kim"], 2018),
    ("Domain-Driven Design", ["Eric Evans"], 2003),
    ("The Phoenix Project", ["Gene Kim", "Kevin Behr", "George Spafford"], 2013),
    ("Release It!", ["Michael T. Nygard"], 2007),
]


def client(name):
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint or not endpoint.startswith("http://127.0.0.1:"):
        sys.exit("AWS_ENDPOINT_URL must point at the local emulator (scripts/dev-stack env)")
    return boto3.client(name, endpoint_url=endpoint, region_name="us-east-1")


def create():
    ddb = client("dynamodb")
    existing = ddb.list_tables()["TableNames"]
    if EVENTS_TABLE not in existing:
        ddb.create_table(
            TableName=EVENTS_TABLE,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                       {"AttributeName": "sk", "KeyType": "RANGE"}],
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
    if BOOKS_TABLE not in existing:
        ddb.create_table(
            TableName=BOOKS_TABLE,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "name", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "name", "KeyType": "HASH"}],
        )
    for table, key in [(PRESENTATION_TABLE, "name"), (IDEMPOTENCY_TABLE, "id")]:
        if table not in existing:
            ddb.create_table(
                TableName=table,
                BillingMode="PAY_PER_REQUEST",
                AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
                KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
            )
    events = client("events")
    if BUS not in [b["Name"] for b in events.list_event_buses()["EventBuses"]]:
        events.create_event_bus(Name=BUS)
    sqs = client("sqs")
    queue_url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="all-outbox-demo-events", EventBusName=BUS,
                    EventPattern=json.dumps({"source": [{"prefix": ""}]}))
    events.put_targets(Rule="all-outbox-demo-events", EventBusName=BUS,
                       Targets=[{"Id": "queue", "Arn": queue_arn}])
    # The consumer's rule: the book events, into the queue its local runner polls.
    consumer_url = sqs.create_queue(QueueName=CONSUMER_QUEUE)["QueueUrl"]
    consumer_arn = sqs.get_queue_attributes(QueueUrl=consumer_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="books-to-consumer", EventBusName=BUS,
                    EventPattern=json.dumps({"detail-type": ["BookAdded", "BookRemoved"]}))
    events.put_targets(Rule="books-to-consumer", EventBusName=BUS,
                       Targets=[{"Id": "book-consumer", "Arn": consumer_arn}])
    print(f"created {EVENTS_TABLE} (with stream), {BOOKS_TABLE}, {PRESENTATION_TABLE}, {IDEMPOTENCY_TABLE}, "
          f"bus {BUS}, rules -> queues {QUEUE} (all events), {CONSUMER_QUEUE} (the consumer's)")


def outbox_row(event_type, data):
    event_id = str(uuid.uuid4())
    return event_id, {
        "pk": {"S": event_id},
        "sk": {"S": event_type},
        "eventType": {"S": event_type},
        "eventData": {"M": data},
        "expiresAt": {"N": str(int(time.time()) + 7 * 24 * 3600)},
    }


def add_books(n):
    ddb = client("dynamodb")
    for i in range(n):
        name, authors, year = BOOKS[i % len(BOOKS)]
        if i >= len(BOOKS):
            name = f"{name} ({i // len(BOOKS) + 1})"
        book = {"name": {"S": name}, "authors": {"L": [{"S": a} for a in authors]}, "year": {"N": str(year)}}
        event_id, row = outbox_row("BookAdded", book)
        ddb.transact_write_items(TransactItems=[
            {"Put": {"TableName": BOOKS_TABLE, "Item": book}},
            {"Put": {"TableName": EVENTS_TABLE, "Item": row}},
        ])
        print(f"POST /book {name!r} -> outbox event {event_id}")


def remove_book(name):
    ddb = client("dynamodb")
    event_id, row = outbox_row("BookRemoved", {"name": {"S": name}})
    ddb.transact_write_items(TransactItems=[
        {"Delete": {"TableName": BOOKS_TABLE, "Key": {"name": {"S": name}}}},
        {"Put": {"TableName": EVENTS_TABLE, "Item": row}},
    ])
    print(f"DELETE /book {name!r} -> outbox event {event_id}")


def events(n, seconds):
    sqs = client("sqs")
    url = sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]
    got = []
    deadline = time.time() + seconds
    while len(got) < n and time.time() < deadline:
        resp = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for m in resp.get("Messages", []):
            got.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    for e in got:
        d = e["detail"]
        data = d.get("eventData", {})
        print(f"  {e['detail-type']:<12} source={e['source']} eventId={d.get('eventId')} "
              f"book={data.get('name')!r}")
    if len(got) < n:
        sys.exit(f"only {len(got)} of {n} events arrived within {seconds}s")
    with open(SEEN, "w") as f:
        json.dump(got, f)


SEEN = os.path.join(os.environ.get("DEV_STACK_DIR", ".dev-stack"), "events-seen.json")


def redeliver(detail_type):
    with open(SEEN) as f:
        seen = [e for e in json.load(f) if e["detail-type"] == detail_type]
    if not seen:
        sys.exit(f"no {detail_type} event seen yet")
    sqs = client("sqs")
    url = sqs.get_queue_url(QueueName=CONSUMER_QUEUE)["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(seen[-1]))
    print(f"  sent {detail_type} eventId={seen[-1]['detail'].get('eventId')} to {CONSUMER_QUEUE} again")


def presentation(name):
    item = client("dynamodb").get_item(TableName=PRESENTATION_TABLE, Key={"name": {"S": name}},
                                       ConsistentRead=True).get("Item")
    if item is None:
        print(f"  {PRESENTATION_TABLE}: no item for {name!r}")
        return
    authors = ", ".join(a["S"] for a in item["authors"]["L"])
    print(f"  {PRESENTATION_TABLE}: {item['name']['S']!r} ({item['year']['N']}) by {authors}; "
          f"timesApplied={item['timesApplied']['N']}")


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "create":
        create()
    elif cmd == "add-books":
        add_books(int(sys.argv[2]))
    elif cmd == "remove-book":
        remove_book(sys.argv[2])
    elif cmd == "redeliver":
        redeliver(sys.argv[2])
    elif cmd == "presentation":
        presentation(sys.argv[2])
    elif cmd == "events":
        events(int(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else 30)
    else:
        sys.exit(__doc__)
