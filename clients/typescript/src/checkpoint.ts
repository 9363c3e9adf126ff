// Checkpoint client (a checkpoint device, DEVICE_TOKEN): VerifyService.Verify of one scanned QR, within a
// deadline (3 s unless --deadline), retried on UNAVAILABLE while the deadline allows, and the verdict shown.
// Exit status: 0 on a verdict, whatever it is (only VALID means accept); 2 when no verdict came (an RPC error).
//
//   npx tsx clients/typescript/src/checkpoint.ts --qr .run/demo/certificate-qr.txt
import * as fs from "node:fs";
import { parseArgs } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { VerifyService, type VerifyResponse } from "./gen/covidtest/verify/v1/verify_service_pb";
import { MalformedStage, StatusSource, Verdict } from "./gen/covidtest/type/v1/verdict_pb";
import { EntryType } from "./gen/covidtest/type/v1/certificate_pb";
import { TestType } from "./gen/covidtest/type/v1/testing_pb";
import { Rpc, backoffMs, channelTo, die, describeError, env, isServiceError, note, positive, sleep } from "./common";

const { values: args } = parseArgs({
  options: {
    qr: { type: "string" },
    deadline: { type: "string", default: "3" },
  },
});

function time(t: Timestamp | undefined): string {
  return t ? timestampDate(t).toISOString() : "-";
}

/** What the officer reads: the verdict first, then what the response says about it. */
function show(r: VerifyResponse): string {
  const lines = [Verdict[r.verdict] ?? `VERDICT_${r.verdict}`];
  const add = (label: string, value: string | undefined) => {
    if (value) lines.push(`  ${label.padEnd(16)}${value}`);
  };
  add("reason", r.reason);
  if (r.verdict === Verdict.STATUS_UNKNOWN) {
    add("officer", r.acceptWithWarning ? "let through with a warning (province policy)" : "refuse (province policy)");
  }
  if (r.malformedStage !== MalformedStage.UNSPECIFIED) add("malformed at", MalformedStage[r.malformedStage]);
  add("schema error", r.schemaError);
  add("holder", [r.familyName, r.givenName].filter(Boolean).join(", "));
  add("transliterated", [r.familyNameTransliterated, r.givenNameTransliterated].filter(Boolean).join("<<"));
  add("date of birth", r.dateOfBirth);
  if (r.entryType !== EntryType.UNSPECIFIED) add("entry", EntryType[r.entryType]);
  if (r.testType !== TestType.UNSPECIFIED) add("test", TestType[r.testType]);
  if (r.sampleCollectedAt) add("sample taken", time(r.sampleCollectedAt));
  if (r.validUntil) add("valid until", time(r.validUntil));
  add("certificate", r.certificateId);
  add("issuer", r.issuerCountry);
  if (r.kid.length) {
    add("signature", `${r.signatureValid ? "valid" : "not valid"} (kid ${Buffer.from(r.kid).toString("hex")})`);
  }
  if (r.statusSource !== StatusSource.UNSPECIFIED) add("status from", StatusSource[r.statusSource]);
  if (r.ruleId) add("rule", `${r.ruleId} version ${r.ruleVersion}`);
  add("checked at", time(r.checkedAt));
  return lines.join("\n");
}

async function main(): Promise<number> {
  const source = args.qr ?? die("--qr FILE is required (- reads the scanned text from stdin)");
  const qr = fs.readFileSync(source === "-" ? 0 : source, "utf8").trim();
  const budgetMs = positive("deadline", args.deadline) * 1000;
  const rpc = new Rpc(channelTo("COVIDTEST_VERIFY_ADDR"), env("DEVICE_TOKEN"));
  const deadline = Date.now() + budgetMs;
  let unavailable: unknown; // the last UNAVAILABLE, said again if the deadline then cuts a retry short
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        // The whole scan gets one deadline: each attempt has what is left of it.
        const reply = await rpc.unary(VerifyService.method.verify, { qr }, Math.max(1, deadline - Date.now()));
        console.log(show(reply));
        return 0;
      } catch (err) {
        const delay = backoffMs(attempt, 100, 1000);
        if (!isServiceError(err) || err.code !== grpc.status.UNAVAILABLE || Date.now() + delay >= deadline) {
          console.error(`no verdict within ${budgetMs / 1000} s: ${describeError(err)}`);
          const cutShort = isServiceError(err) && err.code === grpc.status.DEADLINE_EXCEEDED;
          if (unavailable && cutShort) console.error(`before that: ${describeError(unavailable)}`);
          return 2;
        }
        unavailable = err;
        note(`${describeError(err)}\nretrying in ${(delay / 1000).toFixed(2)} s`);
        await sleep(delay);
      }
    }
  } finally {
    rpc.close();
  }
}

main()
  .then((code) => process.exit(code))
  .catch((err) => die(`checkpoint client failed: ${describeError(err)}`, 2));
