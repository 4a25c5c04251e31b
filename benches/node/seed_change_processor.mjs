// Issue #28's yardstick, run beside the relay on the same machine: the seed's ChangeProcessor
// logic in Node, on the same 200,000 records as `relay_throughput_seed_records`
// (src/relay/tests/throughput.rs, `seed_record`): 80 % INSERT of a book (`name` S, `authors` SS,
// `year` N), 20 % REMOVE. Each Lambda invocation gets the stream's event as JSON text (batches
// of 100 records, the event source mapping's default); the handler parses it, keeps INSERT and
// REMOVE, unmarshalls the image, builds the seed's PutEvents entries (`config/cdc.toml`'s
// details) and chunks them by 10. Nothing is sent: this is the logic's CPU, as the relay's loop
// with fakes is the relay's.
//
//   taskset -c 1 node benches/node/seed_change_processor.mjs
//
// Prints records/s, CPU seconds and peak RSS. Only Node's standard library.

const TOTAL = Number(process.env.SEED_RECORDS ?? 200000);
const BATCH = 100;
const ARN = "arn:aws:dynamodb:eu-north-1:123456789012:table/BooksTable/stream/2026-01-01T00:00:00.000";

function seedRecord(shard, i) {
  const name = `Book ${shard}-${i}`;
  const image = {
    name: { S: name },
    authors: { SS: ["Manuel Pais", "Matthew Skelton"] },
    year: { N: "2019" },
  };
  const remove = i % 5 === 4;
  const dynamodb = {
    ApproximateCreationDateTime: 1764547200,
    Keys: { name: { S: name } },
    SequenceNumber: `${1000000 + i}`,
    SizeBytes: 120,
    StreamViewType: "NEW_AND_OLD_IMAGES",
  };
  dynamodb[remove ? "OldImage" : "NewImage"] = image;
  return {
    eventID: `s${shard}-e${i}`,
    eventName: remove ? "REMOVE" : "INSERT",
    eventVersion: "1.1",
    eventSource: "aws:dynamodb",
    awsRegion: "eu-north-1",
    eventSourceARN: ARN,
    dynamodb,
  };
}

// DynamoDB JSON to plain JSON, as @aws-sdk/util-dynamodb's `unmarshall` does for these types
// (sets as arrays, as the relay writes them).
function unmarshallValue(typed) {
  const [type, value] = Object.entries(typed)[0];
  switch (type) {
    case "S":
    case "B":
      return value;
    case "N":
      return Number(value);
    case "BOOL":
      return value;
    case "NULL":
      return null;
    case "SS":
    case "BS":
      return [...value];
    case "NS":
      return value.map(Number);
    case "L":
      return value.map(unmarshallValue);
    case "M":
      return unmarshall(value);
    default:
      throw new Error(`unknown type ${type}`);
  }
}

function unmarshall(item) {
  const out = {};
  for (const [k, v] of Object.entries(item)) out[k] = unmarshallValue(v);
  return out;
}

// The seed's ChangeProcessor: one entry per INSERT or REMOVE, PutEvents calls of 10.
function handler(eventText) {
  const event = JSON.parse(eventText);
  const entries = [];
  for (const record of event.Records) {
    if (record.eventName === "INSERT") {
      const book = unmarshall(record.dynamodb.NewImage);
      entries.push({
        EventBusName: "default",
        Source: "OutboxDemo.ChangeProcessor",
        DetailType: "BookAdded",
        Detail: JSON.stringify({
          eventId: record.eventID,
          name: book.name,
          authors: book.authors,
          publishedYear: book.year,
        }),
      });
    } else if (record.eventName === "REMOVE") {
      const keys = unmarshall(record.dynamodb.Keys);
      entries.push({
        EventBusName: "default",
        Source: "OutboxDemo.ChangeProcessor",
        DetailType: "BookRemoved",
        Detail: JSON.stringify({ eventId: record.eventID, name: keys.name }),
      });
    }
  }
  const calls = [];
  for (let i = 0; i < entries.length; i += 10) calls.push({ Entries: entries.slice(i, i + 10) });
  return calls;
}

// The events as Lambda hands them over (text), made before the clock starts.
const events = [];
for (let start = 0; start < TOTAL; start += BATCH) {
  const records = [];
  for (let i = start; i < Math.min(start + BATCH, TOTAL); i++) records.push(seedRecord(0, i));
  events.push(JSON.stringify({ Records: records }));
}

const cpu0 = process.cpuUsage();
const t0 = process.hrtime.bigint();
let published = 0;
for (const text of events) {
  for (const call of handler(text)) published += call.Entries.length;
}
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
const cpu = process.cpuUsage(cpu0);
const cpuSeconds = (cpu.user + cpu.system) / 1e6;
if (published !== TOTAL) throw new Error(`published ${published} of ${TOTAL}`);
console.log(
  `node seed logic: ${TOTAL} records, ${(TOTAL / seconds).toFixed(0)} records/s ` +
    `(${((seconds / TOTAL) * 1e6).toFixed(2)} us per record), ` +
    `${cpuSeconds.toFixed(2)} CPU s, peak RSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`,
);
