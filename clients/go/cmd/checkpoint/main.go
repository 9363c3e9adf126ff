// Command checkpoint verifies one scanned QR code, as a checkpoint device does
// (VerifyService.Verify), and shows the verdict with what the response explains.
//
//	checkpoint -qr FILE [-deadline 3s] [-lang vi|en]
//
// It reads COVIDTEST_VERIFY_ADDR, DEVICE_TOKEN and optionally COVIDTEST_CA_FILE (clients/README.md).
// The verification has a deadline (3 s by default) within which an UNAVAILABLE answer is retried with
// backoff. Exit status 0 for any verdict (a broken or forged QR is a verdict, not an error), 1 when the
// call failed (the status and its decoded details are printed), 2 for a usage error.
package main

import (
	// First of all: turns grpc-go's retries on before grpc-go initialises (see the package).
	_ "covidtest.bluezone.vn/clients/internal/grpcretry"

	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	typev1 "covidtest.bluezone.vn/clients/gen/covidtest/type/v1"
	verifyv1 "covidtest.bluezone.vn/clients/gen/covidtest/verify/v1"
	"covidtest.bluezone.vn/clients/internal/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func main() {
	qrFile := flag.String("qr", "", "file holding the scanned QR text (\"HC1:…\"), or - for standard input")
	deadline := flag.Duration("deadline", 3*time.Second, "deadline of the verification, retries included")
	lang := flag.String("lang", "", "language of the verdict's explanation: vi or en (default: the service's)")
	flag.Parse()
	if *qrFile == "" || flag.NArg() > 0 || *deadline <= 0 {
		fmt.Fprintln(os.Stderr, "usage: checkpoint -qr FILE|- [-deadline 3s] [-lang vi|en]")
		os.Exit(2)
	}
	qr, err := readQR(*qrFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "checkpoint:", err)
		os.Exit(2)
	}
	conn, err := client.Dial(client.EnvVerifyAddr, client.EnvDevice)
	if err != nil {
		fmt.Fprintln(os.Stderr, "checkpoint:", err)
		os.Exit(2)
	}
	defer conn.Close()

	ctx, cancel := context.WithTimeout(context.Background(), *deadline)
	defer cancel()
	if *lang != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "accept-language", *lang)
	}
	answer, err := verify(ctx, verifyv1.NewVerifyServiceClient(conn), qr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "checkpoint: Verify failed: %s\n", client.Describe(err))
		os.Exit(1)
	}
	show(os.Stdout, answer)
}

func readQR(name string) (string, error) {
	var data []byte
	var err error
	if name == "-" {
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(name)
	}
	if err != nil {
		return "", err
	}
	qr := strings.TrimSpace(string(data))
	if qr == "" {
		return "", errors.New("the QR text is empty")
	}
	return qr, nil
}

// verify calls Verify until it answers, retrying UNAVAILABLE with backoff while ctx's deadline leaves
// room for another attempt. (The channel's service config already retries UNAVAILABLE up to 3 times
// within one call; this loop also covers a server that stays away a little longer.)
func verify(ctx context.Context, verifier verifyv1.VerifyServiceClient, qr string) (*verifyv1.VerifyResponse, error) {
	backoff := client.Backoff{Initial: 50 * time.Millisecond, Max: 200 * time.Millisecond, Multiplier: 2}
	request := &verifyv1.VerifyRequest{Qr: qr}
	for attempt := 1; ; attempt++ {
		answer, err := verifier.Verify(ctx, request)
		if err == nil || client.Code(err) != codes.Unavailable {
			return answer, err
		}
		delay := backoff.Next()
		if until, ok := ctx.Deadline(); ok && time.Until(until) < delay {
			return nil, err // the last UNAVAILABLE, rather than a DEADLINE_EXCEEDED that hides it
		}
		fmt.Fprintf(os.Stderr, "checkpoint: attempt %d failed (%s); retrying in %s\n",
			attempt, client.Brief(err), delay.Round(time.Millisecond))
		if client.Sleep(ctx, delay) != nil {
			return nil, err
		}
	}
}

// show prints the verdict, the decision it means for the officer, and every field the answer fills.
func show(w io.Writer, r *verifyv1.VerifyResponse) {
	verdict := strings.TrimPrefix(r.GetVerdict().String(), "VERDICT_")
	fmt.Fprintf(w, "verdict: %s\n", verdict)
	fmt.Fprintf(w, "decision: %s\n", decision(r))
	line := func(label, value string) {
		if value != "" {
			fmt.Fprintf(w, "%s: %s\n", label, value)
		}
	}
	line("reason", r.GetReason())
	if r.GetMalformedStage() != typev1.MalformedStage_MALFORMED_STAGE_UNSPECIFIED {
		line("malformed at", strings.TrimPrefix(r.GetMalformedStage().String(), "MALFORMED_STAGE_"))
	}
	line("schema error", r.GetSchemaError())
	// What the officer compares with the holder's identity card.
	line("family name", join(r.GetFamilyName(), r.GetFamilyNameTransliterated()))
	line("given name", join(r.GetGivenName(), r.GetGivenNameTransliterated()))
	line("date of birth", r.GetDateOfBirth())
	if r.GetEntryType() != typev1.EntryType_ENTRY_TYPE_UNSPECIFIED {
		line("entry", strings.TrimPrefix(r.GetEntryType().String(), "ENTRY_TYPE_"))
	}
	if r.GetTestType() != typev1.TestType_TEST_TYPE_UNSPECIFIED {
		line("test type", strings.TrimPrefix(r.GetTestType().String(), "TEST_TYPE_"))
	}
	line("sample collected", when(r.GetSampleCollectedAt()))
	line("valid until", when(r.GetValidUntil()))
	line("certificate", r.GetCertificateId())
	line("issuer country", r.GetIssuerCountry())
	if len(r.GetKid()) > 0 {
		line("kid", hex.EncodeToString(r.GetKid()))
	}
	fmt.Fprintf(w, "signature valid: %t\n", r.GetSignatureValid())
	if r.GetStatusSource() != typev1.StatusSource_STATUS_SOURCE_UNSPECIFIED {
		line("status from", strings.TrimPrefix(r.GetStatusSource().String(), "STATUS_SOURCE_"))
	}
	if r.GetRuleId() != "" {
		line("rule", fmt.Sprintf("%s version %d", r.GetRuleId(), r.GetRuleVersion()))
	}
	line("checked at", when(r.GetCheckedAt()))
}

// decision is what the verdict means at the checkpoint: only VALID accepts; STATUS_UNKNOWN accepts
// with a warning where the device's province allows it; anything else, including a verdict this
// client does not know, refuses.
func decision(r *verifyv1.VerifyResponse) string {
	switch {
	case r.GetVerdict() == typev1.Verdict_VERDICT_VALID:
		return "ACCEPT"
	case r.GetVerdict() == typev1.Verdict_VERDICT_STATUS_UNKNOWN && r.GetAcceptWithWarning():
		return "ACCEPT WITH WARNING (revocation could not be checked)"
	default:
		return "REFUSE"
	}
}

func join(name, transliterated string) string {
	if transliterated == "" || transliterated == name {
		return name
	}
	if name == "" {
		return transliterated
	}
	return name + " (" + transliterated + ")"
}

func when(t *timestamppb.Timestamp) string {
	if t == nil {
		return ""
	}
	return t.AsTime().Format(time.RFC3339)
}
