// Command lab-uploader sends a lab's results from a CSV file to the platform
// (ResultService.RecordResults), as a lab's middleware between its LIS and the platform does.
//
//	lab-uploader -results FILE [-batch-size 100] [-retry-for 2m]
//
// FILE is CSV with the header sample_barcode,outcome,tested_at,method,lab_reference; outcome is
// NEGATIVE, POSITIVE or INCONCLUSIVE, tested_at RFC 3339 ("2026-12-08T09:30:00+07:00"). Rows go in
// batches of 100, each batch with one request_id kept across its retries (UNAVAILABLE,
// DEADLINE_EXCEEDED, and RESOURCE_EXHAUSTED after its RetryInfo delay), with backoff and jitter for at
// most -retry-for per batch. Sending a file again is safe: a result already recorded comes back as
// ALREADY_RECORDED.
//
// It prints every rejected row with the field path, reason and description the platform gives, and
// the counts per outcome. Exit status 0 when every row was recorded (or already was), 1 when a row
// was rejected or a batch failed, 2 for a usage error. Reads COVIDTEST_RESULT_ADDR, LAB_TOKEN and
// optionally COVIDTEST_CA_FILE (clients/README.md).
package main

import (
	// First of all: turns grpc-go's retries on before grpc-go initialises (see the package).
	_ "covidtest.bluezone.vn/clients/internal/grpcretry"

	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	resultv1 "covidtest.bluezone.vn/clients/gen/covidtest/result/v1"
	"covidtest.bluezone.vn/clients/internal/client"
	"google.golang.org/grpc/codes"
)

func main() {
	resultsFile := flag.String("results", "", "CSV file of results (sample_barcode,outcome,tested_at,method,lab_reference)")
	batchSize := flag.Int("batch-size", 100, "results per RecordResults call (1-1000)")
	retryFor := flag.Duration("retry-for", 2*time.Minute, "longest time to keep retrying one batch")
	flag.Parse()
	if *resultsFile == "" || flag.NArg() > 0 || *batchSize < 1 || *batchSize > 1000 || *retryFor < 0 {
		fmt.Fprintln(os.Stderr, "usage: lab-uploader -results FILE [-batch-size 100] [-retry-for 2m]")
		os.Exit(2)
	}
	rows, err := readRows(*resultsFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab-uploader:", err)
		os.Exit(2)
	}
	conn, err := client.Dial(client.EnvResultAddr, client.EnvLabToken)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab-uploader:", err)
		os.Exit(2)
	}
	defer conn.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	u := uploader{results: resultv1.NewResultServiceClient(conn), retryFor: *retryFor}
	ok := u.run(ctx, rows, *batchSize)
	fmt.Printf("recorded %d, already recorded %d, rejected %d, not sent %d (of %d rows)\n",
		u.recorded, u.alreadyRecorded, u.rejected, u.notSent, len(rows))
	if !ok || u.rejected > 0 || u.notSent > 0 {
		os.Exit(1)
	}
}

type uploader struct {
	results  resultv1.ResultServiceClient
	retryFor time.Duration

	recorded, alreadyRecorded, rejected, notSent int
}

// run sends the rows that parsed in batches; rows that did not parse are reported as rejected here.
// It stops at the first batch that fails for good: the rest is reported as not sent.
func (u *uploader) run(ctx context.Context, rows []row, batchSize int) bool {
	var pending []row
	for _, r := range rows {
		if r.problem != nil {
			u.rejected++
			fmt.Printf("rejected line %d (%s): %s %s: %s (not sent)\n",
				r.line, r.barcode, r.problem.field, r.problem.reason, r.problem.description)
			continue
		}
		pending = append(pending, r)
	}
	for first, batch := 0, 1; first < len(pending); first, batch = first+batchSize, batch+1 {
		last := first + batchSize
		if last > len(pending) {
			last = len(pending)
		}
		if err := u.send(ctx, batch, pending[first:last]); err != nil {
			u.notSent += len(pending) - first
			fmt.Fprintf(os.Stderr, "lab-uploader: batch %d (lines %d-%d) failed: %s\n",
				batch, pending[first].line, pending[last-1].line, client.Describe(err))
			if first > 0 {
				fmt.Fprintf(os.Stderr, "lab-uploader: rows from line %d on were not recorded; sending the file "+
					"again is safe (rows already recorded come back ALREADY_RECORDED)\n", pending[first].line)
			}
			return false
		}
	}
	return true
}

// send records one batch under one request_id, retrying what may succeed later with the same id and
// body (the platform answers a repeated request_id with the first call's response).
func (u *uploader) send(ctx context.Context, batch int, rows []row) error {
	request := &resultv1.RecordResultsRequest{RequestId: client.NewRequestID()}
	for _, r := range rows {
		request.Results = append(request.Results, r.submission)
	}
	backoff := client.Backoff{Initial: 250 * time.Millisecond, Max: 5 * time.Second, Multiplier: 2}
	giveUp := time.Now().Add(u.retryFor)
	for attempt := 1; ; attempt++ {
		// Per attempt, the service config's timeout (30 s) applies.
		reply, err := u.results.RecordResults(ctx, request)
		if err == nil {
			u.report(batch, request.RequestId, rows, reply)
			return nil
		}
		delay := backoff.Next()
		switch client.Code(err) {
		case codes.Unavailable, codes.DeadlineExceeded:
		case codes.ResourceExhausted:
			if hint, ok := client.RetryDelay(err); ok && hint > delay {
				delay = hint
			}
		default:
			return err
		}
		if ctx.Err() != nil || time.Now().Add(delay).After(giveUp) {
			return err
		}
		fmt.Fprintf(os.Stderr, "lab-uploader: batch %d request_id %s attempt %d failed (%s); retrying in %s\n",
			batch, request.RequestId, attempt, client.Brief(err), delay.Round(time.Millisecond))
		if client.Sleep(ctx, delay) != nil {
			return err
		}
	}
}

func (u *uploader) report(batch int, requestID string, rows []row, reply *resultv1.RecordResultsResponse) {
	fmt.Printf("batch %d request_id %s: recorded %d, already recorded %d, rejected %d\n", batch, requestID,
		reply.GetRecordedCount(), reply.GetAlreadyRecordedCount(), reply.GetRejectedCount())
	u.recorded += int(reply.GetRecordedCount())
	u.alreadyRecorded += int(reply.GetAlreadyRecordedCount())
	u.rejected += int(reply.GetRejectedCount())
	for _, item := range reply.GetResults() {
		if item.GetStatus() != resultv1.RecordingStatus_RECORDING_STATUS_REJECTED {
			continue
		}
		r := rows[item.GetIndex()]
		for _, v := range item.GetViolations() {
			fmt.Printf("rejected line %d (%s): %s\n", r.line, r.barcode, client.Violation(v))
		}
	}
}
