// Command feed-consumer follows the platform's result feed as a partner's backend does
// (PublishService.StreamResultEvents and AckResultEvents).
//
//	feed-consumer -state FILE [-until-idle 5s] [-max-events N] [-ack-every 1000] [-ack-interval 2s]
//
// FILE is the consumer's durable store (JSON, written atomically; created when missing). The consumer
// streams from the position after the one stored, processes each event idempotently by its position
// (a position already stored is skipped), commits the store, and then acknowledges in batches: the
// highest committed position, after -ack-every events or -ack-interval, whichever comes first, and
// once more when it stops. After any stream error it reconnects with exponential backoff and jitter,
// again from its store, never from the server's cursor alone. A new store starts at -from (default:
// the position after the partner's acknowledged cursor).
//
// Each event is printed on one line on standard output, without personal data. It runs until
// interrupted (SIGINT, SIGTERM), until -max-events events were processed, or, with -until-idle, once
// it has caught up with the feed and no event arrived for that long. Exit status 0 then, 1 on an
// error it cannot recover from (a store it cannot write, a credential refused), 2 for a usage error.
// Reads COVIDTEST_PUBLISH_ADDR, PARTNER_TOKEN and optionally COVIDTEST_CA_FILE (clients/README.md).
package main

import (
	// First of all: turns grpc-go's retries on before grpc-go initialises (see the package).
	_ "covidtest.bluezone.vn/clients/internal/grpcretry"

	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	publishv1 "covidtest.bluezone.vn/clients/gen/covidtest/publish/v1"
	"covidtest.bluezone.vn/clients/internal/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
)

func main() {
	log.SetPrefix("feed-consumer: ")
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	statePath := flag.String("state", "", "the consumer's store (JSON file; created when missing)")
	from := flag.Uint64("from", 0, "first position for a new store (0: after the partner's acknowledged cursor)")
	maxEvents := flag.Int("max-events", 0, "stop after processing this many new events (0: no limit)")
	untilIdle := flag.Duration("until-idle", 0, "stop once caught up and no event arrived for this long (0: never)")
	ackEvery := flag.Uint64("ack-every", 1000, "acknowledge after this many committed events")
	ackInterval := flag.Duration("ack-interval", 2*time.Second, "acknowledge committed events at least this often")
	stallTimeout := flag.Duration("stall-timeout", 60*time.Second, "reconnect when the stream sent nothing for this long")
	flag.Parse()
	if *statePath == "" || flag.NArg() > 0 || *maxEvents < 0 || *untilIdle < 0 || *ackEvery < 1 ||
		*ackInterval <= 0 || *stallTimeout <= 0 {
		fmt.Fprintln(os.Stderr, "usage: feed-consumer -state FILE [-until-idle 5s] [-max-events N] "+
			"[-ack-every 1000] [-ack-interval 2s] [-from N] [-stall-timeout 60s]")
		os.Exit(2)
	}
	store, err := OpenStore(*statePath)
	if err != nil {
		log.Print(err)
		os.Exit(2)
	}
	// A feed stream is long-lived: keepalive pings find a server that froze or lost its network, so the
	// consumer reconnects instead of waiting on a silent stream (the server accepts a ping every 10 s).
	conn, err := client.Dial(client.EnvPublishAddr, client.EnvPartner, grpc.WithKeepaliveParams(
		keepalive.ClientParameters{Time: 20 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}))
	if err != nil {
		log.Print(err)
		os.Exit(2)
	}
	defer conn.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	c := &consumer{
		feed: publishv1.NewPublishServiceClient(conn), store: store, from: *from,
		maxEvents: *maxEvents, untilIdle: *untilIdle, ackEvery: *ackEvery, ackInterval: *ackInterval,
		stallTimeout: *stallTimeout,
	}
	if err := c.run(ctx); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

type consumer struct {
	feed         publishv1.PublishServiceClient
	store        *Store
	from         uint64
	maxEvents    int
	untilIdle    time.Duration
	ackEvery     uint64
	ackInterval  time.Duration
	stallTimeout time.Duration

	processed    int       // new events processed by this run
	acked        uint64    // highest position acknowledged by this run
	unackedSince time.Time // when the oldest committed but unacknowledged event was committed
	caughtUp     bool      // the store holds the head the server last reported
	lastEvent    time.Time // when the last new event was processed (or the run started)
}

// errDone ends a stream because the consumer has done what it was asked (-max-events, -until-idle).
var errDone = errors.New("done")

// run streams, reconnecting after errors, until done or ctx ends; then acknowledges what it committed.
func (c *consumer) run(ctx context.Context) error {
	c.lastEvent = time.Now()
	backoff := client.Backoff{Initial: 500 * time.Millisecond, Max: 30 * time.Second, Multiplier: 2}
	for {
		delivered, err := c.stream(ctx)
		switch {
		case errors.Is(err, errDone) || ctx.Err() != nil:
			return c.finish()
		case permanent(err):
			c.finish()
			return fmt.Errorf("the feed refused the consumer: %s", client.Describe(err))
		case err != nil && isStoreError(err):
			return err
		}
		if delivered {
			backoff.Reset()
		}
		delay := backoff.Next()
		log.Printf("stream ended: %s; reconnecting in %s from position %d",
			describe(err), delay.Round(time.Millisecond), c.store.Position()+1)
		if client.Sleep(ctx, delay) != nil {
			return c.finish()
		}
	}
}

// stream reads one StreamResultEvents stream until it fails, stalls or the consumer is done. It
// reports whether the stream delivered anything (then the next reconnect starts a fresh backoff).
func (c *consumer) stream(ctx context.Context) (delivered bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	from := c.store.Position() + 1
	if c.store.Position() == 0 {
		from = c.from // a new store: -from, or 0 for the partner's cursor
	}
	call, err := c.feed.StreamResultEvents(ctx, &publishv1.StreamResultEventsRequest{FromPosition: from})
	if err != nil {
		return false, err
	}
	if from == 0 {
		log.Print("streaming from the partner's acknowledged cursor (a new store)")
	} else {
		log.Printf("streaming from position %d", from)
	}
	c.caughtUp = false // known again with the stream's first message (events, or a heartbeat with the head)

	messages, failed := make(chan *publishv1.StreamResultEventsResponse), make(chan error, 1)
	go func() {
		for {
			message, err := call.Recv()
			if errors.Is(err, io.EOF) {
				err = errors.New("the server ended the stream")
			}
			if err != nil {
				failed <- err
				return
			}
			select {
			case messages <- message:
			case <-ctx.Done():
				return
			}
		}
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	lastMessage := time.Now()
	for {
		select {
		case <-ctx.Done():
			return delivered, ctx.Err()
		case err := <-failed:
			return delivered, err
		case message := <-messages:
			delivered, lastMessage = true, time.Now()
			if err := c.handle(ctx, message); err != nil {
				return delivered, err
			}
		case now := <-tick.C:
			if !c.unackedSince.IsZero() && now.Sub(c.unackedSince) >= c.ackInterval {
				c.ack(ctx)
			}
			if c.untilIdle > 0 && c.caughtUp && now.Sub(c.lastEvent) >= c.untilIdle {
				return delivered, errDone
			}
			if now.Sub(lastMessage) >= c.stallTimeout {
				return delivered, fmt.Errorf("nothing received for %s", c.stallTimeout)
			}
		}
	}
}

// handle processes one message: each new event once, then one commit of the store, then an
// acknowledgement if -ack-every events are waiting for one.
func (c *consumer) handle(ctx context.Context, message *publishv1.StreamResultEventsResponse) error {
	added := 0
	for _, e := range message.GetEvents() {
		if c.maxEvents > 0 && c.processed == c.maxEvents {
			break
		}
		if c.store.Has(e.GetPosition()) {
			log.Printf("position %d already processed: skipped", e.GetPosition())
			continue
		}
		if want := c.store.Position() + 1; c.store.Position() > 0 && e.GetPosition() != want {
			log.Printf("expected position %d, got %d", want, e.GetPosition())
		}
		record := summary(e)
		c.store.Add(record)
		fmt.Println(line(record))
		c.processed++
		added++
	}
	if added > 0 {
		if err := c.store.Commit(); err != nil {
			return storeError{err}
		}
		c.lastEvent = time.Now()
		if c.unackedSince.IsZero() {
			c.unackedSince = c.lastEvent
		}
		if c.store.Position()-c.acked >= c.ackEvery {
			c.ack(ctx)
		}
	}
	// A heartbeat (no events) says the server has nothing more for this stream: caught up, also when
	// a new store streams from the partner's cursor and that cursor is already at the head.
	c.caughtUp = len(message.GetEvents()) == 0 || c.store.Position() >= message.GetHeadPosition()
	if c.maxEvents > 0 && c.processed == c.maxEvents {
		return errDone
	}
	return nil
}

// ack acknowledges the highest committed position. A failure is logged and retried later: the
// store, not the cursor, is what the consumer resumes from.
func (c *consumer) ack(ctx context.Context) {
	position := c.store.Position()
	if position == 0 || position <= c.acked {
		c.unackedSince = time.Time{}
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	reply, err := c.feed.AckResultEvents(ctx, &publishv1.AckResultEventsRequest{
		RequestId: client.NewRequestID(), Position: position,
	})
	if err != nil {
		log.Printf("acknowledging position %d failed (retried later): %s", position, client.Describe(err))
		c.unackedSince = time.Now()
		return
	}
	c.acked, c.unackedSince = position, time.Time{}
	log.Printf("acknowledged position %d (cursor %d, head %d)", position, reply.GetAcknowledgedPosition(), reply.GetHeadPosition())
}

// finish acknowledges what is committed before the consumer stops.
func (c *consumer) finish() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.ack(ctx)
	log.Printf("stopped at position %d after %d new events", c.store.Position(), c.processed)
	return nil
}

// summary is what the consumer keeps of an event: no person, no QR text.
func summary(e *publishv1.ResultEvent) Event {
	record := Event{
		Position:             e.GetPosition(),
		Kind:                 strings.TrimPrefix(e.GetKind().String(), "RESULT_EVENT_KIND_"),
		ResultID:             e.GetResult().GetResultId(),
		CertificateID:        e.GetCertificate().GetCertificateId(),
		RevokedCertificateID: e.GetRevokedCertificateId(),
	}
	switch {
	case e.GetResult() != nil:
		record.SampleBarcode, record.SampleID = e.GetResult().GetSampleBarcode(), e.GetResult().GetSampleId()
	case e.GetSample() != nil: // SAMPLE_REGISTERED: a sample awaiting its result
		record.SampleBarcode, record.SampleID = e.GetSample().GetSampleBarcode(), e.GetSample().GetSampleId()
	}
	return record
}

// line is an event's log line.
func line(e Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "event position=%d kind=%s", e.Position, e.Kind)
	for _, field := range []struct{ name, value string }{
		{"sample_barcode", e.SampleBarcode}, {"sample_id", e.SampleID}, {"result_id", e.ResultID},
		{"certificate_id", e.CertificateID}, {"revoked_certificate_id", e.RevokedCertificateID},
	} {
		if field.value != "" {
			fmt.Fprintf(&b, " %s=%s", field.name, field.value)
		}
	}
	return b.String()
}

// permanent reports errors that reconnecting cannot cure.
func permanent(err error) bool {
	switch client.Code(err) {
	case codes.Unauthenticated, codes.PermissionDenied, codes.InvalidArgument, codes.OutOfRange:
		return true
	}
	return false
}

type storeError struct{ err error }

func (e storeError) Error() string { return "committing the store: " + e.err.Error() }
func (e storeError) Unwrap() error { return e.err }

func isStoreError(err error) bool {
	var s storeError
	return errors.As(err, &s)
}

func describe(err error) string {
	if err == nil {
		return "end of stream"
	}
	return client.Describe(err)
}
