// Feed consumer (a partner such as the Bluezone backend, PARTNER_TOKEN): streams
// PublishService.StreamResultEvents from the position after the last one in its own durable store,
// processes each event once by its position (a position already stored is skipped), commits the store,
// then acknowledges the highest committed position in batches. Any stream error or end: reconnect with
// exponential backoff and jitter, again from the store.
//
//   npx tsx clients/typescript/src/feed_consumer.ts --state .run/feed-state.json --until-idle 5
import * as fs from "node:fs";
import * as path from "node:path";
import { randomUUID } from "node:crypto";
import { parseArgs } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { PublishService, type ResultEvent } from "./gen/covidtest/publish/v1/publish_service_pb";
import { ResultEventKind } from "./gen/covidtest/type/v1/testing_pb";
import {
  Rpc,
  backoffMs,
  channelTo,
  die,
  describeError,
  env,
  errorDetails,
  isServiceError,
  note,
  positive,
  count,
} from "./common";

const { values: args } = parseArgs({
  options: {
    state: { type: "string" },
    "ack-every": { type: "string", default: "1000" },
    "ack-interval-ms": { type: "string", default: "2000" },
    "until-idle": { type: "string" },
    "max-events": { type: "string" },
  },
});

const STATE_FILE = args.state ?? die("--state FILE is required: the consumer's durable store");
const ACK_EVERY = count("ack-every", args["ack-every"]);
const ACK_INTERVAL_MS = positive("ack-interval-ms", args["ack-interval-ms"]);
const IDLE_MS = args["until-idle"] === undefined ? undefined : positive("until-idle", args["until-idle"]) * 1000;
const MAX_EVENTS = args["max-events"] === undefined ? undefined : count("max-events", args["max-events"]);
// The server sends a heartbeat at least every 15 s; silence for 60 s means a dead stream (publish_service.proto).
const SILENCE_MS = 60_000;
const RECONNECT_INITIAL_MS = 500;
const RECONNECT_MAX_MS = 30_000;
// Errors that reconnecting cannot cure: exit and say why.
const FATAL = new Set([
  grpc.status.UNAUTHENTICATED,
  grpc.status.PERMISSION_DENIED,
  grpc.status.INVALID_ARGUMENT,
  grpc.status.OUT_OF_RANGE,
  grpc.status.UNIMPLEMENTED,
]);

/** What the consumer keeps of an event: ids only, never the person or the QR text. */
interface StoredEvent {
  kind: string;
  sample_barcode?: string;
  sample_id?: string;
  result_id?: string;
  certificate_id?: string;
  revoked_certificate_id?: string;
}

/** The durable store: the last processed position and every processed event by its position. */
interface Store {
  format: 1;
  position: number;
  acknowledged: number;
  events: Record<string, StoredEvent>;
}

function loadStore(file: string): Store {
  if (!fs.existsSync(file)) return { format: 1, position: 0, acknowledged: 0, events: {} };
  const store = JSON.parse(fs.readFileSync(file, "utf8")) as Store;
  if (store.format !== 1 || !Number.isSafeInteger(store.position)) die(`${file} is not a feed consumer store`);
  return store;
}

/** Writes the store atomically and durably: a temporary file, fsync, rename over the old one, fsync the folder. */
function commitStore(file: string, store: Store): void {
  const temporary = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(temporary, "w", 0o600);
  try {
    fs.writeSync(fd, JSON.stringify(store));
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(temporary, file);
  const dir = fs.openSync(path.dirname(path.resolve(file)), "r");
  try {
    fs.fsyncSync(dir);
  } finally {
    fs.closeSync(dir);
  }
}

function kindName(kind: ResultEventKind): string {
  return ResultEventKind[kind] ?? `KIND_${kind}`; // a kind newer than this client: processed like any other
}

function summary(event: ResultEvent): StoredEvent {
  const stored: StoredEvent = { kind: kindName(event.kind) };
  const sample = event.result ?? event.sample;
  if (sample) {
    stored.sample_barcode = sample.sampleBarcode;
    stored.sample_id = sample.sampleId;
  }
  if (event.result) stored.result_id = event.result.resultId;
  if (event.certificate) stored.certificate_id = event.certificate.certificateId;
  if (event.revokedCertificateId) stored.revoked_certificate_id = event.revokedCertificateId;
  return stored;
}

function logLine(position: number, e: StoredEvent): string {
  const parts = [`position ${position}`, e.kind];
  if (e.sample_barcode) parts.push(`sample ${e.sample_barcode}`);
  if (e.result_id) parts.push(`result ${e.result_id}`);
  if (e.certificate_id) parts.push(`certificate ${e.certificate_id}`);
  if (e.revoked_certificate_id) parts.push(`revokes ${e.revoked_certificate_id}`);
  return parts.join(" ");
}

class Consumer {
  private readonly store = loadStore(STATE_FILE);
  private readonly rpc = new Rpc(
    // A long-lived stream: keepalive pings find a peer that froze or lost its network (the server accepts one
    // every 10 s), so the stream fails and the consumer reconnects instead of waiting on a silent socket.
    channelTo("COVIDTEST_PUBLISH_ADDR", {
      "grpc.keepalive_time_ms": 20_000,
      "grpc.keepalive_timeout_ms": 10_000,
      "grpc.keepalive_permit_without_calls": 1,
    }),
    env("PARTNER_TOKEN"),
  );
  private processed = 0; // events processed by this run
  private head = 0; // the feed head the last message reported
  private lastEventAt = Date.now();
  private firstUnackedAt: number | undefined;
  private acking: Promise<void> | undefined;
  private finished = false;
  private stopStream: (() => void) | undefined;

  async run(): Promise<number> {
    for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => this.finish(`${signal} received`));
    if (this.store.position > this.store.acknowledged) this.firstUnackedAt = 0; // committed before a crash, not acked
    const ticker = setInterval(() => this.tick(), 100);
    let failures = 0;
    try {
      while (!this.finished) {
        const from = this.store.position > 0 ? this.store.position + 1 : 0;
        note(`streaming from ${from > 0 ? `position ${from}` : "the partner's cursor (empty store)"}`);
        const outcome = await this.stream(from);
        if (this.finished) break;
        if (outcome.received) failures = 0;
        if (isServiceError(outcome.error) && FATAL.has(outcome.error.code)) {
          note(`stream failed: ${describeError(outcome.error)}`);
          await this.finalAck();
          return 1;
        }
        let delay = backoffMs(failures++, RECONNECT_INITIAL_MS, RECONNECT_MAX_MS);
        if (isServiceError(outcome.error)) delay = Math.max(delay, errorDetails(outcome.error).retryDelayMs ?? 0);
        const why = outcome.error ? describeError(outcome.error) : "the server ended the stream";
        note(`stream broken: ${why}\nreconnecting in ${(delay / 1000).toFixed(2)} s (attempt ${failures})`);
        await this.pause(delay);
      }
    } finally {
      clearInterval(ticker);
    }
    await this.finalAck();
    this.rpc.close();
    note(`stopped at position ${this.store.position}: ${this.processed} events processed`);
    return 0;
  }

  /** One stream, until it fails or ends (`error` unset: it ended) or the consumer finishes. */
  private stream(from: number): Promise<{ error?: unknown; received: boolean }> {
    return new Promise((resolve) => {
      let received = false;
      let lastMessageAt = Date.now();
      this.lastEventAt = Date.now();
      const call = this.rpc.serverStream(PublishService.method.streamResultEvents, { fromPosition: BigInt(from) });
      const silence = setInterval(() => {
        if (Date.now() - lastMessageAt > SILENCE_MS) {
          done({ error: new Error(`nothing received for ${SILENCE_MS / 1000} s`), received });
        }
      }, 1000);
      const done = (outcome: { error?: unknown; received: boolean }) => {
        clearInterval(silence);
        this.stopStream = undefined;
        call.removeAllListeners();
        call.on("error", () => {}); // the CANCELLED that cancel() causes
        call.cancel();
        resolve(outcome);
      };
      this.stopStream = () => done({ received });
      call.on("data", (message) => {
        received = true;
        lastMessageAt = Date.now();
        this.head = Math.max(this.head, Number(message.headPosition));
        try {
          this.handle(message.events);
        } catch (err) {
          die(`cannot commit the store ${STATE_FILE}: ${describeError(err)}`, 1); // nothing uncommitted is acked
        }
      });
      call.on("error", (error) => done({ error, received }));
      call.on("end", () => done({ received }));
    });
  }

  /** Process the events of one message in order, commit the store, then maybe acknowledge. */
  private handle(events: ResultEvent[]): void {
    let changed = false;
    for (const event of events) {
      if (this.finished) break;
      const position = Number(event.position);
      if (position <= this.store.position || String(position) in this.store.events) {
        note(`position ${position} already stored: skipped`);
        continue;
      }
      const stored = summary(event);
      this.store.events[String(position)] = stored;
      this.store.position = position;
      changed = true;
      this.processed++;
      this.lastEventAt = Date.now();
      process.stdout.write(`${logLine(position, stored)}\n`);
      if (MAX_EVENTS !== undefined && this.processed >= MAX_EVENTS) this.finish(`${MAX_EVENTS} events processed`);
    }
    if (!changed) return;
    commitStore(STATE_FILE, this.store);
    this.firstUnackedAt ??= Date.now();
    if (this.store.position - this.store.acknowledged >= ACK_EVERY) void this.ack();
  }

  private tick(): void {
    if (this.firstUnackedAt !== undefined && Date.now() - this.firstUnackedAt >= ACK_INTERVAL_MS) void this.ack();
    const caughtUp = this.store.position >= this.head;
    if (IDLE_MS !== undefined && this.stopStream && caughtUp && Date.now() - this.lastEventAt >= IDLE_MS) {
      this.finish(`caught up at position ${this.store.position}, no event for ${IDLE_MS / 1000} s`);
    }
  }

  /** Acknowledge the highest committed position (one acknowledgement at a time; a failed one is tried again). */
  private ack(): Promise<void> {
    if (this.acking) return this.acking;
    const position = this.store.position;
    if (position <= this.store.acknowledged) return Promise.resolve();
    this.acking = (async () => {
      try {
        const reply = await this.rpc.unary(
          PublishService.method.ackResultEvents,
          { requestId: randomUUID(), position: BigInt(position) },
          10_000,
        );
        this.store.acknowledged = Math.max(this.store.acknowledged, position);
        this.firstUnackedAt = this.store.position > this.store.acknowledged ? Date.now() : undefined;
        commitStore(STATE_FILE, this.store);
        note(`acknowledged position ${position} (cursor ${reply.acknowledgedPosition}, head ${reply.headPosition})`);
      } catch (err) {
        note(`acknowledgement of position ${position} failed, will retry: ${describeError(err)}`);
        this.firstUnackedAt = Date.now();
      } finally {
        this.acking = undefined;
      }
    })();
    return this.acking;
  }

  /** On the way out: wait for an acknowledgement in flight, then acknowledge whatever it did not cover. */
  private async finalAck(): Promise<void> {
    await this.acking;
    await this.ack();
  }

  private finish(why: string): void {
    if (this.finished) return;
    this.finished = true;
    note(`finishing: ${why}`);
    this.stopStream?.();
    this.wake?.();
  }

  private wake: (() => void) | undefined;

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}

new Consumer()
  .run()
  .then((code) => process.exit(code))
  .catch((err) => die(`feed consumer failed: ${describeError(err)}`, 1));
