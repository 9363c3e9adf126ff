// Lab uploader (a lab, LAB_TOKEN): reads a CSV of results and records them with ResultService.RecordResults
// in batches of 100. Each batch has one request_id, kept across its retries (UNAVAILABLE, DEADLINE_EXCEEDED,
// RESOURCE_EXHAUSTED after its RetryInfo delay), so a retry after a lost response never records twice.
// Prints the outcome counts and every rejected item with its field path, reason and description.
// Exit status: 0 all recorded, 1 some item rejected, 2 a batch failed (or a usage problem).
//
//   npx tsx clients/typescript/src/lab_uploader.ts --results .run/demo/lab-results.csv
import * as fs from "node:fs";
import { randomUUID } from "node:crypto";
import { parseArgs } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { create } from "@bufbuild/protobuf";
import { TimestampSchema, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  RecordResultsRequestSchema,
  RecordingStatus,
  ResultSubmissionSchema,
  ResultService,
  type RecordResultsRequest,
  type RecordResultsResponse,
  type ResultSubmission,
} from "./gen/covidtest/result/v1/result_service_pb";
import { Outcome } from "./gen/covidtest/type/v1/testing_pb";
import {
  Rpc,
  backoffMs,
  channelTo,
  die,
  describeError,
  env,
  errorDetails,
  formatViolation,
  isServiceError,
  note,
  positive,
  count,
  sleep,
} from "./common";

const { values: args } = parseArgs({
  options: {
    results: { type: "string" },
    "batch-size": { type: "string", default: "100" },
    deadline: { type: "string", default: "30" },
    "retry-for": { type: "string", default: "120" },
  },
});

const COLUMNS = ["sample_barcode", "outcome", "tested_at", "method", "lab_reference"] as const;
const OUTCOMES: Record<string, Outcome> = {
  NEGATIVE: Outcome.NEGATIVE,
  POSITIVE: Outcome.POSITIVE,
  INCONCLUSIVE: Outcome.INCONCLUSIVE,
};
const RETRYABLE = new Set([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED, grpc.status.RESOURCE_EXHAUSTED]);

/** One data line of the CSV, turned into a submission (or why it could not be). */
interface Row {
  line: number;
  barcode: string;
  submission?: ResultSubmission;
  problem?: string;
}

/** RFC 4180 fields of one line (a record is one line): commas separate, double quotes enclose, "" is a quote inside quotes. */
function splitCsvLine(text: string): string[] {
  const fields: string[] = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted && c === '"' && text[i + 1] === '"') {
      field += '"';
      i++;
    } else if (c === '"') {
      quoted = !quoted;
    } else if (c === "," && !quoted) {
      fields.push(field);
      field = "";
    } else {
      field += c;
    }
  }
  fields.push(field);
  return fields;
}

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/;

/** An RFC 3339 time as a Timestamp, to the nanosecond; undefined if it is not one (or not a real date). */
function parseTimestamp(text: string): Timestamp | undefined {
  const m = RFC3339.exec(text);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, fraction, zone] = m;
  const ms = Date.parse(`${y}-${mo}-${d}T${h}:${mi}:${s}${zone.toUpperCase()}`);
  const calendar = new Date(Date.UTC(Number(y), Number(mo) - 1, Number(d)));
  if (Number.isNaN(ms) || calendar.getUTCDate() !== Number(d) || Number(h) > 23 || Number(mi) > 59 || Number(s) > 59) {
    return undefined;
  }
  const nanos = fraction ? Number(fraction.slice(1).padEnd(9, "0")) : 0;
  return create(TimestampSchema, { seconds: BigInt(ms / 1000), nanos });
}

function readRows(file: string): Row[] {
  const lines = fs
    .readFileSync(file === "-" ? 0 : file, "utf8")
    .replace(/^\uFEFF/, "") // a byte order mark, as spreadsheets write
    .split(/\r?\n/);
  const header = splitCsvLine(lines[0] ?? "").map((c) => c.trim());
  const index = Object.fromEntries(COLUMNS.map((c) => [c, header.indexOf(c)]));
  const missing = COLUMNS.filter((c) => index[c] < 0);
  if (missing.length) die(`${file}: the header line lacks ${missing.join(", ")} (expected ${COLUMNS.join(",")})`);
  const rows: Row[] = [];
  lines.slice(1).forEach((text, i) => {
    if (!text.trim()) return;
    const fields = splitCsvLine(text);
    const get = (c: (typeof COLUMNS)[number]) => (fields[index[c]] ?? "").trim();
    const row: Row = { line: i + 2, barcode: get("sample_barcode") };
    const outcome = OUTCOMES[get("outcome")];
    const testedAt = parseTimestamp(get("tested_at"));
    if (outcome === undefined) {
      const given = JSON.stringify(get("outcome"));
      row.problem = `outcome FIELD_FORMAT_INVALID: ${given} is not NEGATIVE, POSITIVE or INCONCLUSIVE`;
    } else if (testedAt === undefined) {
      row.problem = `tested_at FIELD_FORMAT_INVALID: ${JSON.stringify(get("tested_at"))} is not an RFC 3339 time`;
    } else {
      row.submission = create(ResultSubmissionSchema, {
        target: { case: "sampleBarcode", value: row.barcode },
        outcome,
        testedAt,
        method: get("method"),
        labReference: get("lab_reference"),
      });
    }
    rows.push(row);
  });
  return rows;
}

/** RecordResults with the request (and so its request_id) unchanged across retries, for at most `retryForMs`. */
async function record(
  rpc: Rpc,
  request: RecordResultsRequest,
  label: string,
  deadlineMs: number,
  retryForMs: number,
): Promise<RecordResultsResponse> {
  const started = Date.now();
  for (let attempt = 1; ; attempt++) {
    try {
      return await rpc.unary(ResultService.method.recordResults, request, deadlineMs);
    } catch (err) {
      if (!isServiceError(err) || !RETRYABLE.has(err.code)) throw err;
      let delay = backoffMs(attempt - 1, 500, 10_000);
      if (err.code === grpc.status.RESOURCE_EXHAUSTED) delay = errorDetails(err).retryDelayMs ?? delay;
      if (Date.now() + delay - started > retryForMs) throw err;
      note(`${label}: ${describeError(err)}`);
      note(`${label}: retrying in ${(delay / 1000).toFixed(2)} s (attempt ${attempt + 1})`);
      await sleep(delay);
    }
  }
}

async function main(): Promise<number> {
  const file = args.results ?? die(`--results FILE is required: a CSV with the columns ${COLUMNS.join(",")}`);
  const batchSize = count("batch-size", args["batch-size"]);
  if (batchSize > 1000) die("--batch-size is at most 1000");
  const deadlineMs = positive("deadline", args.deadline) * 1000;
  const retryForMs = positive("retry-for", args["retry-for"]) * 1000;

  const rows = readRows(file);
  const counts = { recorded: 0, already: 0, rejected: 0 };
  for (const row of rows.filter((r) => r.problem)) {
    counts.rejected++;
    console.log(`rejected line ${row.line} sample ${row.barcode}: ${row.problem} (not sent)`);
  }
  const valid = rows.filter((r) => r.submission);
  const batches = Math.ceil(valid.length / batchSize);
  const rpc = new Rpc(channelTo("COVIDTEST_RESULT_ADDR"), env("LAB_TOKEN"));
  let failed = false;
  for (let b = 0; b < batches; b++) {
    const batch = valid.slice(b * batchSize, (b + 1) * batchSize);
    const request = create(RecordResultsRequestSchema, {
      requestId: randomUUID(),
      results: batch.map((r) => r.submission as ResultSubmission),
    });
    const label = `batch ${b + 1}/${batches} request_id=${request.requestId}`;
    note(`${label}: sending ${batch.length} results`);
    let reply: RecordResultsResponse;
    try {
      reply = await record(rpc, request, label, deadlineMs, retryForMs);
    } catch (err) {
      const left = valid.length - b * batchSize;
      console.log(`${label} failed: ${describeError(err)}`);
      console.log(`${left} results (lines ${batch[0].line} onwards) not recorded`);
      failed = true;
      break;
    }
    for (const item of reply.results) {
      const row = batch[item.index];
      if (item.status === RecordingStatus.REJECTED) {
        const why = item.violations.length ? item.violations.map(formatViolation) : ["REJECTED"];
        for (const v of why) console.log(`rejected line ${row.line} sample ${row.barcode}: ${v}`);
      }
    }
    counts.recorded += reply.recordedCount;
    counts.already += reply.alreadyRecordedCount;
    counts.rejected += reply.rejectedCount;
    console.log(
      `${label}: ${reply.recordedCount} recorded, ${reply.alreadyRecordedCount} already recorded, ` +
        `${reply.rejectedCount} rejected`,
    );
  }
  rpc.close();
  console.log(
    `total: ${counts.recorded} recorded, ${counts.already} already recorded, ${counts.rejected} rejected` +
      ` of ${rows.length} lines`,
  );
  return failed ? 2 : counts.rejected ? 1 : 0;
}

main()
  .then((code) => process.exit(code))
  .catch((err) => die(`lab uploader failed: ${describeError(err)}`, 2));
