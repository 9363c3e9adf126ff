// What the three reference clients share: the environment (clients/README.md), one gRPC channel per service
// with the published retry policy, bearer-token calls built from the generated descriptors, google.rpc error
// details, and backoff.
import * as fs from "node:fs";
import * as path from "node:path";
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { DescMessage, DescMethod, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import { anyUnpack, type Duration } from "@bufbuild/protobuf/wkt";
import { StatusSchema } from "./gen/google/rpc/status_pb";
import {
  BadRequestSchema,
  ErrorInfoSchema,
  LocalizedMessageSchema,
  RequestInfoSchema,
  RetryInfoSchema,
} from "./gen/google/rpc/error_details_pb";

// The platform's published retry policy (retries of UNAVAILABLE per method, timeouts, retry throttling):
// every client loads it into its channel, so the channel itself retries what is safe to retry.
export const SERVICE_CONFIG_FILE = path.resolve(__dirname, "../../../protos/service_config.json");

/** Prints `message` to stderr and exits with `code` (2: a usage or setup problem). */
export function die(message: string, code = 2): never {
  process.stderr.write(`${message}\n`);
  process.exit(code);
}

/** A required environment variable (clients/README.md lists them). */
export function env(name: string): string {
  const value = process.env[name];
  if (!value) die(`${name} is not set (see clients/README.md; for \`make run\`: set -a; . .run/clients.env; set +a)`);
  return value;
}

/** Progress and diagnostics go to stderr; a client's results go to stdout. */
export function note(message: string): void {
  process.stderr.write(`${message}\n`);
}

/**
 * A channel to the service at the address in `addressVariable`: TLS checked against COVIDTEST_CA_FILE when
 * that is set, plaintext otherwise, with protos/service_config.json as its service config.
 */
export function channelTo(addressVariable: string, options: grpc.ChannelOptions = {}): grpc.Client {
  const address = env(addressVariable);
  const caFile = process.env.COVIDTEST_CA_FILE;
  const credentials = caFile
    ? grpc.credentials.createSsl(fs.readFileSync(caFile))
    : grpc.credentials.createInsecure();
  return new grpc.Client(address, credentials, {
    "grpc.service_config": fs.readFileSync(SERVICE_CONFIG_FILE, "utf8"),
    // The published config is the one used: no lookup of one in DNS TXT records.
    "grpc.service_config_disable_resolution": 1,
    // On by default in grpc-js since 1.10; said here because the retry policy depends on it.
    "grpc.enable_retries": 1,
    ...options,
  });
}

type Unary<I extends DescMessage, O extends DescMessage> = DescMethod & { methodKind: "unary"; input: I; output: O };
type ServerStreaming<I extends DescMessage, O extends DescMessage> = DescMethod & {
  methodKind: "server_streaming";
  input: I;
  output: O;
};

/** gRPC calls described by the generated service descriptors (protoc-gen-es GenService), as one caller. */
export class Rpc {
  constructor(
    private readonly client: grpc.Client,
    private readonly token: string,
  ) {}

  /** A unary call; `timeoutMs` sets its deadline (otherwise the service config's timeout applies). */
  unary<I extends DescMessage, O extends DescMessage>(
    method: Unary<I, O>,
    request: MessageShape<I> | MessageInitShape<I>,
    timeoutMs?: number,
  ): Promise<MessageShape<O>> {
    const message = create(method.input, request as MessageInitShape<I>);
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(
        pathOf(method),
        (value: MessageShape<I>) => Buffer.from(toBinary(method.input, value)),
        (bytes: Buffer) => fromBinary(method.output, bytes),
        message,
        this.metadata(),
        timeoutMs === undefined ? {} : { deadline: new Date(Date.now() + timeoutMs) },
        (err, reply) => (err ? reject(err) : resolve(reply as MessageShape<O>)),
      );
    });
  }

  /** A server-streaming call: a readable stream of response messages ('data', then 'error' or 'end'). */
  serverStream<I extends DescMessage, O extends DescMessage>(
    method: ServerStreaming<I, O>,
    request: MessageInitShape<I>,
  ): grpc.ClientReadableStream<MessageShape<O>> {
    return this.client.makeServerStreamRequest(
      pathOf(method),
      (value: MessageShape<I>) => Buffer.from(toBinary(method.input, value)),
      (bytes: Buffer) => fromBinary(method.output, bytes),
      create(method.input, request),
      this.metadata(),
    );
  }

  close(): void {
    this.client.close();
  }

  private metadata(): grpc.Metadata {
    const metadata = new grpc.Metadata();
    metadata.set("authorization", `Bearer ${this.token}`);
    return metadata;
  }
}

function pathOf(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}

export function isServiceError(err: unknown): err is grpc.ServiceError {
  return err instanceof Error && typeof (err as Partial<grpc.ServiceError>).code === "number";
}

/** "UNAVAILABLE" for grpc.status.UNAVAILABLE. */
export function codeName(code: grpc.status): string {
  return grpc.status[code] ?? `CODE_${code}`;
}

export interface FieldProblem {
  field: string;
  reason: string;
  description: string;
}

/** What the platform says about a failed call: google.rpc.Status from the grpc-status-details-bin trailer. */
export interface ErrorDetails {
  code: grpc.status;
  message: string;
  reason: string;
  metadata: Record<string, string>;
  violations: FieldProblem[];
  retryDelayMs?: number;
  requestId: string;
  localized: string;
}

export function errorDetails(err: grpc.ServiceError): ErrorDetails {
  const out: ErrorDetails = {
    code: err.code,
    message: err.details,
    reason: "",
    metadata: {},
    violations: [],
    requestId: "",
    localized: "",
  };
  const [bin] = err.metadata?.get("grpc-status-details-bin") ?? [];
  if (!(bin instanceof Buffer)) return out;
  const status = fromBinary(StatusSchema, bin);
  out.message = status.message || out.message;
  for (const detail of status.details) {
    const info = anyUnpack(detail, ErrorInfoSchema);
    if (info) {
      out.reason = info.reason;
      out.metadata = info.metadata;
    }
    const bad = anyUnpack(detail, BadRequestSchema);
    for (const v of bad?.fieldViolations ?? []) {
      out.violations.push({ field: v.field, reason: v.reason, description: v.description });
    }
    const retry = anyUnpack(detail, RetryInfoSchema);
    if (retry?.retryDelay) out.retryDelayMs = durationMs(retry.retryDelay);
    const request = anyUnpack(detail, RequestInfoSchema);
    if (request) out.requestId = request.requestId;
    const localized = anyUnpack(detail, LocalizedMessageSchema);
    if (localized) out.localized = `${localized.locale}: ${localized.message}`;
  }
  return out;
}

/** One line per fact: the status code and message, then reason, field violations, retry delay, request id. */
export function describeError(err: unknown): string {
  if (!isServiceError(err)) return err instanceof Error ? err.message : String(err);
  const d = errorDetails(err);
  const lines = [`${codeName(d.code)}: ${d.message}`];
  if (d.reason) {
    const meta = Object.entries(d.metadata).map(([k, v]) => ` ${k}=${v}`).join("");
    lines.push(`  reason ${d.reason}${meta}`);
  }
  for (const v of d.violations) lines.push(`  ${formatViolation(v)}`);
  if (d.retryDelayMs !== undefined) lines.push(`  retry after ${(d.retryDelayMs / 1000).toFixed(3)} s`);
  if (d.requestId) lines.push(`  request id ${d.requestId} (quote it to support)`);
  if (d.localized) lines.push(`  message ${d.localized}`);
  return lines.join("\n");
}

/** "results[3].tested_at TESTED_BEFORE_COLLECTED: must not be before the sample's collection time" */
export function formatViolation(v: FieldProblem): string {
  return `${v.field} ${v.reason || "INVALID"}: ${v.description}`;
}

export function durationMs(d: Duration): number {
  return Number(d.seconds) * 1000 + d.nanos / 1e6;
}

/** Exponential backoff with jitter: a delay in [ceiling/2, ceiling), ceiling = min(max, initial * 2^attempt). */
export function backoffMs(attempt: number, initialMs: number, maxMs: number): number {
  const ceiling = Math.min(maxMs, initialMs * 2 ** attempt);
  return ceiling / 2 + (Math.random() * ceiling) / 2;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A positive number from a command-line option, or exit 2. */
export function positive(name: string, value: string | undefined): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) die(`--${name} must be a positive number, not ${JSON.stringify(value)}`);
  return n;
}

/** A positive whole number from a command-line option, or exit 2. */
export function count(name: string, value: string | undefined): number {
  const n = positive(name, value);
  if (!Number.isSafeInteger(n)) die(`--${name} must be a whole number, not ${JSON.stringify(value)}`);
  return n;
}
